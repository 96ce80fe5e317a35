"""Top-k Hessian eigenvalues: Lanczos with full reorthogonalisation, or PyHessian's power iteration.

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
from ..errors import LandscapeError, check_choice, warn
from ..loss import Criterion
from ..models.outputs import Output
from .ggn import check_curvature, curvature_operator
from .lanczos import Krylov, lanczos
from .operator import Operator, check_backend, probes
from .pyhessian_adapter import pyhessian_eigenvalues
from .results import EigenResult
from .ritz import Step, confirmed, meets


class Ritz(NamedTuple):
    """k eigenvalue estimates, best first, with their residual norms and error bounds.

    Attributes:
        values: the estimates (k,).
        residuals: their residual norms ||H v - theta v|| (k,).
        bounds: their error bounds (k,).
        vectors: the eigenvectors (k, size), or None.
        converged: whether the stopping rule was met.

    Examples:
        >>> import numpy as np
        >>> r = Ritz(np.array([4.0]), np.array([0.0]), np.array([1e-5]), None, True)
        >>> float(r.values[0] - r.bounds[0]) <= 4.0 <= float(r.values[0] + r.bounds[0])
        True
    """

    values: np.ndarray
    residuals: np.ndarray
    bounds: np.ndarray
    vectors: np.ndarray | None
    converged: bool


class TopRule:
    """The stopping rule of `lanczos_top`, asked after every Lanczos step (a `lanczos` `stop`).

    It records the first run's Ritz values, residuals and bounds (`ritz.Step`) and says whether the
    k wanted ones are certified. Default: every wanted error bound (`ritz.error_bounds`) is at most
    tol * |theta| at two consecutive steps that agree (`ritz.confirmed`); `strict`: every residual
    is at most tol * |theta| (the bounds reported are then the residuals). A Krylov space as large
    as the operator certifies everything.

    Args:
        op: the operator whose Krylov space is built.
        k: eigenvalues wanted.
        tol: the relative tolerance.
        which: "algebraic" or "magnitude" (`ritz.WHICH_KEYS`).
        strict: stop on the residuals instead of the bounds.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> from landscape.curvature.lanczos import lanczos
        >>> rule = TopRule(op, 1, 1e-3)
        >>> krylov = lanczos(op, torch.ones(1, 2), 2, torch.Generator().manual_seed(0), rule)
        >>> r = rule.ritz(krylov)
        >>> round(float(r.values[0]), 5), r.converged
        (4.0, True)
    """

    def __init__(
        self, op: Operator, k: int, tol: float, which: str = "algebraic", strict: bool = False
    ):
        self.op, self.k, self.tol, self.which, self.strict = op, k, tol, which, strict
        self.steps: list[Step] = []
        self.converged = False

    def __call__(self, krylov: Krylov, j: int) -> bool:
        """Record the step and say whether the k wanted Ritz values are certified.

        Args:
            krylov: the Lanczos run after step j.
            j: the step (0-based; the step is read off `krylov`).

        Returns:
            Whether the rule is met (the iteration stops).
        """
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
        """The k wanted Ritz pairs of the last step.

        Args:
            krylov: the Lanczos run the rule was asked about.
            vectors: also compute the eigenvectors (k, size).

        Returns:
            The Ritz pairs (`Ritz`).

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

    Args:
        op: the symmetric operator.
        k: eigenvalues wanted.
        tol: the relative tolerance (`TopRule`).
        max_hvps: products at most.
        generator: the source of the start block and of any random vector.
        which: "algebraic" or "magnitude".
        vectors: also return the eigenvectors.
        block: vectors that go through each product together.
        strict: stop on the residuals instead of the bounds.

    Returns:
        The Ritz pairs (`Ritz`).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> r = lanczos_top(op, 1, 1e-3, 10, torch.Generator().manual_seed(0))
        >>> round(float(r.values[0]), 5), op.hvps
        (4.0, 2)
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
    """PyHessian's power iteration with deflation.

    For each of k eigenvalues at most max_hvps // k products, stopping when the Rayleigh quotient
    changes by less than tol (relative) between two iterations. The bounds are the residuals (no gap
    is known).

    Args:
        op: the symmetric operator.
        k: eigenvalues wanted.
        tol: the relative change that stops each iteration.
        max_hvps: products at most.
        generator: the source of the start vectors.
        vectors: also return the eigenvectors.

    Returns:
        The eigenvalue estimates of largest magnitude (`Ritz`).

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> r = power_top(op, 1, 1e-6, 50, torch.Generator().manual_seed(0))
        >>> round(float(r.values[0]), 3), r.converged
        (4.0, True)
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


def _trainable(model: nn.Module) -> int:
    """Return the number of trainable parameters: the curvature matrix's dimension."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def check_k_fits(k: int, model: nn.Module) -> None:
    """Raise unless the curvature matrix of `model`'s trainable parameters has `k` eigenvalues.

    Args:
        k: eigenvalues asked for.
        model: the model measured.

    Raises:
        LandscapeError: the model has fewer than `k` trainable parameters.

    Examples:
        >>> from torch import nn
        >>> check_k_fits(3, nn.Linear(2, 1, bias=False))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: `k` 3 is more than the 2 trainable parameters ...
    """
    size = _trainable(model)
    if 0 < size < k:
        raise LandscapeError(
            f"`k` {k} is more than the {size} trainable parameters (the Hessian has {size} "
            "eigenvalues)"
        )


def fit_block(block: int | None, model: nn.Module, default: int = 1) -> int:
    """The block of start vectors Lanczos can use on `model`: at most its trainable parameters.

    A block larger than the space would start from linearly dependent vectors. A block given
    explicitly is reduced to the space's dimension with a warning; the default quietly.

    Args:
        block: start vectors asked for, or None for `default`.
        model: the model measured.
        default: the block when `block` is None.

    Returns:
        The block, or the number of trainable parameters when that is smaller.

    Examples:
        >>> import warnings
        >>> from torch import nn
        >>> fit_block(None, nn.Linear(2, 1), default=4)
        3
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     fit_block(4, nn.Linear(2, 1))
        3
        >>> str(caught[0].message)
        '`block` 4 is more than the 3 trainable parameters: 3 start vectors used'
    """
    size = _trainable(model)
    if block is None:
        return min(default, size) if size > 0 else default
    if 0 < size < block:
        warn(
            f"`block` {block} is more than the {size} trainable parameters: {size} start "
            "vectors used"
        )
        return size
    return block


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
    """Top-k eigenvalues of the Hessian of the mean loss of `model` (eval mode) on `data`.

    Lanczos (Lanczos 1950; with full reorthogonalisation, `lanczos.py`) stops when every
    eigenvalue's error bound (`ritz.py`) is at most `tol` relative (`strict`: every residual); a
    block of start vectors at least as large as a cluster of eigenvalues resolves it.

    Args:
        model: any module, in eval mode (or without dropout and BatchNorm).
        data: a `Split` or any re-iterable of batches (`landscape.data.batches`).
        k: eigenvalues wanted.
        batch_size: examples per forward pass of a `Split` (memory only).
        method: "lanczos" (default) or "power" (PyHessian's power iteration, `power_top`).
        tol: each eigenvalue's relative error bound (Lanczos), or the relative change that stops
            power iteration.
        max_hvps: the cap on Hessian-vector products [100 per eigenvalue, PyHessian's maxIter,
            or the block if larger].
        seed: the seed of every random vector.
        which: "algebraic" (Lanczos default) or "magnitude" (what power iteration finds).
        eigenvectors: also return the eigenvectors (k, size).
        backend: "landscape", or "pyhessian" for PyHessian 0.1's own power iteration.
        cache: keep the gradient graphs between products (`HessianOperator`; None: when they fit).
        criterion: "ce" (default), "nll", "lm" or a loss callable.
        block: start vectors that go through each product together (block Lanczos).
        strict: Lanczos stops on the residuals instead of the bounds (costlier).
        output: which tensor of the model's output is the prediction (`landscape.models.outputs`).
        curvature: the matrix, "hessian" (default), "ggn" (Gauss-Newton) or "fisher" (empirical
            Fisher), `ggn.py`.

    Returns:
        The eigenvalues, their residuals and bounds, and the run's settings and cost
        (`EigenResult`).

    Raises:
        LandscapeError: a bad choice or setting, a `k` larger than the parameters, or a budget
            smaller than `k` or the block.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)  # H = diag(4, 1)
        >>> model = nn.Linear(2, 1, bias=False)
        >>> r = top_eigenvalues(model, [(x, y)], k=2, criterion=nn.MSELoss())
        >>> r.eigenvalues.round(5).tolist(), bool((r.bounds < 1e-3 * r.eigenvalues).all())
        ([4.0, 1.0], True)
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
    block = fit_block(block, model)
    max_hvps = max(100 * k, block) if max_hvps is None else max_hvps
    if max_hvps < max(k, block):
        raise LandscapeError(
            f"`max_hvps` {max_hvps} is fewer than the {k} eigenvalues (or the block of {block}) "
            f"asked for: give at least {max(k, block)}"
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
