"""Block Lanczos with full reorthogonalisation, run in lockstep for several independent starts.

Block Lanczos (Golub & Underwood 1977; Golub & Van Loan, Matrix Computations, sec. 10.3) builds an
orthonormal basis Q_m = [V_1 ... V_m] of the block Krylov space of a start block V_1 (b vectors): H
Q_m = Q_m T_m + V_{m+1} B_m E_m^T, with T_m block tridiagonal (b x b blocks A_j on the diagonal, B_j
below it). With b = 1 this is the Lanczos process (Lanczos 1950; sec. 10.1 there) and T_m is
tridiagonal. Every new block is reorthogonalised against all previous vectors twice (classical
Gram-Schmidt, "twice is enough"), so no spurious copies of converged eigenvalues appear. One product
of H with all runs' blocks serves a whole step. `eigen` reads Ritz pairs and their residuals ||B_m
s_m|| off T_m; `density` reads quadrature nodes and weights off it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .operator import Operator, probes


@dataclass
class Krylov:
    """The output of `lanczos` for `runs` starts of `block` vectors after m steps.

    Attributes:
        projected: the projected matrices T_m (runs, m*block, m*block), float64 on CPU.
        coupling: the last coupling B_m (runs, block, block), which links T_m to the next block.
        basis: the bases Q_m (runs, m*block, size) on the operator's device.

    Examples:
        >>> import torch
        >>> t = torch.tensor([[[2.0, 1.0], [1.0, 2.0]]], dtype=torch.float64)
        >>> k = Krylov(t, torch.zeros(1, 1, 1, dtype=torch.float64), torch.eye(2)[None])
        >>> k.block, k.ritz()[0].tolist()
        (1, [[1.0, 3.0]])
    """

    projected: torch.Tensor
    coupling: torch.Tensor
    basis: torch.Tensor

    @property
    def block(self) -> int:
        """Vectors per block."""
        return self.coupling.shape[-1]

    def matrix(self) -> torch.Tensor:
        """T_m.

        Returns:
            The projected matrices (runs, m*block, m*block).
        """
        return self.projected

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The Ritz pairs (theta, Q s) of every run and their residual norms.

        The residual of a Ritz pair is ||H Q s - theta Q s|| = ||B_m s_last||, s_last the last
        block's rows of s (Parlett, The Symmetric Eigenvalue Problem, SIAM 1998, sec. 13.1).

        Returns:
            The Ritz values (runs, M) ascending, the eigenvectors S of T_m (runs, M, M; columns)
            and the residual norms (runs, M).
        """
        theta, s = torch.linalg.eigh(self.projected)
        residuals = torch.linalg.vector_norm(self.coupling @ s[:, -self.block :, :], dim=1)
        return theta, s, residuals


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Each row of w (r, b, n) less its components along the rows of basis (r, j, n), twice.

    Returns:
        The orthogonalised rows (r, b, n).
    """
    for _ in range(2):
        w = w - torch.einsum("rbj,rjn->rbn", torch.einsum("rjn,rbn->rbj", basis, w), basis)
    return w


def _next_block(
    w: torch.Tensor,
    basis: torch.Tensor,
    op: Operator,
    generator: torch.Generator,
    threshold: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The orthonormal next block V (r, b, n) and coupling B (r, b, b) with w = B^T V (rows).

    Directions that w lacks (breakdown: an invariant subspace was found; a diagonal entry of B at
    most `threshold` (r,)) are filled with random vectors orthogonal to the basis, with zero
    coupling, so that T stays exact and the iteration can go on.

    Returns:
        The next block V and the coupling B.
    """
    q, b = torch.linalg.qr(w.transpose(1, 2))  # w^T = q b, q (r, n, b)
    signs = torch.where(torch.diagonal(b, dim1=1, dim2=2) < 0, -1.0, 1.0).to(b.dtype)
    # non-negative diagonal: b = 1 gives beta = ||w||
    v = (q * signs[:, None, :]).transpose(1, 2).contiguous()
    weak = torch.diagonal(b, dim1=1, dim2=2).abs() <= threshold.to(b.device, b.dtype)[:, None]
    for r, i in torch.nonzero(weak).tolist():
        others = torch.cat([basis[r], v[r, :i], v[r, i + 1 :]])[None]
        fresh = _orthogonalise(probes(op, 1, generator, "normal")[None], others)[0, 0]
        v[r, i] = fresh / fresh.norm()
    coupling = torch.einsum("rbn,rcn->rbc", v, w)
    coupling[weak] = 0.0
    return v, coupling


def lanczos(
    op: Operator,
    start: torch.Tensor,
    steps: int,
    generator: torch.Generator,
    stop: Callable[[Krylov, int], bool] | None = None,
) -> Krylov:
    """`steps` block Lanczos steps with full reorthogonalisation from each start, run in lockstep.

    Each step multiplies H with runs * block vectors in one `op.matmat`. Steps beyond size / block
    are not taken.

    Args:
        op: the symmetric operator H (`operator.Operator`).
        start: (runs, size) for one vector per run (plain Lanczos), or (runs, block, size) for block
            Lanczos (the rows of each block are orthonormalised first).
        steps: block steps at most.
        generator: the source of the random vectors that replace lost directions (breakdown).
        stop: asked `stop(K, j)` after step j (0-based) with the Krylov run so far; True ends the
            iteration early.

    Returns:
        The run (`Krylov`), truncated to the steps done.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> k = lanczos(op, torch.ones(1, 2), 2, torch.Generator().manual_seed(0))
        >>> k.ritz()[0].round(decimals=6).tolist()  # H = 2 X^T X / 2 = diag(4, 1)
        [[1.0, 4.0]]
    """
    if start.ndim == 2:
        start = start[:, None, :]
    runs, block, size = start.shape
    steps = max(1, min(steps, op.size // block))
    tiny = 100 * torch.finfo(op.dtype).eps
    start = start.to(device=op.device, dtype=op.dtype)
    first = torch.linalg.qr(start.transpose(1, 2)).Q.transpose(1, 2)
    # grows by doubling
    basis = torch.zeros(runs, min(steps, 32) * block, size, dtype=op.dtype, device=op.device)
    basis[:, :block] = first
    t = torch.zeros(runs, steps * block, steps * block, dtype=torch.float64)
    # the largest coupling so far: with T, the scale of H
    norms = torch.zeros(runs, dtype=torch.float64)
    j = 0
    while True:
        lo, hi = j * block, (j + 1) * block
        current = basis[:, lo:hi]
        w = op.matmat(current.reshape(runs * block, size)).reshape(runs, block, size)
        a = torch.einsum("rbn,rcn->rbc", current, w).double().cpu()
        t[:, lo:hi, lo:hi] = (a + a.transpose(1, 2)) / 2
        w = _orthogonalise(w, basis[:, :hi])
        scale = torch.maximum(t[:, :hi, :hi].abs().amax((1, 2)), norms)
        v, b = _next_block(w, basis[:, :hi], op, generator, tiny * scale)
        coupling = b.double().cpu()
        norms = torch.maximum(norms, coupling.abs().amax((1, 2)))
        done = Krylov(t[:, :hi, :hi], coupling, basis[:, :hi])
        if (stop is not None and stop(done, j)) or j + 1 == steps:
            return done
        t[:, hi : hi + block, lo:hi] = coupling
        t[:, lo:hi, hi : hi + block] = coupling.transpose(1, 2)
        if hi + block > basis.shape[1]:
            grow = min(basis.shape[1], (steps - j - 1) * block)
            basis = torch.cat([basis, torch.zeros_like(basis[:, :grow])], dim=1)
        basis[:, hi : hi + block] = v
        j += 1
