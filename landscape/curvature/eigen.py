"""Top-k Hessian eigenvalues: Lanczos with full reorthogonalisation (default) and PyHessian's power iteration.

"Top" means largest algebraic by default (`which="algebraic"`): the most positive curvature. Power iteration
converges to the eigenvalues of largest magnitude, which is what PyHessian-based papers report as the "top
eigenvalue" (a negative number when the most negative curvature dominates); `which="magnitude"` makes Lanczos
answer that question too.

With Lanczos (`lanczos.py`), the Ritz pairs (theta_i, Q_m s_i) of the tridiagonal T_m have residual
norm ||H y_i - theta_i y_i|| = |beta_m s_{m,i}|, and the iteration stops once that is at most `tol * |theta_i|`
for each of the k wanted pairs, which bounds the relative error of each theta_i by `tol` (and in practice by
about tol^2 * |theta_i| / gap).
"""
from __future__ import annotations

import time
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from ..choices import EIG_METHODS, WHICH
from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError
from ..loss import Criterion
from .lanczos import Tridiagonal, lanczos
from .operator import HessianOperator, Operator, check_backend, probes
from .pyhessian_adapter import pyhessian_eigenvalues
from .results import EigenResult


def _ritz(t: Tridiagonal, k: int, which: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k wanted Ritz values, their residual norms and the eigenvectors of T (columns), for run 0."""
    theta, s = torch.linalg.eigh(t.matrix()[0])
    key = theta if which == "algebraic" else theta.abs()
    order = torch.argsort(key, descending=True)[:k]
    return theta[order], (t.beta[0, -1] * s[-1, order]).abs(), s[:, order]


def lanczos_top(op: Operator, k: int, tol: float, max_hvps: int, generator: torch.Generator,
                which: str = "algebraic", vectors: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Top-k Ritz pairs of `op` by Lanczos, stopping when every residual is at most tol*|theta_i|."""
    converged = False

    def stop(t: Tridiagonal, j: int) -> bool:
        nonlocal converged
        if j + 1 < k:
            return False
        theta, res, _ = _ritz(t, k, which)
        converged = bool((res <= tol * theta.abs()).all()) or j + 1 == op.size
        return converged

    t = lanczos(op, probes(op, 1, generator, "normal"), max_hvps, generator, stop)
    if t.alpha.shape[1] < k:
        raise LandscapeError(f"asked for {k} eigenvalues of a Hessian of size {op.size}")
    theta, res, s = _ritz(t, k, which)
    vecs = None
    if vectors:
        vecs = (s.T.to(dtype=op.dtype, device=op.device) @ t.basis[0]).cpu().numpy()
    return theta.numpy(), res.numpy(), vecs, converged


def power_top(op: Operator, k: int, tol: float, max_hvps: int, generator: torch.Generator, vectors: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """PyHessian's power iteration with deflation: for each of k eigenvalues at most max_hvps // k products,
    stopping when the Rayleigh quotient changes by less than tol (relative) between two iterations."""
    found: list[torch.Tensor] = []
    values, residuals, converged = [], [], True
    for _ in range(k):
        v = probes(op, 1, generator, "normal")[0]
        lam, vec, done, res = None, v, False, float("nan")
        for _ in range(max(1, max_hvps // k)):
            for u in found:
                v = v - (u @ v) * u
            v = v / v.norm()
            hv = op.matmat(v[None])[0]
            new = float(v @ hv)
            res = float((hv - new * v).norm())
            done = lam is not None and abs(lam - new) / (abs(lam) + 1e-6) < tol
            lam, vec, v = new, v, hv
            if done:
                break
        converged &= done
        values.append(lam)
        residuals.append(res)
        found.append(vec)
    vecs = torch.stack(found).cpu().numpy() if vectors else None
    return np.array(values), np.array(residuals), vecs, converged


def top_eigenvalues(model: nn.Module, data: Split | Iterable[Batch], k: int = 1, batch_size: int = 256,
                    method: str = "lanczos", tol: float = 1e-3, max_hvps: int | None = None, seed: int = 0,
                    which: str | None = None, eigenvectors: bool = False, backend: str = "landscape",
                    cache: bool | None = None, criterion: Criterion = "ce") -> EigenResult:
    """Top-k eigenvalues of the Hessian of the mean loss of `model` (eval mode) on `data`: a `Split` or any
    re-iterable of `(inputs, targets)` batches; `criterion` "ce" (default), "nll" or a callable.

    `max_hvps` (default 100 per eigenvalue, PyHessian's maxIter) caps the Hessian-vector products;
    `backend="pyhessian"` runs PyHessian 0.1's own power iteration instead.
    """
    check_backend(backend)
    if method not in EIG_METHODS:
        raise LandscapeError(f"unknown eigenvalue method {method!r}; choose one of {', '.join(EIG_METHODS)}")
    which = which or ("algebraic" if method == "lanczos" else "magnitude")
    if which not in WHICH:
        raise LandscapeError(f"unknown --which {which!r}; choose one of {', '.join(WHICH)}")
    if (method == "power" or backend == "pyhessian") and which != "magnitude":
        raise LandscapeError("power iteration finds the eigenvalues of largest magnitude; use --method lanczos "
                             "for the largest algebraic ones")
    if k < 1 or tol <= 0:
        raise LandscapeError(f"-k must be at least 1 and --tol positive, got k={k}, tol={tol}")
    size = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if 0 < size < k:
        raise LandscapeError(f"-k {k} is more than the {size} trainable parameters (the Hessian has {size} "
                             "eigenvalues)")
    max_hvps = 100 * k if max_hvps is None else max_hvps
    if max_hvps < k:
        raise LandscapeError(f"--max-hvps {max_hvps} is fewer than the {k} eigenvalues asked for")
    if backend == "pyhessian":
        return pyhessian_eigenvalues(model, data, k=k, batch_size=batch_size, tol=tol, max_hvps=max_hvps,
                                     seed=seed, eigenvectors=eigenvectors, criterion=criterion)
    start = time.perf_counter()
    op = HessianOperator(model, data, batch_size, cache=cache, criterion=criterion)
    generator = torch.Generator().manual_seed(seed)
    with op.progress(max_hvps, f"{method} top-{k}"):
        if method == "lanczos":
            values, residuals, vecs, converged = lanczos_top(op, k, tol, max_hvps, generator, which, eigenvectors)
        else:
            values, residuals, vecs, converged = power_top(op, k, tol, max_hvps, generator, eigenvectors)
    return EigenResult(values, residuals, vecs, k, method, "landscape", which, tol, op.hvps,
                       time.perf_counter() - start, converged, op.size, op.n_examples, batch_size, seed, op.criterion)
