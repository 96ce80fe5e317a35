"""Which models of the test corpus (tests/model_corpus.py: models written the way public code writes
them) fuse exactly, which freeze unit groups, and how long fusion takes.

For every corpus model B, a copy A with hidden units permuted by the corpus's hand-written unit
lists is aligned back onto B with both metrics; "exact" means `fusion.align(A, B)` returned B's
parameters and buffers (largest absolute difference shown) for acts and for wts, and
`fusion.fuse([A, B])` computes B's function with both metrics; the models that freeze groups are
permuted in their other groups only. "frozen" counts the unit groups that an operation froze (left
in place, averaged as in vanilla averaging), with the operations named. Times are the median of 3
warm runs (after one warm-up) of `fusion.fuse([A, B])` on 64 inputs, one CPU thread, tracing
included.

Library models (tests/library_models.py: tiny timm and torchvision ViTs, Hugging Face BERT and GPT-2
from configs, random weights): two initialisations A and B; A aligned to B must keep A's function
("max |dlogit|" over the example batch of 8) with no unit group frozen (strict alignment); the
movable groups are counted (residual stream, per layer one group per head for Q/K and one for V, the
MLP) and `fusion.fuse([A, B])` is timed as above.

Usage: PYTHONPATH=. python benchmarks/fusion_coverage.py [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import fusion
from landscape.models.libraries import prepare_torchvision
from tests.library_models import LIBRARY_MODELS, LibraryUnavailable, logits
from tests.model_corpus import CORPUS, build, inputs, permute


def _median_time(fn, repeats: int = 3):
    """Median wall time of `fn` over `repeats` runs after a warm-up, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _error(model, reference) -> float:
    state = model.state_dict()
    return max(
        float((state[k].double() - v.double()).abs().max())
        for k, v in reference.state_dict().items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    torch.set_num_threads(parser.parse_args().threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); {len(CORPUS)} corpus "
        "models; times: median of 3 warm runs of fuse([A, B]) on 64 inputs, tracing included\n"
    )
    header = (
        f"{'model':<24} {'exact':>5} {'err acts':>9} {'err wts':>9} {'frozen':>6} "
        f"{'fuse acts s':>11} {'fuse wts s':>10}  frozen by"
    )
    print(header)
    print("-" * len(header))
    exact_count, frozen_models = 0, []
    for name in sorted(CORPUS):
        b, x = build(name), inputs(name)
        a = permute(b, CORPUS[name].units(b))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            errors = [_error(fusion.align(a, b, mode=mode, x=x), b) for mode in ("acts", "wts")]
            graph = fusion.build_graph(b, x[:2], warn=False)
            runs = [
                _median_time(lambda m=m, a=a, b=b, x=x: fusion.fuse([a, b], mode=m, x=x))
                for m in ("acts", "wts")
            ]
        times = [t for t, _ in runs]
        same_function = all(torch.allclose(fused(x), b(x), atol=1e-5) for _, fused in runs)
        exact = max(errors) <= 1e-5 and same_function
        frozen = sum(g.reason.startswith("frozen") for g in graph.groups)
        nodes = "; ".join(m.split(":")[0] for m in graph.frozen) or "-"
        exact_count += exact
        if frozen:
            frozen_models.append(name)
        print(
            f"{name:<24} {'yes' if exact else 'NO':>5} {errors[0]:>9.1e} {errors[1]:>9.1e} "
            f"{frozen:>6} {times[0]:>11.3f} {times[1]:>10.3f}  {nodes}"
        )
    print(
        f"\n{exact_count}/{len(CORPUS)} models recover the hidden permutation exactly with both "
        f"metrics (where groups are frozen, the hidden permutation leaves them in place); "
        f"{len(frozen_models)} freeze "
        f"unit groups, each with one warning line: {', '.join(frozen_models)}."
    )
    _library_models()


def _library_models() -> None:
    prepare_torchvision()
    header = (
        f"{'library model':<24} {'movable':>7} {'frozen':>6} {'max |dlogit| acts':>17} {'wts':>8} "
        f"{'fuse acts s':>11} {'fuse wts s':>10}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    for name, case in sorted(LIBRARY_MODELS.items()):
        try:
            a, b, x = case.build(0), case.build(1), case.inputs()
        except LibraryUnavailable as exc:
            print(f"{name:<24} skipped: {exc}")
            continue
        graph = fusion.build_graph(b, x, strict=True)
        change = [
            float(
                (logits(fusion.align(a, b, mode=m, x=x, strict=True), x) - logits(a, x)).abs().max()
            )
            for m in ("acts", "wts")
        ]
        times = [
            _median_time(lambda m=m, a=a, b=b, x=x: fusion.fuse([a, b], mode=m, x=x, strict=True))[
                0
            ]
            for m in ("acts", "wts")
        ]
        frozen = sum(g.reason.startswith("frozen") for g in graph.groups)
        print(
            f"{name:<24} {sum(not g.fixed for g in graph.groups):>7} {frozen:>6} "
            f"{change[0]:>17.1e} {change[1]:>8.1e} {times[0]:>11.3f} {times[1]:>10.3f}"
        )


if __name__ == "__main__":
    main()
