"""The uncertainty of the study's numbers: a cell's replicates as mean ± standard deviation (or,
with one replicate, the measurement's own standard error), trends against the batch size by least
squares, and differences by t-tests, each with a 95% confidence interval of its effect and, over all
the tests of a report, p-values adjusted by Holm's step-down method (S. Holm, "A simple sequentially
rejective multiple test procedure", Scandinavian Journal of Statistics, 1979). Pure functions on
numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# An en dash marks a cell that was not measured, as in the seed study's tables.
MISSING = "–"  # noqa: RUF001
ALPHA = (
    0.05  # a difference "exceeds its uncertainty" when its Holm-adjusted two-sided p is below this
)
MIN_N = 6  # fewer values give a test under 4 degrees of freedom: no verdict is drawn from it
LEVEL = 0.95  # the confidence level of an effect's interval
# differences this small between matched values (relative, or absolute below 1) are rounding
ROUNDING = 1e-6


@dataclass(frozen=True)
class Estimate:
    """The replicates of one number; `own_se` is the measurement's own standard error when there is
    one replicate (the Hutchinson probes' for a trace, the binomial one for a test accuracy).
    """

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
        """What ± shows: the standard deviation over replicates, else the measurement's own standard
        error.
        """
        return self.sd if self.n > 1 else self.own_se


def estimate(values: Sequence[float | None], own_se: float | None = None) -> Estimate | None:
    """The finite values of a cell as an Estimate (None when there are none); `own_se` is kept for n
    = 1.
    """
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not kept:
        return None
    return Estimate(
        kept, own_se if len(kept) == 1 and own_se is not None and math.isfinite(own_se) else None
    )


def fmt(e: Estimate | None, digits: int = 2, expected_n: int | None = None) -> str:
    """`mean ± spread` (or `mean`), with `(n=k)` when fewer replicates than `expected_n` were
    measured.
    """
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
    """An effect (a difference, or a slope per doubling of the batch size), its standard error, the
    two-sided p-value of "no effect", the number of values behind it, the degrees of freedom of its
    t distribution and, once a report's tests are adjusted together (`holm`), the adjusted
    p-value.
    """

    effect: float
    se: float
    p: float
    n: int
    df: float = math.inf
    p_adjusted: float | None = None

    @property
    def exact(self) -> bool:
        """Measured without spread: no test, the effect is there or not."""
        return self.se == 0

    @property
    def testable(self) -> bool:
        """Enough values for a verdict (MIN_N)."""
        return self.n >= MIN_N

    @property
    def significant(self) -> bool:
        """The effect exceeds its uncertainty: enough values and a (Holm-adjusted, when adjusted) p
        below ALPHA.
        """
        p = self.p if self.p_adjusted is None else self.p_adjusted
        return self.testable and p < ALPHA

    def interval(self) -> tuple[float, float]:
        """The LEVEL confidence interval of the effect (Student's t with `df` degrees of
        freedom).
        """
        if self.exact:
            return self.effect, self.effect
        from scipy import stats

        half = float(stats.t.ppf(0.5 + LEVEL / 2, self.df)) * self.se
        return self.effect - half, self.effect + half

    def text(self, unit: str = "", digits: int = 3) -> str:
        """`+0.12 per doubling, 95% CI [+0.05, +0.19] (p = 0.004, Holm-adjusted p = 0.031, n =
        12)`.
        """
        lo, hi = self.interval()
        ps = [_p("p", self.p)] + (
            [_p("Holm-adjusted p", self.p_adjusted)] if self.p_adjusted is not None else []
        )
        return (
            f"{self.effect:+.{digits}g}{unit}, {LEVEL:.0%} CI [{lo:+.{digits}g}, {hi:+.{digits}g}] "
            f"({', '.join(ps)}, n = {self.n})"
        )


def _p(name: str, p: float) -> str:
    return f"{name} < 0.001" if p < 1e-3 else f"{name} = {p:.3f}"


def holm(tests: Sequence[Test | None]) -> list[Test | None]:
    """The tests with Holm-adjusted p-values, over the family of all given tests that have a spread
    (None and exact effects pass through unchanged): the i-th smallest of m p-values becomes the
    largest of min(1, (m - j + 1) p_(j)) over j <= i, which keeps the chance of any false "exceeds"
    at ALPHA or below.
    """
    from dataclasses import replace

    family = sorted((t.p, i) for i, t in enumerate(tests) if t is not None and not t.exact)
    out = list(tests)
    running = 0.0
    for rank, (p, i) in enumerate(family):
        running = max(running, min(1.0, (len(family) - rank) * p))
        out[i] = replace(tests[i], p_adjusted=running)
    return out


def trend(batch_sizes: Sequence[int], values: Sequence[float]) -> Test | None:
    """Least-squares slope of `values` against log2 of the batch size (the change per doubling of
    the batch), with its standard error and the p-value of a zero slope; None without three values
    at two batch sizes. Values on an exact line have no standard error: p is 1 for a zero slope and
    0 otherwise.
    """
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
    if (
        fit.stderr == 0
    ):  # the values lie exactly on a line (all equal, say): no noise to weigh the slope against
        return _exact(float(fit.slope), len(y))
    return Test(float(fit.slope), float(fit.stderr), float(fit.pvalue), len(y), len(y) - 2)


def _exact(effect: float, n: int) -> Test:
    """An effect measured without spread: certainly there unless it is zero."""
    return Test(effect, 0.0, 1.0 if effect == 0 else 0.0, n)


def paired(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Mean of the differences a - b of matched values, its standard error and a paired t-test; None
    with fewer than two pairs. Differences within float rounding (ROUNDING, relative to the values
    or absolute below 1) count as zero.
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    d[np.abs(d) <= ROUNDING * np.maximum(1.0, np.maximum(np.abs(x), np.abs(y)))] = (
        0.0  # rounding, not a difference
    )
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return None
    if np.std(d, ddof=1) == 0:
        return _exact(float(d.mean()), len(d))
    from scipy import stats

    result = stats.ttest_1samp(d, 0.0)
    return Test(
        float(d.mean()),
        float(np.std(d, ddof=1) / math.sqrt(len(d))),
        float(result.pvalue),
        len(d),
        len(d) - 1,
    )


def unpaired(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Difference of the means of two groups with Welch's t-test (Welch-Satterthwaite degrees of
    freedom); None unless each group has two values.
    """
    x, y = (np.asarray(v, dtype=float) for v in (a, b))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) < 2 or len(y) < 2:
        return None
    from scipy import stats

    vx, vy = np.var(x, ddof=1) / len(x), np.var(y, ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        return _exact(float(x.mean() - y.mean()), len(x) + len(y))
    result = stats.ttest_ind(x, y, equal_var=False)
    df = (vx + vy) ** 2 / (vx**2 / (len(x) - 1) + vy**2 / (len(y) - 1))  # Welch-Satterthwaite
    return Test(float(x.mean() - y.mean()), se, float(result.pvalue), len(x) + len(y), float(df))
