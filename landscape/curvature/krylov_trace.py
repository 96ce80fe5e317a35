"""The trace of H from a Krylov basis: the part the basis captures exactly, the rest by Hutchinson.

Let Q (n x M, orthonormal columns) be the basis of a (block) Lanczos run and P = I - Q Q^T. Then

    tr(H) = tr(Q^T H Q) + tr(P H P),

since tr(Q Q^T H P) = tr(P Q Q^T H) = 0. With full reorthogonalisation the projected matrix T_M =
Q^T H Q is what Lanczos built, and its trace is exactly the sum of the traces of its diagonal blocks
A_j = V_j^T H V_j, each computed from products already made: the first term costs nothing. The
second is estimated by Hutchinson's estimator (Hutchinson 1989, "A stochastic estimator of the trace
of the influence matrix for Laplacian smoothing splines", Communications in Statistics - Simulation
and Computation) with Rademacher probes g drawn independently of Q: E[g^T P H P g | Q] = tr(P H P),
so each probe gives an unbiased estimate tr(T_M) + g^T P H P g of tr(H), their mean is the trace and
their sample standard deviation over sqrt(probes) its standard error.

This is Hutch++ (Meyer, Musco, Musco & Woodruff, "Hutch++: Optimal Stochastic Trace Estimation",
SOSA 2021) with the sketch Q replaced by a Krylov basis, as Chen & Hallman ("Krylov-aware stochastic
trace estimation", SIAM J. Matrix Anal. Appl. 2023) propose: a Krylov space of the same number of
products captures the top of the spectrum far better than a sketch H S, and its projected part is
known without the second pass over Q that Hutch++ pays for. The variance left is that of Hutchinson
on A = P H P, 2 (||A||_F^2 - sum_i A_ii^2) for Rademacher probes: small once the few large
eigenvalues of a trained network's Hessian are deflated.
"""

from __future__ import annotations

import numpy as np
import torch

from .lanczos import Krylov
from .operator import Operator
from .trace import MIN_PROBES, hutchinson


def projected_trace(krylov: Krylov) -> float:
    """tr(Q^T H Q) of the first run: the trace of its projected matrix T_M.

    Args:
        krylov: a `lanczos` result.

    Returns:
        The trace of the first run's T_M.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.lanczos import lanczos
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> g = torch.Generator().manual_seed(0)
        >>> krylov = lanczos(op, torch.tensor([[1.0, 0.0]]), 1, g)  # H = diag(4, 1), Q = e_1
        >>> projected_trace(krylov)
        4.0
    """
    return float(torch.diagonal(krylov.matrix()[0]).sum())


def krylov_aware_trace(
    op: Operator,
    krylov: Krylov,
    budget: int,
    generator: torch.Generator,
    target_rse: float | None = None,
    block: int = 8,
) -> np.ndarray:
    """Per-probe estimates tr(Q^T H Q) + g^T P H P g of tr(H) from the first run's basis Q.

    See the module docstring.

    Args:
        op: the operator whose Krylov space `krylov` is.
        krylov: a `lanczos` result; its first run's basis is deflated.
        budget: most probes (products) to spend.
        generator: the source of the Rademacher probes.
        target_rse: stop once at least `trace.MIN_PROBES` probes give a standard error at most
            this times |trace|; None spends the budget.
        block: probes per product.

    Returns:
        The per-probe estimates (their mean is the trace). When the basis spans the whole space the
        remainder is zero and every probe's estimate is tr(Q^T H Q): `trace.MIN_PROBES` copies of
        it, for no product.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from landscape.curvature.lanczos import lanczos
        >>> from landscape.curvature.operator import HessianOperator
        >>> x, y = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.zeros(2, 1)
        >>> op = HessianOperator(nn.Linear(2, 1, bias=False), [(x, y)], criterion=nn.MSELoss())
        >>> g = torch.Generator().manual_seed(0)
        >>> krylov = lanczos(op, torch.tensor([[1.0, 0.0]]), 1, g)  # H = diag(4, 1), Q = e_1
        >>> krylov_aware_trace(op, krylov, 3, g).tolist()  # 4 + g^T diag(0, 1) g, g_2^2 = 1
        [5.0, 5.0, 5.0]
    """
    basis = krylov.basis[0]
    if basis.shape[0] >= basis.shape[1]:  # the basis spans the space: P = 0, every probe is exact
        return np.full(MIN_PROBES, projected_trace(krylov))
    return hutchinson(
        op,
        budget,
        generator,
        target_rse,
        block,
        deflate=krylov.basis[0],
        offset=projected_trace(krylov),
    )
