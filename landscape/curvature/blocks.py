"""Per-layer curvature: the top eigenvalue and the trace of each parameter block's diagonal block.

A block is one trainable parameter tensor (a layer's weight, its bias, a BatchNorm scale); its
diagonal block H_bb of the Hessian (or of the Gauss-Newton or Fisher matrix, `ggn.py`) is the
curvature seen when only that tensor moves. Blockwise spectra are what Zhang, Chen, Ding, Li, Sun &
Luo ("Why transformers need Adam: a Hessian perspective", NeurIPS 2024) compare across
architectures. H_bb v is the slice b of H (v padded with zeros outside b): one product with the
whole matrix per block vector, so every block costs what a whole-model measurement of the same
number of products costs. The top eigenvalue is Lanczos' (`eigen.lanczos_top`); the trace is summed
exactly over the block's unit vectors when the block has at most `max_hvps` parameters, and
estimated by Hutch++ (`trace.hutch_plus_plus`) otherwise. The block traces add up to the whole
trace.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..choices import WHICH
from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError, check_choice
from ..loss import Criterion
from .eigen import lanczos_top
from .ggn import curvature_operator
from .operator import Operator
from .results import BlockEigenResult, BlockTraceResult, summarize
from .trace import hutch_plus_plus


class BlockOperator:
    """The diagonal block `op[start:stop, start:stop]` of an operator, behind the same interface."""

    def __init__(self, op: Operator, start: int, stop: int):
        self.op, self.start, self.stop = op, start, stop
        self.size, self.dtype, self.device, self.hvps = stop - start, op.dtype, op.device, 0

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """The block times each row of `vectors` (b, size) -> (b, size)."""
        padded = torch.zeros(len(vectors), self.op.size, dtype=self.dtype, device=self.device)
        padded[:, self.start : self.stop] = vectors
        self.hvps += len(vectors)
        return self.op.matmat(padded)[:, self.start : self.stop]


def parameter_blocks(model: nn.Module) -> list[tuple[str, int, int]]:
    """(name, start, stop) of every trainable parameter in the flat vector of `model.parameters()`
    order.
    """
    blocks, start = [], 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            blocks.append((name, start, start + p.numel()))
            start += p.numel()
    return blocks


def block_eigenvalues(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 256,
    tol: float = 1e-3,
    max_hvps: int = 100,
    seed: int = 0,
    which: str = "algebraic",
    cache: bool | None = None,
    criterion: Criterion = "ce",
    curvature: str = "hessian",
) -> BlockEigenResult:
    """The top eigenvalue of each parameter block's diagonal block of the curvature of the mean loss
    of `model` on `data` (as in `eigen.top_eigenvalues`), by Lanczos with at most `max_hvps`
    products per block.

    Raises:
        LandscapeError: for a bad `which`, `tol` or `max_hvps`, an unknown curvature, or a bad model
        or data.
    """
    check_choice(which, WHICH, "`which`")
    if tol <= 0 or max_hvps < 1:
        raise LandscapeError(
            f"`tol` must be positive and `max_hvps` at least 1, got {tol}, {max_hvps}"
        )
    start = time.perf_counter()
    op = curvature_operator(
        model, data, batch_size, cache=cache, criterion=criterion, curvature=curvature
    )
    blocks = parameter_blocks(model)
    generator = torch.Generator().manual_seed(seed)
    found = []
    with op.progress(sum(min(max_hvps, b - a) for _, a, b in blocks), "per-block top eigenvalue"):
        for _, a, b in blocks:
            found.append(lanczos_top(BlockOperator(op, a, b), 1, tol, max_hvps, generator, which))
    return BlockEigenResult(
        [n for n, _, _ in blocks],
        np.array([b - a for _, a, b in blocks]),
        np.array([float(r.values[0]) for r in found]),
        np.array([float(r.residuals[0]) for r in found]),
        np.array([float(r.bounds[0]) for r in found]),
        np.array([r.converged for r in found]),
        which,
        tol,
        max_hvps,
        op.hvps,
        time.perf_counter() - start,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        op.criterion,
        curvature,
    )


def _exact_trace(op: Operator, block: int) -> float:
    """The trace as the sum of e_i^T A e_i over the unit vectors, `block` of them per product."""
    total = 0.0
    for lo in range(0, op.size, block):
        rows = torch.arange(lo, min(op.size, lo + block), device=op.device)
        unit = torch.zeros(len(rows), op.size, dtype=op.dtype, device=op.device)
        unit[torch.arange(len(rows)), rows] = 1
        total += float(op.matmat(unit)[torch.arange(len(rows)), rows].double().sum())
    return total


def block_traces(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 256,
    max_hvps: int = 100,
    seed: int = 0,
    block: int = 8,
    cache: bool | None = None,
    criterion: Criterion = "ce",
    curvature: str = "hessian",
) -> BlockTraceResult:
    """The trace of each parameter block's diagonal block of the curvature of the mean loss of
    `model` on `data`: exact for blocks of at most `max_hvps` parameters, else Hutch++ within
    `max_hvps` products.

    Raises:
        LandscapeError: for `max_hvps` below 4 (Hutch++'s least), `block` below 1, an unknown
            curvature, or a bad model or data.
    """
    if max_hvps < 4 or block < 1:
        raise LandscapeError(
            f"`max_hvps` must be at least 4 and `block` at least 1, got {max_hvps}, {block}"
        )
    start = time.perf_counter()
    op = curvature_operator(
        model, data, batch_size, cache=cache, criterion=criterion, curvature=curvature
    )
    blocks = parameter_blocks(model)
    generator = torch.Generator().manual_seed(seed)
    traces, errors, exact = [], [], []
    with op.progress(sum(min(max_hvps, b - a) for _, a, b in blocks), "per-block trace"):
        for _, a, b in blocks:
            sub = BlockOperator(op, a, b)
            exact.append(sub.size <= max_hvps)
            if exact[-1]:
                traces.append(_exact_trace(sub, block))
                errors.append(0.0)
            else:
                mean, stderr, _ = summarize(
                    hutch_plus_plus(sub, max_hvps, generator, block=block)[0]
                )
                traces.append(mean)
                errors.append(stderr)
    return BlockTraceResult(
        [n for n, _, _ in blocks],
        np.array([b - a for _, a, b in blocks]),
        np.array(traces),
        np.array(errors),
        np.array(exact),
        max_hvps,
        op.hvps,
        time.perf_counter() - start,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        op.criterion,
        curvature,
    )
