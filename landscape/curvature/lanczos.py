"""The Lanczos process with full reorthogonalisation, run in lockstep for several start vectors.

Lanczos (1950; Golub & Van Loan, Matrix Computations, sec. 10.1) builds an orthonormal basis Q_m of the Krylov
space of a start vector, H Q_m = Q_m T_m + beta_m q_{m+1} e_m^T, with T_m tridiagonal. Every new vector is
reorthogonalised against all previous ones twice (classical Gram-Schmidt, "twice is enough"), so no spurious
copies of converged eigenvalues appear. `eigen` reads Ritz pairs off T_m; `density` reads quadrature nodes and
weights off it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .operator import Operator, probes


@dataclass
class Tridiagonal:
    """The output of `lanczos` for b start vectors: T's diagonals (b, m) and the bases Q (b, m, size)."""

    alpha: torch.Tensor
    beta: torch.Tensor
    basis: torch.Tensor

    def matrix(self) -> torch.Tensor:
        """The (b, m, m) tridiagonal matrices T_m (float64, CPU); beta's last column couples to step m+1."""
        b = self.beta[:, :-1]
        return torch.diag_embed(self.alpha) + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)


def _orthogonalise(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Remove from each row of w (b, n) its components along the rows of basis (b, j, n), twice."""
    for _ in range(2):
        w = w - torch.einsum("bj,bjn->bn", torch.einsum("bjn,bn->bj", basis, w), basis)
    return w


def lanczos(op: Operator, start: torch.Tensor, steps: int, generator: torch.Generator,
            stop: Callable[[Tridiagonal, int], bool] | None = None) -> Tridiagonal:
    """`steps` Lanczos steps with full reorthogonalisation from each row of `start` (b, size), run in lockstep.

    One batched product per step serves all b runs. On breakdown (an invariant subspace is found) a run goes
    on with a random vector orthogonal to its basis and a zero coupling, so T stays exact. `stop(T, j)` is
    asked after step j (0-based) and may end the iteration early; the result is truncated to the steps done.
    """
    runs, steps = start.shape[0], min(steps, op.size)
    basis = torch.zeros(runs, min(steps, 32), op.size, dtype=op.dtype, device=op.device)  # grows by doubling
    alpha = torch.zeros(runs, steps, dtype=torch.float64)
    beta = torch.zeros(runs, steps, dtype=torch.float64)
    basis[:, 0] = start / start.norm(dim=1, keepdim=True)
    tiny = 100 * torch.finfo(op.dtype).eps
    j = 0
    while True:
        w = op.matmat(basis[:, j])
        alpha[:, j] = torch.einsum("bn,bn->b", basis[:, j], w).double().cpu()
        w = _orthogonalise(w, basis[:, :j + 1])
        beta[:, j] = w.norm(dim=1).double().cpu()
        done = Tridiagonal(alpha[:, :j + 1], beta[:, :j + 1], basis[:, :j + 1])
        if (stop is not None and stop(done, j)) or j + 1 == steps:
            return done
        scale = torch.maximum(alpha[:, :j + 1].abs().amax(1), beta[:, :j + 1].amax(1))
        for r in torch.nonzero(beta[:, j] <= tiny * scale).flatten().tolist():
            w[r] = _orthogonalise(probes(op, 1, generator, "normal"), basis[r:r + 1, :j + 1])[0]
            beta[r, j] = 0.0
        if j + 1 == basis.shape[1]:
            basis = torch.cat([basis, torch.zeros_like(basis[:, :min(basis.shape[1], steps - j - 1)])], dim=1)
        basis[:, j + 1] = w / w.norm(dim=1, keepdim=True)
        j += 1
