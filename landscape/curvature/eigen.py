"""Top-k Hessian eigenvalues: Lanczos with full reorthogonalisation (default) and PyHessian's power
iteration.

"Top" means largest algebraic by default (`which="algebraic"`): the most positive curvature. Power
iteration converges to the eigenvalues of largest magnitude, which is what PyHessian-based papers
report as the "top eigenvalue" (a negative number when the most negative curvature dominates);
`which="magnitude"` makes Lanczos answer that question too.

With (block) Lanczos (`lanczos.py`), `tol` bounds the relative error of each of the k eigenvalues:
the iteration stops once every wanted Ritz value's error bound (`ritz.py`: the residual, or
residual^2 / gap when the gap to the rest of the spectrum is known) is at most tol * |theta| at two
consecutive steps that agree, and the bounds are reported. `strict=True` keeps the older, costlier
rule: every residual at most tol * |theta|.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..choices import EIG_METHODS, WHICH
from ..data.batches import Batch
from ..data.split import Split
from ..errors import LandscapeError, check_choice
from ..loss import Criterion
from ..models.outputs import Output
from .ggn import check_curvature, curvature_operator
from .lanczos import Krylov, lanczos
from .operator import Operator, check_backend, probes
from .pyhessian_adapter import pyhessian_eigenvalues
from .results import EigenResult
from .ritz import Step, confirmed, meets


class Ritz(NamedTuple):
    """k eigenvalue estimates, best first, with their residual norms, error bounds, (optionally)
    eigenvectors (k, size) and whether the stopping rule was met.
    """

    values: np.ndarray
    residuals: np.ndarray
    bounds: np.ndarray
    vectors: np.ndarray | None
    converged: bool


class TopRule:
    """The stopping rule of `lanczos_top`, asked after every Lanczos step (a `lanczos` `stop`): it
    records the first run's Ritz values, residuals and bounds (`ritz.Step`) and says whether the k
    wanted ones are certified.

    Default: every wanted error bound (`ritz.error_bounds`) is at most tol * |theta| at two
    consecutive steps that agree (`ritz.confirmed`); `strict`: every residual is at most tol *
    |theta| (the bounds reported are then the residuals). A Krylov space as large as the operator
    certifies everything.
    """

    def __init__(
        self, op: Operator, k: int, tol: float, which: str = "algebraic", strict: bool = False
    ):
        self.op, self.k, self.tol, self.which, self.strict = op, k, tol, which, strict
        self.steps: list[Step] = []
        self.converged = False

    def __call__(self, krylov: Krylov, j: int) -> bool:
        theta, _, residuals = krylov.ritz()
        step = Step.of(theta[0], residuals[0], torch.finfo(self.op.dtype).eps)
        self.steps.append(step)
        if len(step.theta) < self.k:
            return False
        wanted = step.wanted(self.k, self.which)
        exhausted = len(step.theta) >= self.op.size
        if self.strict:
            self.converged = meets(step, wanted, self.tol, strict=True) or exhausted
        else:
            agreed = len(self.steps) > 1 and confirmed(
                self.steps[-2], step, wanted, self.which, self.tol
            )
            self.converged = agreed or exhausted
        return self.converged

    def ritz(self, krylov: Krylov, vectors: bool = False) -> Ritz:
        """The k wanted Ritz pairs of the last step (eigenvectors (k, size) with `vectors`).

        Raises:
            LandscapeError: the Krylov space has fewer than k vectors.
        """
        step = self.steps[-1]
        if len(step.theta) < self.k:
            raise LandscapeError(
                f"asked for {self.k} eigenvalues of a Hessian of size {self.op.size}"
            )
        wanted = step.wanted(self.k, self.which)
        bounds = step.first_order() if self.strict else step.bounds
        vecs = None
        if vectors:
            s = krylov.ritz()[1][0][:, wanted]
            vecs = (
                (s.T.to(dtype=self.op.dtype, device=self.op.device) @ krylov.basis[0]).cpu().numpy()
            )
        return Ritz(
            step.theta[wanted].numpy(),
            step.residuals[wanted].numpy(),
            bounds[wanted].numpy(),
            vecs,
            self.converged,
        )


def lanczos_top(
    op: Operator,
    k: int,
    tol: float,
    max_hvps: int,
    generator: torch.Generator,
    which: str = "algebraic",
    vectors: bool = False,
    block: int = 1,
    strict: bool = False,
) -> Ritz:
    """Top-k Ritz pairs of `op` by (block) Lanczos within `max_hvps` products, stopped by `TopRule`.

    `block` vectors go through each product together.
    """
    rule = TopRule(op, k, tol, which, strict)
    krylov = lanczos(
        op, probes(op, block, generator, "normal")[None], max(1, max_hvps // block), generator, rule
    )
    return rule.ritz(krylov, vectors)


def power_top(
    op: Operator,
    k: int,
    tol: float,
    max_hvps: int,
    generator: torch.Generator,
    vectors: bool = False,
) -> Ritz:
    """PyHessian's power iteration with deflation: for each of k eigenvalues at most max_hvps // k
    products, stopping when the Rayleigh quotient changes by less than tol (relative) between two
    iterations. The bounds are the residuals (no gap is known).
    """
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
    return Ritz(np.array(values), np.array(residuals), np.array(residuals), vecs, converged)


def check_k_fits(k: int, model: nn.Module) -> None:
    """Raise unless the curvature matrix of `model`'s trainable parameters has at least `k`
    eigenvalues.
    """
    size = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if 0 < size < k:
        raise LandscapeError(
            f"`k` {k} is more than the {size} trainable parameters (the Hessian has {size} "
            "eigenvalues)"
        )


def top_eigenvalues(
    model: nn.Module,
    data: Split | Iterable[Batch],
    k: int = 1,
    batch_size: int = 256,
    method: str = "lanczos",
    tol: float = 1e-3,
    max_hvps: int | None = None,
    seed: int = 0,
    which: str | None = None,
    eigenvectors: bool = False,
    backend: str = "landscape",
    cache: bool | None = None,
    criterion: Criterion = "ce",
    block: int = 1,
    strict: bool = False,
    output: Output = None,
    curvature: str = "hessian",
) -> EigenResult:
    """Top-k eigenvalues of the Hessian of the mean loss of `model` (eval mode) on `data`: a `Split`
    or any re-iterable of batches (`landscape.data.batches`); `criterion` "ce" (default), "nll",
    "lm" or a callable; `output` which tensor of the model's output is the prediction
    (`landscape.models.outputs`).

    Lanczos stops when every eigenvalue's error bound is at most `tol` relative (`strict`: every
    residual); `block` start vectors go through each product together (block Lanczos; a block at
    least as large as a cluster of eigenvalues resolves it). `max_hvps` (default 100 per eigenvalue,
    PyHessian's maxIter) caps the Hessian-vector products; `backend="pyhessian"` runs PyHessian
    0.1's own power iteration instead. `curvature`: the matrix, "hessian" (default), "ggn"
    (Gauss-Newton) or "fisher" (empirical Fisher), `ggn.py`.
    """
    check_backend(backend, criterion, output)
    check_curvature(curvature, backend)
    check_choice(method, EIG_METHODS, "eigenvalue method")
    which = which or ("algebraic" if method == "lanczos" else "magnitude")
    check_choice(which, WHICH, "`which`")
    if (method == "power" or backend == "pyhessian") and which != "magnitude":
        raise LandscapeError(
            "power iteration finds the eigenvalues of largest magnitude; use `method` lanczos "
            "for the largest algebraic ones"
        )
    if k < 1 or tol <= 0 or block < 1:
        raise LandscapeError(
            f"`k` and `block` must be at least 1 and `tol` positive, got k={k}, block={block}, "
            f"tol={tol}"
        )
    check_k_fits(k, model)
    max_hvps = 100 * k if max_hvps is None else max_hvps
    if max_hvps < max(k, block):
        raise LandscapeError(
            f"`max_hvps` {max_hvps} is fewer than the {k} eigenvalues (or the block of {block}) "
            "asked for"
        )
    if backend == "pyhessian":
        return pyhessian_eigenvalues(
            model,
            data,
            k=k,
            batch_size=batch_size,
            tol=tol,
            max_hvps=max_hvps,
            seed=seed,
            eigenvectors=eigenvectors,
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
    with op.progress(max_hvps, f"{method} top-{k}"):
        if method == "lanczos":
            ritz = lanczos_top(op, k, tol, max_hvps, generator, which, eigenvectors, block, strict)
        else:
            ritz = power_top(op, k, tol, max_hvps, generator, eigenvectors)
    rule = "change" if method == "power" else "residual" if strict else "bound"
    return EigenResult(
        ritz.values,
        ritz.residuals,
        ritz.vectors,
        k,
        method,
        "landscape",
        which,
        tol,
        op.hvps,
        time.perf_counter() - start,
        ritz.converged,
        op.size,
        op.n_examples,
        batch_size,
        seed,
        op.criterion,
        ritz.bounds,
        rule,
        block if method == "lanczos" else 1,
        op.path,
        curvature,
    )
