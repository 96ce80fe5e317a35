"""A-posteriori error bounds of Ritz values, which Ritz values are wanted, and when a bound is
trusted.

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
    """min(r, r^2 / delta) for each Ritz value (theta ascending, one run), r where delta is unknown,
    and never below `resolution` (the arithmetic's: T_m's entries carry rounding errors of that
    size).
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
    """The Ritz values (ascending), residuals and error bounds of one Lanczos step (one run)."""

    theta: torch.Tensor
    residuals: torch.Tensor
    bounds: torch.Tensor
    resolution: float

    @classmethod
    def of(cls, theta: torch.Tensor, residuals: torch.Tensor, eps: float) -> Step:
        """The step with the bounds of `error_bounds`, at a resolution of RESOLUTION * eps * max
        |theta| for products computed with machine epsilon `eps`.
        """
        resolution = RESOLUTION * eps * float(theta.abs().max())
        return cls(theta, residuals, error_bounds(theta, residuals, resolution), resolution)

    def first_order(self) -> torch.Tensor:
        """The residual bounds (at the step's resolution), which need no gap."""
        return self.residuals.clamp_min(self.resolution)

    def wanted(self, k: int, which: str) -> torch.Tensor:
        """Indices of the k wanted Ritz values, best first (largest algebraic or largest
        magnitude).
        """
        return torch.argsort(WHICH_KEYS[which](self.theta), descending=True, stable=True)[:k]

    def positions(self, indices: torch.Tensor, which: str) -> list[tuple[bool, int]]:
        """(from the top, offset from that end) of each index, so that the same position names the
        approximation of the same eigenvalue at every step: largest algebraic ones count from the
        top; of the largest magnitude ones, the positive count from the top and the negative from
        the bottom.
        """
        m = len(self.theta)
        return [
            (True, m - 1 - i) if which == "algebraic" or self.theta[i] >= 0 else (False, i)
            for i in indices.tolist()
        ]

    def at(self, top: bool, offset: int) -> int | None:
        """The index at `offset` from one end, None when the step has no Ritz value there."""
        m = len(self.theta)
        if offset >= m:
            return None
        return m - 1 - offset if top else offset


def meets(step: Step, indices: torch.Tensor, tol: float, strict: bool = False) -> bool:
    """Whether every wanted bound (residual with `strict`) is at most tol * |theta|."""
    bound = step.first_order() if strict else step.bounds
    return bool((bound[indices] <= tol * step.theta[indices].abs()).all())


def confirmed(previous: Step, current: Step, indices: torch.Tensor, which: str, tol: float) -> bool:
    """Whether the bounds of the wanted Ritz values meet `tol` at two consecutive steps without the
    second refuting the first (see the module docstring).
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
