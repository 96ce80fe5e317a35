"""Git Re-Basin weight matching against OT fusion's weight-based alignment on the zoo models: time
to align two models, Re-Basin's sweeps over all permutation groups, and the weight-matching
objective each reaches.

The objective is Re-Basin's: the sum over all parameters of <W_B, P W_A> (A aligned to B), which
weight matching maximises by coordinate descent and OT's single forward pass (one assignment per
layer, uniform masses) does not aim at directly. Models are freshly initialised with fixed seeds
(two different inits), so no data is needed.

Usage: python benchmarks/rebasin_speed.py [--threads N]   (default 1 thread: stable on a shared
machine)
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import fusion
from fusion.rebasin import weight_matching
from landscape import build_model

CASES = (
    ("MLPNet 400-200-100, 1x28x28", "mlp", [1, 28, 28], {"hidden": [400, 200, 100]}),
    ("VGG11 (BN), 3x32x32", "vgg11", [3, 32, 32], {}),
    ("ResNet18 (BN), 3x32x32", "resnet18", [3, 32, 32], {}),
)


def _objective(aligned: torch.nn.Module, anchor: torch.nn.Module) -> float:
    """Sum over parameters of <W_anchor, W_aligned>."""
    b = dict(anchor.named_parameters())
    with torch.no_grad():
        return float(sum((p.double() * b[k].double()).sum() for k, p in aligned.named_parameters()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    torch.set_num_threads(parser.parse_args().threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; one timed run after a "
        "warm-up on the first case"
    )
    print(
        f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (figures "
        "are comparable on a quiet machine only)"
    )
    print(
        f"\n{'case':<30} {'OT wts s':>9} {'Re-Basin s':>11} {'sweeps':>7} {'ratio':>6} "
        f"{'objective OT':>13} {'objective RB':>13} {'unaligned':>10}"
    )
    warm = True
    for name, arch, shape, kw in CASES:
        models = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            models.append(build_model(arch, {"input_shape": shape, "num_classes": 10, **kw}).eval())
        a, b = models
        if warm:
            fusion.align(a, b, mode="wts")
            warm = False
        t0 = time.perf_counter()
        ot = fusion.align(a, b, mode="wts")
        t_ot = time.perf_counter() - t0
        t0 = time.perf_counter()
        rb = fusion.align(a, b, mode="wts", method="rebasin")
        t_rb = time.perf_counter() - t0
        graph = fusion.build_graph(a, torch.zeros(2, *shape), warn=False)
        _, sweeps = weight_matching(
            a.state_dict(), b.state_dict(), graph, graph, {k for k, _ in a.named_parameters()}
        )
        print(
            f"{name:<30} {t_ot:>9.3f} {t_rb:>11.3f} {sweeps:>7d} {t_rb / t_ot:>6.1f} "
            f"{_objective(ot, b):>13.2f} {_objective(rb, b):>13.2f} {_objective(a, b):>10.2f}"
        )
    print(
        "OT wts: exact OT with uniform masses (a linear assignment per layer, in forward order, "
        "once); Re-Basin: "
        "weight matching, random group order (seed 0) until a sweep changes nothing. Both include "
        "tracing the models; the sweeps column is counted in a separate call."
    )


if __name__ == "__main__":
    main()
