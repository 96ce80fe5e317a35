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
    """The output of `lanczos` for `runs` starts of `block` vectors after m steps: the projected
    matrices T_m (runs, m*block, m*block), float64 on CPU; the last coupling B_m (runs, block,
    block), which links T_m to the next block; and the bases Q_m (runs, m*block, size) on the
    operator's device.
    """

    projected: torch.Tensor
    coupling: torch.Tensor
    basis: torch.Tensor

    @property
    def block(self) -> int:
        """Vectors per block."""
        return self.coupling.shape[-1]

    def matrix(self) -> torch.Tensor:
        """T_m (runs, m*block, m*block)."""
        return self.projected

    def ritz(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Ritz values (runs, M) ascending, eigenvectors S of T_m (runs, M, M; columns) and the
        residual norms ||H Q s - theta Q s|| = ||B_m s_last|| (runs, M) of the Ritz pairs (theta, Q
        s).
        """
        theta, s = torch.linalg.eigh(self.projected)
        residuals = torch.linalg.vector_norm(self.coupling @ s[:, -self.block :, :], dim=1)
        return theta, s, residuals


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from each row of w (r, b, n) its components along the rows of basis (r, j, n),
    twice.
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
    """
    q, b = torch.linalg.qr(w.transpose(1, 2))  # w^T = q b, q (r, n, b)
    signs = torch.where(torch.diagonal(b, dim1=1, dim2=2) < 0, -1.0, 1.0).to(b.dtype)
    v = (
        (q * signs[:, None, :]).transpose(1, 2).contiguous()
    )  # non-negative diagonal: b = 1 gives beta = ||w||
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

    `start`: (runs, size) for one vector per run (plain Lanczos), or (runs, block, size) for block
    Lanczos (the rows of each block are orthonormalised first). Each step multiplies H with runs *
    block vectors in one `op.matmat`. `stop(K, j)` is asked after step j (0-based) and may end the
    iteration early; the result is truncated to the steps done. Steps beyond size / block are not
    taken.
    """
    if start.ndim == 2:
        start = start[:, None, :]
    runs, block, size = start.shape
    steps = max(1, min(steps, op.size // block))
    tiny = 100 * torch.finfo(op.dtype).eps
    start = start.to(device=op.device, dtype=op.dtype)
    first = torch.linalg.qr(start.transpose(1, 2)).Q.transpose(1, 2)
    basis = torch.zeros(
        runs, min(steps, 32) * block, size, dtype=op.dtype, device=op.device
    )  # grows by doubling
    basis[:, :block] = first
    t = torch.zeros(runs, steps * block, steps * block, dtype=torch.float64)
    norms = torch.zeros(
        runs, dtype=torch.float64
    )  # the largest coupling so far: with T, the scale of H
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
