"""How often Lanczos' reported error bounds (and the tolerance) hold, on Hessians whose eigenvalues
are known.

Matrices: the exact float64 Hessians of the small MLP and CNN of tests/test_curvature.py (128
digits), and synthetic 300 x 300 spectra with a bulk in [-1, 1] and outliers: 10 / 7 / 5; 10 / 9 /
8.5 / 8 / 3; ten evenly spaced from 10 to 2 (3 random bases each), plus the 10 / 9.999 / 9.998 and
10 / 9.99 clusters. Every matrix is solved from 10 start vectors for each k, tolerance and stopping
rule (the error bound, or --strict's residual), and the script counts the runs whose true error
exceeds the reported bound, the runs whose true relative error exceeds the tolerance, and the mean
number of products. Run: `python benchmarks/eigen_bounds.py` (minutes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from landscape.curvature.eigen import lanczos_top
from landscape.data import load_data, subsample
from tests.test_curvature import Dense, _trained, exact_hessian

START_VECTORS = 10
TOLS = (3e-2, 1e-2, 1e-3, 1e-4)


def synthetic(top: list[float], seed: int, n: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=g)).Q
    bulk = torch.rand(n - len(top), dtype=torch.float64, generator=g) * 2 - 1
    return (q * torch.cat([torch.tensor(top, dtype=torch.float64), bulk])) @ q.T


def tally(matrices: dict[str, torch.Tensor], k: int, block: int, strict: bool) -> None:
    for tol in TOLS:
        exceeded = above = products = runs = 0
        for h in matrices.values():
            exact = torch.linalg.eigvalsh(h).flip(0).numpy()[:k]
            for seed in range(START_VECTORS):
                op = Dense(h)
                r = lanczos_top(
                    op, k, tol, 600, torch.Generator().manual_seed(seed), block=block, strict=strict
                )
                error = np.abs(r.values - exact)
                exceeded += bool((error > r.bounds).any())
                above += bool((error > tol * np.abs(exact)).any())
                products, runs = products + op.hvps, runs + 1
        print(
            f"  k={k} block={block} tol={tol:<6g}: bound exceeded {exceeded:>3}/{runs}, error "
            f"above tol {above:>3}/{runs}, mean products {products / runs:5.1f}"
        )


def main() -> None:
    torch.set_num_threads(1)
    digits = load_data("digits")
    split = subsample(digits.train, 128, seed=1)
    spread = {
        "MLP": exact_hessian(_trained("mlp", digits, 4, hidden=[12]), split),
        "CNN": exact_hessian(_trained("tests.test_curvature:bn_cnn", digits, 4), split),
    }
    for s in range(3):
        spread[f"10/7/5 #{s}"] = synthetic([10, 7, 5], s)
        spread[f"10/9/8.5/8/3 #{s}"] = synthetic([10, 9, 8.5, 8, 3], s)
        spread[f"10..2 #{s}"] = synthetic(list(np.linspace(10, 2, 10)), s)
    clusters = {
        f"{top} #{s}": synthetic(top, s)
        for top in ([10, 9.999, 9.998], [10, 9.99])
        for s in range(3)
    }
    for strict in (False, True):
        rule = "residual (--strict)" if strict else "error bound (default)"
        print(
            f"\n{len(spread)} matrices with separated outliers (exact MLP and CNN Hessians, "
            f"synthetic), {START_VECTORS} start vectors each; stop on {rule}"
        )
        for k in (1, 2, 4):
            tally(spread, k, 1, strict)
        print(f"{len(clusters)} clustered spectra; stop on {rule}")
        for k, block in ((1, 1), (1, 3), (2, 3)):
            tally(clusters, k, block, strict)


if __name__ == "__main__":
    main()
