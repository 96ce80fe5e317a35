"""Curvature trace: Hutchinson's estimator and Hutch++, each with a standard error.

`hutchinson` and `hutch_plus_plus` estimate the trace of any operator (their docstrings have the
math and the papers); `hessian_trace` measures a model's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..choices import TRACE_METHODS
from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError, check_choice
from ..loss import Criterion
from ..models.outputs import Output
from .ggn import check_curvature, curvature_operator
from .operator import Operator, check_backend, probes
from .pyhessian_adapter import pyhessian_trace
from .results import TraceResult, summarize

MIN_PROBES = 10  # before a relative-standard-error target may stop the run


def _done(estimates: list[float], target_rse: float | None) -> bool:
    """Whether at least MIN_PROBES estimates meet the relative standard error `target_rse`.

    Returns:
        True when the run may stop.
    """
    return (
        target_rse is not None
        and len(estimates) >= MIN_PROBES
        and summarize(np.array(estimates))[2] <= target_rse
    )


def hutchinson(
    op: Operator,
    budget: int,
    generator: torch.Generator,
    target_rse: float | None = None,
    block: int = 8,
    deflate: torch.Tensor | None = None,
    offset: float = 0.0,
) -> np.ndarray:
    """Hutchinson's per-probe trace estimates `offset + g^T P H P g`, P projecting out `deflate`.

    Hutchinson ("A stochastic estimator of the trace of the influence matrix for Laplacian smoothing
    splines", Communications in Statistics - Simulation and Computation 1989): tr(H) = E[g^T H g]
    for Rademacher g, so each probe is an unbiased estimate and the trace is their mean. With
    `deflate` (orthonormal rows Q, P = I - Q^T Q) each probe estimates tr(P H P) instead, to which
    `offset` adds the part already known. Probes go through the operator in blocks of `block`. The
    run stops when `budget` probes are spent or, with `target_rse`, once at least MIN_PROBES probes
    give a standard error (sample standard deviation over sqrt(probes), `results.summarize`) of at
    most target_rse * |mean|; a trace near zero or negative never meets that target and runs to the
    budget.

    Args:
        op: the operator.
        budget: the most probes (one product each).
        generator: the random generator of the probes.
        target_rse: stop early at this relative standard error (None: spend the budget).
        block: probes per product.
        deflate: (k, size) orthonormal rows to project out (None: P = I).
        offset: added to every estimate.

    Returns:
        The per-probe estimates.

    Examples:
        For a diagonal H every Rademacher probe gives the trace exactly:

        >>> import torch
        >>> from landscape.curvature import HessianOperator
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())  # H = diag(1, 4)
        >>> hutchinson(op, 3, torch.Generator().manual_seed(0)).tolist()
        [5.0, 5.0, 5.0]
    """
    estimates: list[float] = []
    while len(estimates) < budget and not _done(estimates, target_rse):
        z = probes(op, min(block, budget - len(estimates)), generator)
        if deflate is not None:
            z = z - (z @ deflate.T) @ deflate
        estimates += (offset + torch.einsum("bn,bn->b", z, op.matmat(z)).double()).tolist()
    return np.array(estimates)


def hutch_plus_plus(
    op: Operator,
    budget: int,
    generator: torch.Generator,
    target_rse: float | None = None,
    block: int = 8,
    sketch: int | None = None,
) -> tuple[np.ndarray, int]:
    """Hutch++ per-probe trace estimates and the sketch size.

    Hutch++ (Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal stochastic trace estimation", SOSA
    2021): with a third of the budget sketch Y = H S (S Rademacher), take an orthonormal basis Q of
    Y, compute tr(Q^T H Q) exactly with another third, and estimate the rest, tr((I - QQ^T) H (I -
    QQ^T)), by Hutchinson with the last third. Each of those probes is one unbiased estimate of the
    whole trace, tr(Q^T H Q) + g^T P H P g with P = I - QQ^T, so the trace is their mean and their
    spread is the standard error, as for `hutchinson`. Deflating the few large eigenvalues of a
    trained network's Hessian removes most of the variance.

    Args:
        op: the operator.
        budget: the most products, sketch included.
        generator: the random generator of the sketch and the probes.
        target_rse: stop early at this relative standard error (None: spend the budget).
        block: vectors per product.
        sketch: the sketch's size [budget // 3, as in the paper].

    Returns:
        (the per-probe estimates, the sketch size).

    Raises:
        LandscapeError: a sketch below 1 or fewer than 2 probes left after it.

    Examples:
        A sketch as large as H spans it, so every estimate is the exact trace, 1 + 4 + 2 = 7:

        >>> import torch
        >>> from landscape.curvature import HessianOperator
        >>> model = torch.nn.Linear(2, 1)  # H = (2/N) sum_i [x_i 1] [x_i 1]^T
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())
        >>> estimates, sketch = hutch_plus_plus(op, 12, torch.Generator().manual_seed(0))
        >>> estimates.round(4).tolist(), sketch
        ([7.0, 7.0, 7.0, 7.0], 4)
    """
    sketch = budget // 3 if sketch is None else sketch
    if sketch < 1 or budget - 2 * sketch < 2:
        raise LandscapeError(
            f"Hutch++ needs a sketch of at least 1 and 2 probes after it: `max_hvps` {budget} is "
            f"too small for a sketch of {sketch} (use at least 4, or `method` hutchinson)"
        )
    y = torch.cat([op.matmat(s) for s in probes(op, sketch, generator).split(block)])
    q = torch.linalg.qr(y.T).Q.T  # orthonormal rows spanning the sketch
    head = sum(float(torch.einsum("bn,bn->", rows, op.matmat(rows))) for rows in q.split(block))
    return hutchinson(
        op, budget - 2 * sketch, generator, target_rse, block, deflate=q, offset=head
    ), sketch


def hessian_trace(
    model: nn.Module,
    data: Split | Iterable[Batch],
    method: str = "hutch++",
    batch_size: int = 256,
    max_hvps: int = 100,
    target_rse: float | None = None,
    seed: int = 0,
    block: int = 8,
    sketch: int | None = None,
    backend: str = "landscape",
    cache: bool | None = None,
    criterion: Criterion = "ce",
    output: Output = None,
    curvature: str = "hessian",
) -> TraceResult:
    """Trace of the curvature of the mean loss of `model` on `data` within `max_hvps` products.

    Hutch++ (`hutch_plus_plus`) or Hutchinson (`hutchinson`) on the Hessian, or on the `curvature`
    "ggn" or "fisher" matrix (`ggn.py`). `backend="pyhessian"` runs PyHessian 0.1's own Hutchinson
    loop instead (maxIter=max_hvps, tol=target_rse or 1e-3; `pyhessian_adapter`). An unknown
    `method`, `backend` or `curvature`, and bad models or data, are refused by the checks this
    calls.

    Args:
        model: the model measured.
        data: a `Split` or any re-iterable of batches (`landscape.data.batches`).
        method: "hutch++" or "hutchinson".
        batch_size: examples per batch of a `Split`.
        max_hvps: the most products.
        target_rse: stop early at this relative standard error (None: spend the budget).
        seed: seeds the probes.
        block: vectors per product.
        sketch: Hutch++'s sketch size [max_hvps // 3].
        backend: "landscape" or "pyhessian".
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        output: which tensor of the model's output is the prediction.
        curvature: "hessian", "ggn" or "fisher".

    Returns:
        The trace, its standard error, the per-probe estimates, and the run's settings and cost.

    Raises:
        LandscapeError: `max_hvps` below 2, `target_rse` not positive, or `block` below 1.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = hessian_trace(model, data, max_hvps=12, criterion=torch.nn.MSELoss())
        >>> round(r.trace, 4), r.sketch, r.probes  # tr H = 1 + 4 + 2
        (7.0, 4, 4)
        >>> r.hvps  # the sketch, the basis of its span (3 vectors in R^3), the probes
        11
    """
    check_backend(backend, criterion, output)
    check_curvature(curvature, backend)
    check_choice(method, TRACE_METHODS, "trace method")
    if max_hvps < 2:
        raise LandscapeError(f"`max_hvps` must be at least 2 for a standard error, got {max_hvps}")
    if target_rse is not None and target_rse <= 0:
        raise LandscapeError(f"`target_rse` must be positive, got {target_rse}")
    if block < 1:
        raise LandscapeError(f"`block` must be at least 1, got {block}")
    if backend == "pyhessian":
        return pyhessian_trace(
            model,
            data,
            batch_size=batch_size,
            max_hvps=max_hvps,
            target_rse=target_rse,
            seed=seed,
            criterion=criterion,
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
    generator = torch.Generator().manual_seed(seed)
    with op.progress(max_hvps, f"{method} trace"):
        if method == "hutch++":
            estimates, sketch = hutch_plus_plus(op, max_hvps, generator, target_rse, block, sketch)
        else:
            estimates, sketch = hutchinson(op, max_hvps, generator, target_rse, block), 0
    trace, stderr, rse = summarize(estimates)
    return TraceResult(
        trace,
        stderr,
        rse,
        estimates,
        method,
        "landscape",
        len(estimates),
        sketch,
        op.hvps,
        max_hvps,
        target_rse,
        time.perf_counter() - start,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        criterion=op.criterion,
        hvp_path=op.path,
        curvature=curvature,
    )
