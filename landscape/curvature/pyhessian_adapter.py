"""PyHessian 0.1's own eigenvalue and trace routines on a model and its data (backend pyhessian).

PyHessian: Yao, Gholami, Keutzer & Mahoney, "PyHessian: Neural networks through the lens of the
Hessian", IEEE BigData 2020. This reproduces numbers computed the way the seed study did (power
iteration and Hutchinson, one double backward over the whole loader per product). PyHessian 0.1
runs unchanged on torch 2.x for these two routines; only its `density()` is broken there (it
calls the removed `torch.eig`), which is why the ESD has no PyHessian backend. The adapter only
builds PyHessian's loader from the same batches as landscape (unsharded), seeds the global RNG
it draws from, counts its products, and clears the `.grad` tensors PyHessian leaves behind. Its
trace loop keeps its original stopping rule, which ends at the next probe whenever the running
mean is negative (after two probes if the first is negative); the result says so in `note`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from .. import dist
from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..errors import LandscapeError
from ..loss import Criterion, loss_name
from .operator import HessianOperator, check_model, data_batches
from .results import EigenResult, TraceResult, summarize

PYHESSIAN_PATH = "pyhessian: forward, backward and second backward per batch and product"


def _hessian_class() -> type:
    """PyHessian's `hessian` class, subclassed to count its Hessian-vector products.

    Returns:
        The subclass.

    Raises:
        LandscapeError: pyhessian is not installed.
    """
    try:
        from pyhessian import hessian
    except ImportError:
        raise LandscapeError(
            "`backend` pyhessian needs the pyhessian package: pip install pyhessian"
        ) from None

    class Counted(hessian):
        """PyHessian's hessian class, counting its Hessian-vector products over the loader."""

        hvps = 0

        def dataloader_hv_product(self, v):
            self.hvps += 1
            return super().dataloader_hv_product(v)

    return Counted


@contextlib.contextmanager
def _session(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int,
    seed: int,
    criterion: Criterion,
) -> Iterator:
    """A PyHessian `hessian` object over `data`; model mode, grads and global RNG restored after.

    Yields:
        The `hessian` object, seeded with `seed`.

    Raises:
        LandscapeError: under torchrun, or for batches whose inputs are not one tensor.
    """
    check_model(model)
    data_batches(model, data, batch_size)
    if dist.active():
        raise LandscapeError(
            "`backend` pyhessian runs in a single process; launch it without torchrun"
        )
    cls = _hessian_class()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    loader = [(x, y) for x, y in as_batches(data, batch_size, device, sharded=False)]
    if not all(isinstance(x, torch.Tensor) for x, _ in loader):
        raise LandscapeError(
            "the pyhessian `backend` calls model(inputs) with one tensor: use the landscape "
            "backend for batches whose inputs are tuples or mappings"
        )
    loader = [(x.to(dtype), y) for x, y in loader]
    was = model.training
    devices = [device] if device.type == "cuda" else []
    device_ctx = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    try:
        # the math attention kernel: the fused ones have no second derivative (operator.py)
        with (
            torch.random.fork_rng(devices=devices),
            device_ctx,
            warnings.catch_warnings(),
            sdpa_kernel(SDPBackend.MATH),
        ):
            # backward(create_graph=True) reference-cycle warning
            warnings.simplefilter("ignore", UserWarning)
            torch.manual_seed(seed)
            yield cls(
                model, _mean_criterion(criterion), dataloader=loader, cuda=device.type == "cuda"
            )
    finally:
        model.train(was)
        for p in model.parameters():
            p.grad = None


def _mean_criterion(criterion: Criterion) -> nn.Module:
    """The criterion as PyHessian expects it: a batch mean (it weights batches by their size).

    Returns:
        The loss module or callable.
    """
    if criterion == "ce":
        return nn.CrossEntropyLoss()
    if criterion == "nll":
        return nn.NLLLoss()
    return criterion


def pyhessian_eigenvalues(
    model: nn.Module,
    data: Split | Iterable[Batch],
    k: int = 1,
    batch_size: int = 256,
    tol: float = 1e-3,
    max_hvps: int | None = None,
    seed: int = 0,
    eigenvectors: bool = False,
    criterion: Criterion = "ce",
) -> EigenResult:
    """PyHessian's `eigenvalues(maxIter=max_hvps // k, tol, top_n=k)` on `model` and `data`.

    Residuals are checked afterwards with landscape's operator (k extra products, not counted in
    `hvps` or `seconds`). Models and data that landscape refuses are refused here too, before
    PyHessian is imported; without the pyhessian package, or under torchrun, the call is refused.

    Args:
        model: the model measured.
        data: a `Split` or a re-iterable of batches whose inputs are one tensor.
        k: how many eigenvalues.
        batch_size: examples per batch of a `Split`.
        tol: PyHessian's tolerance on the relative change of an eigenvalue.
        max_hvps: the products' budget, split evenly across the k eigenvalues [100 k].
        seed: seeds the global RNG PyHessian draws its start vectors from.
        eigenvectors: keep the unit eigenvectors in the result.
        criterion: "ce", "nll" or a loss callable.

    Returns:
        The eigenvalues with residuals (as bounds too), rule "change" and `converged` None.

    Examples:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5))
        >>> data = [(torch.ones(1, 2), torch.zeros(1, dtype=torch.long))]
        >>> pyhessian_eigenvalues(model, data)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the model is in train mode with Dropout: ...
    """
    max_hvps = 100 * k if max_hvps is None else max_hvps
    start = time.perf_counter()
    with _session(model, data, batch_size, seed, criterion) as h:
        values, vectors = h.eigenvalues(maxIter=max(1, max_hvps // k), tol=tol, top_n=k)
        hvps = h.hvps
    seconds = time.perf_counter() - start
    flat = torch.stack([torch.cat([t.detach().reshape(-1) for t in v]) for v in vectors])
    flat = flat / flat.norm(dim=1, keepdim=True)
    op = HessianOperator(model, data, batch_size, criterion=criterion)
    hv = op.matmat(flat)
    values = np.array(values, dtype=np.float64)
    residuals = (
        hv - torch.as_tensor(values, dtype=hv.dtype, device=hv.device)[:, None] * flat
    ).norm(dim=1)
    residuals = residuals.double().cpu().numpy()
    return EigenResult(
        values,
        residuals,
        flat.cpu().numpy() if eigenvectors else None,
        k,
        "power",
        "pyhessian",
        "magnitude",
        tol,
        hvps,
        seconds,
        None,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        loss_name(criterion),
        residuals,
        "change",
        1,
        PYHESSIAN_PATH,
    )


def pyhessian_trace(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 256,
    max_hvps: int = 100,
    target_rse: float | None = None,
    seed: int = 0,
    criterion: Criterion = "ce",
) -> TraceResult:
    """PyHessian's `trace(maxIter=max_hvps, tol)` on `model` and `data`.

    `tol` is `target_rse` or PyHessian's default 1e-3, used by its own rule: the relative change of
    the running mean, not a standard error. Models and data that landscape refuses are refused here
    too, before PyHessian is imported; without the pyhessian package, or under torchrun, the call
    is refused.

    Args:
        model: the model measured.
        data: a `Split` or a re-iterable of batches whose inputs are one tensor.
        batch_size: examples per batch of a `Split`.
        max_hvps: the most probes (one product each).
        target_rse: PyHessian's tolerance [1e-3].
        seed: seeds the global RNG PyHessian draws its probes from.
        criterion: "ce", "nll" or a loss callable.

    Returns:
        The trace of PyHessian's estimates, with a `note` when its rule stopped at a negative mean.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 2).requires_grad_(False)
        >>> data = [(torch.ones(1, 2), torch.zeros(1, dtype=torch.long))]
        >>> pyhessian_trace(model, data)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the model has no trainable parameters: ...
    """
    tol = 1e-3 if target_rse is None else target_rse
    start = time.perf_counter()
    with _session(model, data, batch_size, seed, criterion) as h:
        estimates = np.array(h.trace(maxIter=max_hvps, tol=tol), dtype=np.float64)
        hvps = h.hvps
        n_params = sum(p.numel() for p in h.params)
        n_examples = sum(len(y) for _, y in h.data)
    trace, stderr, rse = summarize(estimates)
    note = None
    if 1 < len(estimates) < max_hvps and np.mean(estimates[:-1]) < 0:
        note = (
            f"PyHessian stopped after {len(estimates)} probes because its running mean was "
            "negative (its stopping rule divides by the signed mean)"
        )
    return TraceResult(
        trace,
        stderr,
        rse,
        estimates,
        "hutchinson",
        "pyhessian",
        len(estimates),
        0,
        hvps,
        max_hvps,
        target_rse,
        time.perf_counter() - start,
        n_params,
        n_examples,
        batch_size,
        seed,
        note,
        loss_name(criterion),
        PYHESSIAN_PATH,
    )
