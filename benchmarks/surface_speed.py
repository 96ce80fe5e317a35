"""A 25x25 random-direction contour on digits: batched evaluation (vmap over stacked parameters) against the
plain per-point loop, measured side by side in one run, for a small CNN and for MLPs.

Both paths go through `landscape.surface.compute_surface` on the same filter-normalised directions and the
same data; only `batching` differs. Prints the median wall time of each over `--repeats` runs (after one
warm-up), their ratio (the issue's target: batched at least 3x faster), the largest difference between the
two loss surfaces (rounding level), and which one the default (`prefers_vmap`) picks on this device.

Usage: python benchmarks/surface_speed.py [--threads N] [--repeats R] [--steps S]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from landscape import progress
from landscape.data import load_data
from landscape.geometry.points import prefers_vmap
from landscape.geometry.surface import compute_surface, random_surface
from landscape.models.zoo import arch_kwargs_for, build_model

CASES = [("small CNN: vgg11 width 1/8, BN", "vgg11", {"width": 0.125, "bn": True}),
         ("MLP 64-32", "mlp", {"hidden": [64, 32]}),
         ("MLPNet 400-200-100", "mlp", {"hidden": [400, 200, 100]})]


def _timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    """Median wall time of `fn` after one warm-up call, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (default 3)")
    parser.add_argument("--steps", type=int, default=25, help="grid points per axis (default 25)")
    parser.add_argument("--batch-size", type=int, default=512, help="examples per batch (default 512)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    progress.set_quiet(True)
    data = load_data("digits")
    split = data.test
    points = args.steps ** 2
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.steps}x{args.steps} grid "
          f"({points} points) on digits test ({len(split)} examples), batch size {args.batch_size}; "
          f"medians of {args.repeats} runs after one warm-up")
    print(f"\n{'model':<32} {'params':>7} {'vmap s':>8} {'loop s':>8} {'loop/vmap':>10} {'max |diff|':>11}")
    for label, arch, kwargs in CASES:
        torch.manual_seed(0)
        model = build_model(arch, arch_kwargs_for(arch, data.input_shape, data.num_classes, **kwargs)).eval()
        surface = random_surface(model, 2, -1.0, 1.0, args.steps, seed=0)

        def run(batching: str, model=model, surface=surface) -> np.ndarray:
            return compute_surface(model, surface, split, args.batch_size, {}, batching=batching)[0]["loss"]

        batched, loss_b = _timed(lambda: run("vmap"), args.repeats)
        loop, loss_l = _timed(lambda: run("loop"), args.repeats)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{label:<32} {n_params:>7} {batched:>8.2f} {loop:>8.2f} {loop / batched:>9.2f}x "
              f"{np.abs(loss_b - loss_l).max():>11.1e}")
    print(f"\ndefault (--batching auto) on {split.x.device.type}: "
          f"{'vmap' if prefers_vmap(split.x.device) else 'loop'}")


if __name__ == "__main__":
    main()
