"""Per-layer curvature: the top eigenvalue and the trace of each parameter block's diagonal block.

A block is one trainable parameter tensor (a layer's weight, its bias, a BatchNorm scale); its
diagonal block of the Hessian (or of the Gauss-Newton or Fisher matrix, `ggn.py`) is the
curvature seen when only that tensor moves. Blockwise spectra are what Zhang, Chen, Ding, Li,
Sun & Luo ("Why transformers need Adam: a Hessian perspective", NeurIPS 2024) compare across
architectures. `BlockOperator` is the diagonal block as an operator; `block_eigenvalues` and
`block_traces` measure every block of a model.
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
    """The diagonal block `op[start:stop, start:stop]` of an operator, behind the same interface.

    H_bb v is the slice b of H (v padded with zeros outside b): one product with the whole matrix
    per block vector, so a block costs what a whole-model measurement of as many products costs.
    `hvps` counts the block's products; `op.hvps` those of the whole matrix.

    Args:
        op: the whole operator.
        start: the block's first index in the flat vector.
        stop: one past its last index.

    Examples:
        >>> import torch
        >>> from landscape.curvature import HessianOperator
        >>> model = torch.nn.Linear(2, 1)  # least squares: H = (2/N) sum_i [x_i 1] [x_i 1]^T
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> op = HessianOperator(model, data, criterion=torch.nn.MSELoss())
        >>> op.matmat(torch.eye(3)).tolist()
        [[1.0, 0.0, 1.0], [0.0, 4.0, 2.0], [1.0, 2.0, 2.0]]
        >>> weight = BlockOperator(op, 0, 2)
        >>> weight.matmat(torch.eye(2)).tolist(), weight.hvps
        ([[1.0, 0.0], [0.0, 4.0]], 2)
    """

    def __init__(self, op: Operator, start: int, stop: int):
        self.op, self.start, self.stop = op, start, stop
        self.size, self.dtype, self.device, self.hvps = stop - start, op.dtype, op.device, 0

    def matmat(self, vectors: torch.Tensor) -> torch.Tensor:
        """The block times each row of `vectors`.

        Args:
            vectors: (b, size) vectors over the block's entries.

        Returns:
            (b, size): the block times each row.
        """
        padded = torch.zeros(len(vectors), self.op.size, dtype=self.dtype, device=self.device)
        padded[:, self.start : self.stop] = vectors
        self.hvps += len(vectors)
        return self.op.matmat(padded)[:, self.start : self.stop]


def parameter_blocks(model: nn.Module) -> list[tuple[str, int, int]]:
    """(name, start, stop) of every trainable parameter in the flat vector of `model.parameters()`.

    Args:
        model: the model.

    Returns:
        One (name, start, stop) per trainable parameter, in `model.parameters()` order.

    Examples:
        >>> import torch
        >>> parameter_blocks(torch.nn.Linear(3, 2))
        [('weight', 0, 6), ('bias', 6, 8)]
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
    """The top eigenvalue of each parameter block's diagonal block of the curvature.

    The curvature is that of the mean loss of `model` on `data`, as in `eigen.top_eigenvalues`;
    each block's top eigenvalue is Lanczos' (`eigen.lanczos_top`) on its `BlockOperator`, with at
    most `max_hvps` products per block. Bad models or data, and an unknown `which` or
    `curvature`, are refused by the checks this calls.

    Args:
        model: the model measured.
        data: a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        tol: the stopping rule's relative tolerance (`eigen.lanczos_top`).
        max_hvps: the most products per block.
        seed: seeds the Lanczos start vectors.
        which: "algebraic" (largest) or "magnitude" (largest in absolute value).
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        curvature: "hessian", "ggn" or "fisher" (`ggn.py`).

    Returns:
        The block names, sizes, eigenvalues, residuals, error bounds and whether each converged,
        with the run's cost.

    Raises:
        LandscapeError: `tol` not positive or `max_hvps` below 1.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = block_eigenvalues(model, data, criterion=torch.nn.MSELoss())
        >>> r.blocks, r.eigenvalues.round(4).tolist()  # weight block diag(1, 4), bias block 2
        (['weight', 'bias'], [4.0, 2.0])
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
    """The trace as the sum of e_i^T A e_i over the unit vectors, `block` of them per product.

    Returns:
        The trace.
    """
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
    """The trace of each parameter block's diagonal block of the curvature of the mean loss.

    The trace of a block of at most `max_hvps` parameters is summed exactly over its unit vectors;
    a larger block's is estimated by Hutch++ (`trace.hutch_plus_plus`) within `max_hvps` products.
    The block traces add up to the whole trace. Bad models or data, and an unknown `curvature`, are
    refused by the checks this calls.

    Args:
        model: the model measured.
        data: a `Split` or any re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        max_hvps: the most products per block.
        seed: seeds the Hutch++ probes.
        block: vectors per product.
        cache: keep the product graphs (True), never (False), or when they fit (None).
        criterion: "ce" (default), "nll", "lm" or a loss callable (`landscape.loss`).
        curvature: "hessian", "ggn" or "fisher" (`ggn.py`).

    Returns:
        The block names, sizes, traces, standard errors (0 where exact) and which were exact, with
        the run's cost.

    Raises:
        LandscapeError: `max_hvps` below 4 (Hutch++'s least) or `block` below 1.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = block_traces(model, data, criterion=torch.nn.MSELoss())
        >>> r.trace.tolist(), r.exact.tolist()  # weight: 1 + 4; bias: 2
        ([5.0, 2.0], [True, True])
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
