"""Hessian trace: Hutchinson's estimator and Hutch++, each with a standard error.

Hutchinson (1989): tr(H) = E[z^T H z] for Rademacher z; the estimate is the mean over probes.
Hutch++ (Meyer, Musco, Musco & Woodruff 2021): with a third of the budget sketch Y = H S (S
Rademacher), take an orthonormal basis Q of Y, compute tr(Q^T H Q) exactly with another third, and
estimate the rest, tr((I - QQ^T) H (I - QQ^T)), by Hutchinson with the last third. Deflating the few
large eigenvalues of a trained network's Hessian removes most of the variance.

Both produce one unbiased estimate of the whole trace per probe (Hutch++: tr(Q^T H Q) + g^T P H P g,
P = I - QQ^T), so the trace is their mean and the standard error is their sample standard deviation
over sqrt(probes). Probes go through the Hessian in blocks of `block`. The run stops when the budget
`max_hvps` is spent or, with `target_rse`, once at least MIN_PROBES probes give stderr <= target_rse
* |trace|; a trace near zero or negative simply never meets that target and runs to the budget.
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
    """Per-probe estimates `offset + g^T P H P g` with P projecting out the rows of `deflate` (none:
    P = I).
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
    """Hutch++ per-probe estimates and the sketch size (default budget // 3, as in the paper)."""
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
    """Trace of the Hessian of the mean loss of `model` on `data` (`criterion`, `output` as in
    `top_eigenvalues`) within `max_hvps` products.

    `backend="pyhessian"` runs PyHessian 0.1's own Hutchinson loop (maxIter=max_hvps, tol=target_rse
    or 1e-3). `curvature`: "hessian" (default), "ggn" or "fisher" (`ggn.py`).
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
