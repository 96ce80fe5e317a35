"""Hessian eigenvalue spectral density (ESD) by stochastic Lanczos quadrature.

`quadrature` reads Gauss quadrature nodes and weights off a Lanczos run, `slq` draws them from
random start vectors, `smooth` turns them into a density on a grid, and `spectral_density`
measures a model's. The math and its papers are in those functions' docstrings.
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
    """Gauss quadrature nodes (Ritz values) and weights of each run, one row per start vector.

    For a start vector v (unit norm) and m Lanczos steps, T_m = S diag(theta) S^T: the Ritz values
    theta_i are quadrature nodes and tau_i = S_{1,i}^2 their weights, so that sum_i tau_i f(theta_i)
    = v^T f(H) v exactly for polynomials f of degree below 2m. With a block of b start vectors V_1 =
    [v_1 ... v_b] this is block Gauss quadrature (Golub & Meurant, "Matrices, Moments and Quadrature
    with Applications", Princeton University Press 2010, ch. 7): E_1^T f(T_m) E_1 = V_1^T f(H) V_1
    for polynomials f of degree below 2m, whose j-th diagonal entry v_j^T f(H) v_j = sum_i S_{j,i}^2
    f(theta_i) is row j's quadrature. A Gaussian block orthonormalised is uniformly distributed on
    the Stiefel manifold, so E[V_1 V_1^T] = (b / n) I and the rows' average estimates tr f(H) / n as
    independent runs do.

    Args:
        t: the result of `lanczos.lanczos`, m steps of `runs` starts of `block` vectors.

    Returns:
        (nodes, weights), each (runs * block, m * block); each row's weights sum to 1.

    Examples:
        >>> import torch
        >>> from landscape.curvature import HessianOperator
        >>> from landscape.curvature.lanczos import lanczos
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())  # H = diag(1, 4)
        >>> krylov = lanczos(op, torch.ones(1, 2), 2, torch.Generator())  # v = (1, 1) / sqrt(2)
        >>> nodes, weights = quadrature(krylov)
        >>> nodes.round(4).tolist(), weights.round(4).tolist()  # eigenvalues, v_i squared
        ([[1.0, 4.0]], [[0.5, 0.5]])
    """
    theta, s = torch.linalg.eigh(t.matrix())
    return theta.repeat_interleave(t.block, dim=0).numpy(), (s[:, : t.block, :] ** 2).flatten(
        0, 1
    ).numpy()


def slq(
    op: Operator, steps: int, runs: int, generator: torch.Generator, block: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of `runs` stochastic Lanczos quadrature runs, `block` of them per product.

    SLQ (Lin, Saad & Yang, "Approximating spectral densities of large matrices", SIAM Review 2016;
    Ghorbani, Krishnan & Xiao, "An investigation into neural net optimization via Hessian eigenvalue
    density", ICML 2019): for each of `runs` normalised Rademacher start vectors v, `steps` Lanczos
    steps with full reorthogonalisation give the quadrature of `quadrature`. Since E[v^T f(H) v] =
    tr f(H) / n, the node/weight pairs averaged over runs estimate the spectral measure (1/n) sum_j
    delta(lambda_j). Runs in one block go through each product together (plain Lanczos each, in
    lockstep).

    Args:
        op: the operator.
        steps: Lanczos steps per run (at most `op.size`).
        runs: independent start vectors.
        generator: the random generator of the start vectors.
        block: runs per product.

    Returns:
        (nodes, weights), each (runs, steps).

    Examples:
        >>> import torch
        >>> from landscape.curvature import HessianOperator
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())  # H = diag(1, 4)
        >>> nodes, weights = slq(op, steps=2, runs=3, generator=torch.Generator().manual_seed(0))
        >>> nodes.round(4).tolist()
        [[1.0, 4.0], [1.0, 4.0], [1.0, 4.0]]
        >>> weights.round(4).tolist()  # a Rademacher v / ||v|| puts 1/2 on each eigenvector
        [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]
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
    """The run-averaged Gaussian mixture sum_i w_i N(t; theta_i, sigma2) on a grid.

    The density is the measure of `slq` smoothed by a Gaussian of variance sigma2, by default
    SIGMA2_FACTOR * max(1, range of the nodes) as in Ghorbani et al. and PyHessian, evaluated (not
    renormalised) on an even grid fine enough to resolve the kernel: it spans the nodes plus 5
    standard deviations and by default has max(10000, 4 points per standard deviation) points, at
    most MAX_GRID.

    Args:
        nodes: (runs, M) quadrature nodes.
        weights: (runs, M) their weights.
        sigma2: the kernel's variance [SIGMA2_FACTOR * max(1, range of the nodes)].
        grid_points: points of the grid [as above].

    Returns:
        (grid, density, sigma2).

    Raises:
        LandscapeError: `sigma2` not positive or `grid_points` below 2.

    Examples:
        >>> import numpy as np
        >>> grid, density, sigma2 = smooth(np.array([[0.0]]), np.array([[1.0]]), 1.0, 11)
        >>> grid.tolist() == list(range(-5, 6)), round(float(density[5]), 4)  # 1 / sqrt(2 pi)
        (True, 0.3989)
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
    """Eigenvalue spectral density of the curvature of the mean loss of `model` on `data`.

    Stochastic Lanczos quadrature (`slq`) smoothed by a Gaussian (`smooth`): `runs` x `steps`
    products with the Hessian (or with the `curvature` "ggn" or "fisher" matrix, `ggn.py`). Bad
    models or data, and an unknown curvature, are refused by the checks this calls.

    Args:
        model: the model measured.
        data: a `Split` or any re-iterable of batches (`landscape.data.batches`).
        steps: Lanczos steps per run.
        runs: independent start vectors.
        batch_size: examples per batch of a `Split`.
        seed: seeds the start vectors.
        grid_points: points of the density's grid [`smooth`'s default].
        sigma2: the kernel's variance [`smooth`'s default].
        block: runs per product.
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        output: which tensor of the model's output is the prediction.
        curvature: "hessian", "ggn" or "fisher".

    Returns:
        The nodes, weights, grid and density, with the run's settings and cost.

    Raises:
        LandscapeError: `steps`, `runs` or `block` below 1.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = spectral_density(model, data, steps=2, criterion=torch.nn.MSELoss())
        >>> r.nodes.round(4).tolist(), r.weights.round(4).tolist(), r.hvps  # H = diag(1, 4)
        ([[1.0, 4.0]], [[0.5, 0.5]], 2)
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
