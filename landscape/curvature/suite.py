"""Top-k eigenvalues, spectral density and trace of the Hessian from one block Lanczos run.

One run of block Lanczos with full reorthogonalisation (`lanczos.py`) from a Gaussian block of b
start vectors builds an orthonormal basis Q_M (M = m b vectors) of the block Krylov space and the
projected matrix T_M = Q_M^T H Q_M. Every figure is read off it:

- top-k eigenvalues: the Ritz values of T_M with the error bounds and the stopping rule of `eig`
  (`eigen.TopRule`, `ritz.py`): the run goes on past the density's m steps until those bounds
  certify the k eigenvalues at `tol` (or the budget ends);
- spectral density: block Gauss quadrature (`density.quadrature`): each of the b start vectors gives
  the nodes theta_i and weights S_{j,i}^2, exact for polynomials of degree below 2m, whose average
  over the b vectors is stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani, Krishnan &
  Xiao 2019) with b runs;
- trace: tr(T_M) exactly plus Hutchinson on the part of H outside the basis (`krylov_trace.py`:
  Meyer et al., Hutch++, SOSA 2021; Chen & Hallman, Krylov-aware stochastic trace estimation, SIAM
  J. Matrix Anal. Appl. 2023), probes drawn until the relative standard error is at most
  `trace_rse`.

The three separate runs of `eig`, `esd` and `trace` pay for their products three times; here the
products of the eigenvalue search are those of the density and deflate the trace, whose probes are
the only extra cost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..choices import WHICH
from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError, check_choice
from ..loss import Criterion
from ..models.outputs import Output
from .density import quadrature, smooth
from .eigen import Ritz, TopRule, check_k_fits, fit_block
from .ggn import curvature_operator
from .krylov_trace import krylov_aware_trace
from .lanczos import Krylov, lanczos
from .operator import Operator, probes
from .results import DensityResult, EigenResult, SuiteResult, TraceResult, summarize
from .trace import MIN_PROBES

STEPS = 20  # block Lanczos steps at least (the density's), each with BLOCK vectors
BLOCK = 4  # start vectors: the density's runs, and clusters of up to this many eigenvalues resolved
TRACE_RSE = 1e-2  # the trace's relative standard error target
TRACE_BLOCK = 8  # trace probes per product


@dataclass
class Run:
    """What `krylov_suite` computed on an operator.

    Attributes:
        krylov: the block Lanczos run.
        ritz: its top-k Ritz pairs (`eigen.Ritz`).
        estimates: the trace's per-probe estimates.
        lanczos_hvps: the products of the Lanczos run.
        trace_hvps: the products of the trace probes.
        lanczos_seconds: the seconds of the Lanczos run.
        trace_seconds: the seconds of the trace probes.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> from landscape.curvature.operator import HessianOperator
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> run = krylov_suite(op, 1, 1e-3, 2, 1, None, 12, torch.Generator().manual_seed(0))
        >>> run.lanczos_hvps, run.trace_hvps  # two steps span the 2-D space: the trace is exact
        (2, 0)
    """

    krylov: Krylov
    ritz: Ritz
    estimates: np.ndarray
    lanczos_hvps: int
    trace_hvps: int
    lanczos_seconds: float
    trace_seconds: float


def krylov_suite(
    op: Operator,
    k: int,
    tol: float,
    steps: int,
    block: int,
    trace_rse: float | None,
    max_hvps: int,
    generator: torch.Generator,
    which: str = "algebraic",
) -> Run:
    """One block Lanczos run that certifies the top k, then the Krylov-aware trace probes.

    The run takes at least `steps` steps and goes on until `TopRule` certifies the top k; all of it
    within `max_hvps` products, MIN_PROBES of them kept for the trace.

    Args:
        op: a symmetric operator (`operator.Operator`).
        k: eigenvalues wanted.
        tol: relative error bound each must meet (`eigen.TopRule`).
        steps: block Lanczos steps taken at least (the density's resolution).
        block: start vectors (Gaussian, orthonormalised).
        trace_rse: the trace's relative standard error target (None: spend the budget).
        max_hvps: products in all.
        generator: the source of every random vector.
        which: "algebraic" or "magnitude" (`ritz.WHICH_KEYS`).

    Returns:
        The run (`Run`).

    Raises:
        LandscapeError: the budget cannot hold `steps` blocks and MIN_PROBES probes, or the space
            has fewer than k vectors when the budget ends.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> from landscape.curvature.operator import HessianOperator
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> run = krylov_suite(op, 1, 1e-3, 2, 1, None, 12, torch.Generator().manual_seed(0))
        >>> round(float(run.ritz.values[0]), 4), round(float(run.estimates.mean()), 4)
        (4.0, 5.0)
    """
    lanczos_budget = max_hvps - MIN_PROBES
    if lanczos_budget < steps * block:
        raise LandscapeError(
            f"`max_hvps` {max_hvps} cannot hold {steps} steps of {block} vectors and the trace's "
            f"{MIN_PROBES} probes: give at least {steps * block + MIN_PROBES}"
        )
    rule = TopRule(op, k, tol, which)
    before, began = op.hvps, time.perf_counter()
    start = probes(op, block, generator, "normal")[None]
    krylov = lanczos(
        op, start, lanczos_budget // block, generator, lambda kr, j: rule(kr, j) and j + 1 >= steps
    )
    ritz = rule.ritz(krylov)
    lanczos_hvps, lanczos_seconds = op.hvps - before, time.perf_counter() - began
    estimates = krylov_aware_trace(
        op, krylov, max_hvps - lanczos_hvps, generator, trace_rse, TRACE_BLOCK
    )
    return Run(
        krylov,
        ritz,
        estimates,
        lanczos_hvps,
        op.hvps - before - lanczos_hvps,
        lanczos_seconds,
        time.perf_counter() - began - lanczos_seconds,
    )


def _check(k: int, tol: float, steps: int, block: int, trace_rse: float | None, which: str) -> None:
    """Refuse settings `curvature_suite` cannot run with.

    Raises:
        LandscapeError: `which` unknown, `k`, `steps` or `block` below 1, `tol` or `trace_rse` not
            positive.
    """
    check_choice(which, WHICH, "`which`")
    if k < 1 or steps < 1 or block < 1:
        raise LandscapeError(
            f"`k`, `steps` and `block` must be at least 1, got {k}, {steps}, {block}"
        )
    if tol <= 0 or (trace_rse is not None and trace_rse <= 0):
        raise LandscapeError(f"`tol` and `trace_rse` must be positive, got {tol} and {trace_rse}")


def curvature_suite(
    model: nn.Module,
    data: Split | Iterable[Batch],
    k: int = 1,
    tol: float = 1e-3,
    steps: int = STEPS,
    block: int | None = None,
    trace_rse: float | None = TRACE_RSE,
    max_hvps: int | None = None,
    batch_size: int = 256,
    seed: int = 0,
    which: str = "algebraic",
    sigma2: float | None = None,
    grid_points: int | None = None,
    cache: bool | None = None,
    criterion: Criterion = "ce",
    output: Output = None,
    curvature: str = "hessian",
) -> SuiteResult:
    """Top-k eigenvalues, trace and spectral density of the Hessian from one block Lanczos run.

    The Hessian is that of the mean loss of `model` (eval mode) on `data` (module docstring). Bad
    arguments, a budget too small, or a model or data the operator refuses raise a
    `LandscapeError`.

    Args:
        model: any module, in eval mode (or without dropout and BatchNorm).
        data: a `Split` or any re-iterable of `(inputs, targets)` batches.
        k: eigenvalues wanted (largest algebraic, or largest magnitude with `which="magnitude"`).
        tol: each eigenvalue's relative error bound (as `top_eigenvalues`).
        steps: block Lanczos steps at least; the density is exact for moments of degree below 2 *
            steps.
        block: start vectors in the block [BLOCK = 4, or the trainable parameters if fewer].
        trace_rse: the trace's relative standard error target; None spends the whole budget.
        max_hvps: products in all [steps * block + 100 * k + 100].
        batch_size: examples per forward pass (memory only).
        seed: seed of every random vector.
        which: "algebraic" or "magnitude".
        sigma2: the variance of the density's Gaussian smoothing (`density.smooth`).
        grid_points: the points of the density's grid (`density.smooth`).
        cache: keep the gradient graphs (`HessianOperator`).
        criterion: "ce", "nll", "lm" or a loss callable.
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`).
        curvature: the matrix, "hessian", "ggn" (Gauss-Newton) or "fisher" (empirical Fisher),
            `ggn.py`.

    Returns:
        The three results and their shared settings (`SuiteResult`).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> r = curvature_suite(
        ...     nn.Linear(2, 1, bias=False), [(x, y)], steps=2, block=1, max_hvps=12,
        ...     criterion=nn.MSELoss(),
        ... )
        >>> round(float(r.eigenvalues.eigenvalues[0]), 4), round(r.trace.trace, 4), r.hvps
        (4.0, 5.0, 2)
        >>> r.esd.nodes.round(4).tolist()
        [[1.0, 4.0]]
    """
    block = fit_block(block, model, BLOCK)
    _check(k, tol, steps, block, trace_rse, which)
    check_k_fits(k, model)
    max_hvps = steps * block + 100 * k + 100 if max_hvps is None else max_hvps
    began = time.perf_counter()
    op = curvature_operator(
        model,
        data,
        batch_size,
        cache=cache,
        criterion=criterion,
        output=output,
        curvature=curvature,
    )
    with op.progress(max_hvps, f"curvature top-{k}, trace, density"):
        run = krylov_suite(
            op,
            k,
            tol,
            steps,
            block,
            trace_rse,
            max_hvps,
            torch.Generator().manual_seed(seed),
            which,
        )
    seconds, total = time.perf_counter() - began, run.lanczos_hvps + run.trace_hvps
    common = (op.size, op.n_examples, batch_size, seed)
    r = run.ritz
    eigen = EigenResult(
        r.values,
        r.residuals,
        None,
        k,
        "lanczos",
        "landscape",
        which,
        tol,
        run.lanczos_hvps,
        run.lanczos_seconds,
        r.converged,
        *common,
        op.criterion,
        r.bounds,
        "bound",
        block,
        op.path,
        curvature=curvature,
    )
    trace, stderr, rse = summarize(run.estimates)
    note = (
        None
        if trace_rse is None or rse <= trace_rse
        else f"the relative standard error {rse:.2%} is above the target {trace_rse:.2%}: raise "
        "`max_hvps`"
    )
    basis = run.krylov.basis.shape[1]
    trace_result = TraceResult(
        trace,
        stderr,
        rse,
        run.estimates,
        "krylov-aware",
        "landscape",
        len(run.estimates),
        basis,
        total,
        max_hvps,
        trace_rse,
        seconds,
        *common,
        note,
        op.criterion,
        op.path,
        curvature=curvature,
    )
    nodes, weights = quadrature(run.krylov)
    grid, density, sigma2 = smooth(nodes, weights, sigma2, grid_points)
    esd = DensityResult(
        nodes,
        weights,
        grid,
        density,
        basis // block,
        block,
        sigma2,
        run.lanczos_hvps,
        run.lanczos_seconds,
        *common,
        op.criterion,
        op.path,
        curvature=curvature,
    )
    return SuiteResult(eigen, trace_result, esd, basis // block, block, trace_rse, total, seconds)
