"""The cost of a Gauss-Newton and an empirical-Fisher product against a Hessian-vector product, and
their agreement with curvlinops 3.0.1's GGNLinearOperator and EFLinearOperator (an independent
implementation).

Models built from configs with random weights (nothing downloaded): the zoo MLP (64-32-16-10) on 512
digits examples, and a small CNN with BatchNorm (two 3x3 convolutions of 8 channels, eval mode) on
the same examples; batches of 128. For each matrix: milliseconds per product (median of 7 timed
rounds after one warm-up, rounds interleaved between the variants), with one vector per pass and
with 8 vectors per pass (per vector), on the kept graphs (the default when they fit in memory), and
the ratio to one Hessian-vector product. Agreement: the largest relative difference |ours - theirs|
/ |theirs| over 4 random vectors, in float64.

curvlinops is a benchmark extra (`make bench` installs it with --no-deps), never a dependency of the
package.

Usage: OMP_NUM_THREADS=1 python benchmarks/curvature_matrices.py [--threads N]
       (about 30 s on one thread; output in results/curvature_matrices.txt)
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.metadata import version

import torch
from torch import nn

from landscape.curvature.ggn import curvature_operator
from landscape.data import load_data, subsample
from landscape.data.batches import Batches
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import init_model

EXAMPLES, BATCH, ROUNDS = 512, 128, 7


def cnn(input_shape, num_classes) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * (input_shape[1] // 2) * (input_shape[2] // 2), num_classes),
    )


def models(data) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    mlp = init_model(
        "mlp", arch_kwargs_for("mlp", data.input_shape, data.num_classes, hidden=[32, 16]), 0
    )
    conv = cnn(data.input_shape, data.num_classes)
    for m in conv.modules():  # running statistics away from the identity, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return {"mlp 64-32-16-10": mlp.eval(), "cnn 2x conv8 + BN": conv.eval()}


def agreement(model: nn.Module, split) -> dict[str, float]:
    from curvlinops import EFLinearOperator, GGNLinearOperator

    model = model.double()
    split = type(split)(split.x.double(), split.y)
    params = [p for p in model.parameters() if p.requires_grad]
    batches = list(Batches(split, BATCH))
    v = torch.randn(
        sum(p.numel() for p in params),
        4,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
    )
    out = {}
    for kind, peer in (("ggn", GGNLinearOperator), ("fisher", EFLinearOperator)):
        theirs = (
            peer(
                model,
                nn.CrossEntropyLoss(),
                params,
                batches,
                progressbar=False,
                check_deterministic=False,
                num_data=len(split),
            )
            @ v
        )
        ours = curvature_operator(model, split, BATCH, curvature=kind).matmat(v.T).T
        out[kind] = float((ours - theirs).abs().max() / theirs.abs().max())
    model.float()
    return out


def timings(model: nn.Module, split) -> dict[str, float]:
    ops = {
        kind: curvature_operator(model, split, BATCH, cache=True, curvature=kind)
        for kind in ("hessian", "ggn", "fisher")
    }
    g = torch.Generator().manual_seed(1)
    v1 = torch.randn(1, ops["hessian"].size, generator=g)
    v8 = torch.randn(8, ops["hessian"].size, generator=g)
    rows = {
        f"{kind}, {n} vector{'s' if n > 1 else ''} per pass": (op, v)
        for kind, op in ops.items()
        for n, v in ((1, v1), (8, v8))
    }
    times: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(ROUNDS + 1):
        for label, (op, v) in rows.items():
            start = time.perf_counter()
            op.matmat(v)
            times[label].append((time.perf_counter() - start) / len(v))
    return {label: 1000 * statistics.median(t[1:]) for label, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_data("digits")
    split = subsample(data.train, EXAMPLES, seed=0)
    print(
        f"torch {torch.__version__}, curvlinops {version('curvlinops-for-pytorch')}, "
        f"{args.threads} thread(s), {EXAMPLES} digits examples in batches of {BATCH}"
    )
    for name, model in models(data).items():
        size = sum(p.numel() for p in model.parameters())
        diff = agreement(model, split)
        ms = timings(model, split)
        base = ms["hessian, 1 vector per pass"]
        print(
            f"\n{name} ({size} parameters): largest relative difference to curvlinops: GGN "
            f"{diff['ggn']:.1e}, empirical Fisher {diff['fisher']:.1e}"
        )
        print(f"  {'product':<36} {'ms per vector':>13} {'x one HVP':>10}")
        for label, t in ms.items():
            print(f"  {label:<36} {t:13.2f} {t / base:10.2f}")


if __name__ == "__main__":
    main()
