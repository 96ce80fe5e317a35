"""A-posteriori error bounds of Ritz values, the wanted Ritz values, and when a bound is trusted.

For a Ritz pair (theta, y) of the symmetric H (||y|| = 1) with residual r = ||H y - theta y||:

- some eigenvalue lies within r of theta (Parlett, The Symmetric Eigenvalue Problem, Thm 4.5.1);
- if lambda is the only eigenvalue of H in an interval (alpha, beta) around theta, then
  theta - r^2 / (beta - theta) <= lambda <= theta + r^2 / (theta - alpha) (Kato-Temple; Parlett ch.
  10-11, Saad, Numerical Methods for Large Eigenvalue Problems, Thm 3.8), so |lambda - theta| <= r^2
  / delta with delta = min(theta - alpha, beta - theta).

The interval is estimated from the neighbouring Ritz values: alpha is the Ritz value below plus its
residual (the highest an eigenvalue found there may be), beta the one above minus its residual;
beyond the extreme Ritz values it is unbounded; the resulting delta is halved (GAP_SAFETY). The
bound of a Ritz value is min(r, r^2 / delta), or r when delta is not positive or the Krylov space
has a single vector.

Any such bound assumes that the Krylov space has found every eigenvalue near theta, which no
a-posteriori test can check: an outlier not yet seen after a few steps, one whose component in the
start vector happens to be tiny, or a cluster of eigenvalues narrower than the residual stays hidden
(the residual bound is then wrong too). `confirmed` guards against the first: a stop needs two
consecutive steps whose bounds meet the tolerance, and the second must not refute the first (Ritz
values only move outwards, towards their eigenvalues, as the space grows, so a move larger than a
bound refutes it, and a neighbour rising above the limit used for delta refutes that delta). Block
Lanczos with b start vectors resolves clusters of up to b eigenvalues and makes a tiny component in
every start vector unlikely.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# the estimated gap is divided by this: a margin for eigenvalues the space has not resolved yet
GAP_SAFETY = 2
RESOLUTION = 16  # Ritz values are resolved to this many machine epsilons of the largest one
WHICH_KEYS = {"algebraic": lambda theta: theta, "magnitude": lambda theta: theta.abs()}


def error_bounds(
    theta: torch.Tensor, residuals: torch.Tensor, resolution: float = 0.0
) -> torch.Tensor:
    """The error bound min(r, r^2 / delta) of each Ritz value of one run (module docstring).

    The bound is r where delta is unknown, and never below `resolution`.

    Args:
        theta: the Ritz values, ascending (M,).
        residuals: their residual norms r (M,).
        resolution: the arithmetic's resolution: T_m's entries carry rounding errors of that size.

    Returns:
        The bounds (M,).

    Examples:
        >>> import torch
        >>> theta = torch.tensor([1.0, 4.0], dtype=torch.float64)
        >>> r = torch.tensor([0.1, 0.01], dtype=torch.float64)
        >>> b = error_bounds(theta, r)  # top: delta = (4 - (1 + 0.1)) / 2, bound r^2 / delta
        >>> bool(torch.isclose(b[1], torch.tensor(0.01**2 / 1.45, dtype=torch.float64)))
        True
    """
    inf = torch.full((1,), torch.inf, dtype=theta.dtype)
    above = torch.cat([(theta[1:] - residuals[1:]) - theta[:-1], inf])
    below = torch.cat([inf, theta[1:] - (theta[:-1] + residuals[:-1])])
    delta = torch.minimum(above, below) / GAP_SAFETY
    second = torch.where(
        delta > 0, residuals**2 / delta.clamp_min(torch.finfo(theta.dtype).tiny), torch.inf
    )
    bounds = residuals.clone() if len(theta) == 1 else torch.minimum(residuals, second)
    return bounds.clamp_min(resolution)


@dataclass
class Step:
    """The Ritz values (ascending), residuals and error bounds of one Lanczos step (one run).

    Attributes:
        theta: the Ritz values, ascending.
        residuals: their residual norms.
        bounds: their error bounds (`error_bounds`).
        resolution: the smallest bound the arithmetic allows.

    Examples:
        >>> import torch
        >>> theta = torch.tensor([1.0, 4.0], dtype=torch.float64)
        >>> step = Step.of(theta, torch.tensor([0.1, 0.01], dtype=torch.float64), 2**-52)
        >>> step.wanted(1, "algebraic").tolist(), step.first_order().tolist()
        ([1], [0.1, 0.01])
    """

    theta: torch.Tensor
    residuals: torch.Tensor
    bounds: torch.Tensor
    resolution: float

    @classmethod
    def of(cls, theta: torch.Tensor, residuals: torch.Tensor, eps: float) -> Step:
        """The step with the bounds of `error_bounds` at a resolution of RESOLUTION eps max |theta|.

        Args:
            theta: the Ritz values, ascending.
            residuals: their residual norms.
            eps: the machine epsilon of the products.

        Returns:
            The step.
        """
        resolution = RESOLUTION * eps * float(theta.abs().max())
        return cls(theta, residuals, error_bounds(theta, residuals, resolution), resolution)

    def first_order(self) -> torch.Tensor:
        """The residual bounds (at the step's resolution), which need no gap.

        Returns:
            The residuals, at least the resolution.
        """
        return self.residuals.clamp_min(self.resolution)

    def wanted(self, k: int, which: str) -> torch.Tensor:
        """Indices of the k wanted Ritz values, best first.

        Args:
            k: how many.
            which: "algebraic" (largest algebraic) or "magnitude" (largest magnitude).

        Returns:
            The indices into `theta` (k,).
        """
        return torch.argsort(WHICH_KEYS[which](self.theta), descending=True, stable=True)[:k]

    def positions(self, indices: torch.Tensor, which: str) -> list[tuple[bool, int]]:
        """The position (from the top, offset from that end) of each index.

        The same position names the approximation of the same eigenvalue at every step: largest
        algebraic ones count from the top; of the largest magnitude ones, the positive count from
        the top and the negative from the bottom.

        Args:
            indices: indices into `theta`.
            which: "algebraic" or "magnitude".

        Returns:
            One (from the top, offset) pair per index.
        """
        m = len(self.theta)
        return [
            (True, m - 1 - i) if which == "algebraic" or self.theta[i] >= 0 else (False, i)
            for i in indices.tolist()
        ]

    def at(self, top: bool, offset: int) -> int | None:
        """The index at `offset` from one end.

        Args:
            top: count from the top (True) or from the bottom.
            offset: Ritz values skipped from that end.

        Returns:
            The index into `theta`, None when the step has no Ritz value there.
        """
        m = len(self.theta)
        if offset >= m:
            return None
        return m - 1 - offset if top else offset


def meets(step: Step, indices: torch.Tensor, tol: float, strict: bool = False) -> bool:
    """Whether every wanted bound (residual with `strict`) is at most tol * |theta|.

    Args:
        step: the Lanczos step.
        indices: the wanted Ritz values' indices.
        tol: the relative tolerance.
        strict: compare the residuals instead of the bounds.

    Returns:
        Whether all meet it.

    Examples:
        >>> import torch
        >>> theta = torch.tensor([1.0, 4.0], dtype=torch.float64)
        >>> step = Step.of(theta, torch.tensor([0.1, 0.01], dtype=torch.float64), 2**-52)
        >>> meets(step, torch.tensor([1]), 1e-3), meets(step, torch.tensor([1]), 1e-3, strict=True)
        (True, False)
    """
    bound = step.first_order() if strict else step.bounds
    return bool((bound[indices] <= tol * step.theta[indices].abs()).all())


def confirmed(previous: Step, current: Step, indices: torch.Tensor, which: str, tol: float) -> bool:
    """Whether the wanted Ritz values' bounds meet `tol` at two consecutive steps that agree.

    The second step must not refute the first (module docstring): no wanted Ritz value moves by
    more than its previous bound, and no neighbour rises above the limit its previous delta used.

    Args:
        previous: the step before.
        current: the step now.
        indices: the wanted Ritz values' indices in `current`.
        which: "algebraic" or "magnitude" (`Step.positions`).
        tol: the relative tolerance.

    Returns:
        Whether the stop is confirmed.

    Examples:
        >>> import torch
        >>> def step(top, r):
        ...     theta = torch.tensor([1.0, top], dtype=torch.float64)
        ...     return Step.of(theta, torch.tensor([0.1, r], dtype=torch.float64), 2**-52)
        >>> confirmed(step(3.99995, 0.02), step(4.0, 0.01), torch.tensor([1]), "algebraic", 1e-3)
        True
        >>> confirmed(step(3.9, 0.02), step(4.0, 0.01), torch.tensor([1]), "algebraic", 1e-3)
        False
    """
    if not meets(current, indices, tol):
        return False
    innermost: dict[bool, int] = {}
    for top, offset in current.positions(indices, which):
        i = previous.at(top, offset)
        if i is None or previous.bounds[i] > tol * previous.theta[i].abs():
            return False
        now = current.theta[current.at(top, offset)]
        if (now - previous.theta[i]).abs() > previous.bounds[i]:
            return False
        innermost[top] = max(innermost.get(top, -1), offset)
    for top, offset in innermost.items():
        i, j = previous.at(top, offset + 1), current.at(top, offset + 1)
        if i is None or j is None:
            continue
        limit = previous.theta[i] + (previous.residuals[i] if top else -previous.residuals[i])
        if (current.theta[j] > limit) if top else (current.theta[j] < limit):
            return False
    return True
