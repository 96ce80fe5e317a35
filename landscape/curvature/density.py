"""Hessian eigenvalue spectral density (ESD) by stochastic Lanczos quadrature.

SLQ (Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019): for each of `runs` normalised
Rademacher start vectors v, `steps` Lanczos steps with full reorthogonalisation give T_m = S
diag(theta) S^T; the Ritz values theta_i are quadrature nodes and tau_i = S_{1,i}^2 their weights,
so that sum_i tau_i f(theta_i) = v^T f(H) v exactly for polynomials f of degree below 2m. Since
E[v^T f(H) v] = tr f(H) / n, the node/weight pairs averaged over runs estimate the spectral measure
(1/n) sum_j delta(lambda_j). The density is that measure smoothed by a Gaussian of variance sigma2,
by default 1e-5 * max(1, range of the nodes) as in Ghorbani et al. and PyHessian, evaluated (not
renormalised) on an even grid fine enough to resolve the kernel.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError
from ..loss import Criterion
from ..models.outputs import Output
from .ggn import curvature_operator
from .lanczos import Krylov, lanczos
from .operator import Operator, probes
from .results import DensityResult

SIGMA2_FACTOR = 1e-5
MAX_GRID = 200_000


def quadrature(t: Krylov) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes (Ritz values) and weights (squared first eigenvector components) of
    each run, one row (runs * block, M) per start vector.

    With a block of b start vectors V_1 = [v_1 ... v_b] this is block Gauss quadrature (Golub &
    Meurant, Matrices, Moments and Quadrature with Applications, Princeton 2010, ch. 7): E_1^T
    f(T_m) E_1 = V_1^T f(H) V_1 for polynomials f of degree below 2m, whose j-th diagonal entry
    v_j^T f(H) v_j = sum_i S_{j,i}^2 f(theta_i) is row j's quadrature. A Gaussian block
    orthonormalised is uniformly distributed on the Stiefel manifold, so E[V_1 V_1^T] = (b / n) I
    and the rows' average estimates tr f(H) / n as independent runs do.
    """
    theta, s = torch.linalg.eigh(t.matrix())
    return theta.repeat_interleave(t.block, dim=0).numpy(), (s[:, : t.block, :] ** 2).flatten(
        0, 1
    ).numpy()


def slq(
    op: Operator, steps: int, runs: int, generator: torch.Generator, block: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (runs, steps) of `runs` SLQ runs, `block` of them in lockstep per
    product.
    """
    parts = []
    for start in range(0, runs, block):
        v = probes(op, min(block, runs - start), generator)
        parts.append(quadrature(lanczos(op, v, steps, generator)))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def smooth(
    nodes: np.ndarray,
    weights: np.ndarray,
    sigma2: float | None = None,
    grid_points: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The run-averaged Gaussian mixture sum_i w_i N(t; theta_i, sigma2) on a grid: (grid, density,
    sigma2).

    The grid spans the nodes plus 5 standard deviations; by default it has max(10000, 4 points per
    standard deviation) points, at most MAX_GRID.
    """
    lo, hi = float(nodes.min()), float(nodes.max())
    sigma2 = SIGMA2_FACTOR * max(1.0, hi - lo) if sigma2 is None else sigma2
    if sigma2 <= 0:
        raise LandscapeError(f"`sigma2` must be positive, got {sigma2}")
    sigma = math.sqrt(sigma2)
    lo, hi = lo - 5 * sigma, hi + 5 * sigma
    if grid_points is None:
        grid_points = int(min(MAX_GRID, max(10_000, math.ceil(4 * (hi - lo) / sigma))))
    if grid_points < 2:
        raise LandscapeError(f"`grid_points` must be at least 2, got {grid_points}")
    grid = np.linspace(lo, hi, grid_points)
    density = np.zeros(grid_points)
    theta, w = nodes.ravel(), weights.ravel()
    chunk = max(1, (1 << 22) // grid_points)  # bounds the (grid x nodes) block held at once
    for s in range(0, len(theta), chunk):
        density += (
            np.exp(-((grid[:, None] - theta[None, s : s + chunk]) ** 2) / (2 * sigma2))
            @ w[s : s + chunk]
        )
    return grid, density / (len(nodes) * math.sqrt(2 * math.pi * sigma2)), sigma2


def spectral_density(
    model: nn.Module,
    data: Split | Iterable[Batch],
    steps: int = 90,
    runs: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    grid_points: int | None = None,
    sigma2: float | None = None,
    block: int = 8,
    cache: bool | None = None,
    criterion: Criterion = "ce",
    output: Output = None,
    curvature: str = "hessian",
) -> DensityResult:
    """ESD of the Hessian (or `curvature` "ggn", "fisher": `ggn.py`) of the mean loss of `model` on
    `data` (`criterion`, `output` as in `top_eigenvalues`): `runs` x `steps` products.
    """
    if steps < 1 or runs < 1 or block < 1:
        raise LandscapeError(
            f"`steps`, `runs` and `block` must be at least 1, got {steps}, {runs}, {block}"
        )
    start = time.perf_counter()
    op = curvature_operator(
        model,
        data,
        batch_size,
        cache=cache,
        criterion=criterion,
        output=output,
        curvature=curvature,
    )
    with op.progress(runs * min(steps, op.size), "slq"):
        nodes, weights = slq(op, steps, runs, torch.Generator().manual_seed(seed), block)
    grid, density, sigma2 = smooth(nodes, weights, sigma2, grid_points)
    return DensityResult(
        nodes,
        weights,
        grid,
        density,
        nodes.shape[1],
        runs,
        sigma2,
        op.hvps,
        time.perf_counter() - start,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        op.criterion,
        op.path,
        curvature,
    )
