"""The uncertainty of the study's numbers: a cell's replicates as mean ± standard deviation (or, with one
replicate, the measurement's own standard error), trends against the batch size by least squares, and
differences by t-tests. Pure functions on numbers."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MISSING = "–"   # noqa: RUF001 -- an en dash marks a cell that was not measured, as in the seed study's tables
ALPHA = 0.05    # a difference "exceeds its uncertainty" when a two-sided test gives p below this
ROUNDING = 1e-6  # differences this small between matched values (relative, or absolute below 1) are rounding


@dataclass(frozen=True)
class Estimate:
    """The replicates of one number; `own_se` is the measurement's own standard error when there is one
    replicate (the Hutchinson probes' for a trace, the binomial one for a test accuracy)."""

    values: tuple[float, ...]
    own_se: float | None = None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float | None:
        """Standard deviation over replicates (n - 1 in the denominator); None for one replicate."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def spread(self) -> float | None:
        """What ± shows: the standard deviation over replicates, else the measurement's own standard error."""
        return self.sd if self.n > 1 else self.own_se


def estimate(values: Sequence[float | None], own_se: float | None = None) -> Estimate | None:
    """The finite values of a cell as an Estimate (None when there are none); `own_se` is kept for n = 1."""
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not kept:
        return None
    return Estimate(kept, own_se if len(kept) == 1 and own_se is not None and math.isfinite(own_se) else None)


def fmt(e: Estimate | None, digits: int = 2, expected_n: int | None = None) -> str:
    """`mean ± spread` (or `mean`), with `(n=k)` when fewer replicates than `expected_n` were measured."""
    if e is None:
        return MISSING
    text = f"{e.mean:.{digits}f}"
    if e.spread is not None:
        text += f" ± {e.spread:.{digits}f}"
    if expected_n is not None and e.n < expected_n:
        text += f" (n={e.n})"
    return text


@dataclass(frozen=True)
class Test:
    """An effect (a difference, or a slope per doubling of the batch size), its standard error, the two-sided
    p-value of "no effect", and the number of values behind it."""

    effect: float
    se: float
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return self.p < ALPHA

    def text(self, digits: int = 3) -> str:
        p = "p < 0.001" if self.p < 1e-3 else f"p = {self.p:.3f}"
        return f"{self.effect:+.{digits}g} ± {self.se:.2g} ({p}, n = {self.n})"


def trend(batch_sizes: Sequence[int], values: Sequence[float]) -> Test | None:
    """Least-squares slope of `values` against log2 of the batch size (the change per doubling of the batch),
    with its standard error and the p-value of a zero slope; None without three values at two batch sizes.
    Values on an exact line have no standard error: p is 1 for a zero slope and 0 otherwise."""
    from scipy import stats

    x = np.log2(np.asarray(batch_sizes, dtype=float))
    y = np.asarray(values, dtype=float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(y) < 3 or len(set(x.tolist())) < 2:
        return None
    if np.ptp(y) == 0:
        return _exact(0.0, len(y))
    fit = stats.linregress(x, y)
    if not math.isfinite(fit.stderr):
        return None
    if fit.stderr == 0:   # the values lie exactly on a line (all equal, say): no noise to weigh the slope against
        return _exact(float(fit.slope), len(y))
    return Test(float(fit.slope), float(fit.stderr), float(fit.pvalue), len(y))


def _exact(effect: float, n: int) -> Test:
    """An effect measured without spread: certainly there unless it is zero."""
    return Test(effect, 0.0, 1.0 if effect == 0 else 0.0, n)


def paired(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Mean of the differences a - b of matched values, its standard error and a paired t-test; None with
    fewer than two pairs. Differences within float rounding (ROUNDING, relative to the values or absolute
    below 1) count as zero."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    d[np.abs(d) <= ROUNDING * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))] = 0.0   # rounding, not a difference
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None
    if np.std(d, ddof=1) == 0:
        return _exact(float(d.mean()), len(d))
    from scipy import stats

    result = stats.ttest_1samp(d, 0.0)
    return Test(float(d.mean()), float(np.std(d, ddof=1) / math.sqrt(len(d))), float(result.pvalue), len(d))


def unpaired(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Difference of the means of two groups with Welch's t-test; None unless each group has two values."""
    x, y = (np.asarray(v, dtype=float) for v in (a, b))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return None
    from scipy import stats

    se = math.sqrt(np.var(x, ddof=1) / len(x) + np.var(y, ddof=1) / len(y))
    if se == 0:
        return _exact(float(x.mean() - y.mean()), len(x) + len(y))
    result = stats.ttest_ind(x, y, equal_var=False)
    return Test(float(x.mean() - y.mean()), se, float(result.pvalue), len(x) + len(y))
