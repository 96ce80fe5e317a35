"""The uncertainty of the study's numbers: estimates, trends and tests.

A cell's replicates as mean ± standard deviation (or, with one replicate, the measurement's own
standard error), trends against the batch size by least
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
    """The replicates of one number.

    Attributes:
        values: The replicates' values.
        own_se: The measurement's own standard error when there is one replicate (the Hutchinson
            probes' for a trace, the binomial one for a test accuracy).

    Examples:
        >>> e = Estimate((1.0, 2.0, 4.0))
        >>> e.n, round(e.mean, 4), round(e.sd, 4), e.spread == e.sd
        (3, 2.3333, 1.5275, True)
        >>> Estimate((0.9,), own_se=0.01).spread
        0.01
    """

    values: tuple[float, ...]
    own_se: float | None = None

    @property
    def n(self) -> int:
        """The number of replicates."""
        return len(self.values)

    @property
    def mean(self) -> float:
        """The mean over replicates."""
        return float(np.mean(self.values))

    @property
    def sd(self) -> float | None:
        """Standard deviation over replicates (n - 1 in the denominator); None for one replicate."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else None

    @property
    def spread(self) -> float | None:
        """What ± shows: the replicates' standard deviation, else the measurement's own error."""
        return self.sd if self.n > 1 else self.own_se


def estimate(values: Sequence[float | None], own_se: float | None = None) -> Estimate | None:
    """The finite values of a cell as an Estimate.

    Args:
        values: The replicates' values; None, NaN and infinities are dropped.
        own_se: The measurement's own standard error, kept when one value remains (and it is
            finite).

    Returns:
        The estimate, or None when no value is finite.

    Examples:
        >>> estimate([1.0, None, 3.0, float("nan")])
        Estimate(values=(1.0, 3.0), own_se=None)
        >>> estimate([0.9, None], own_se=0.01).spread, estimate([None])
        (0.01, None)
    """
    kept = tuple(float(v) for v in values if v is not None and math.isfinite(v))
    if not kept:
        return None
    return Estimate(
        kept, own_se if len(kept) == 1 and own_se is not None and math.isfinite(own_se) else None
    )


def fmt(e: Estimate | None, digits: int = 2, expected_n: int | None = None) -> str:
    """`mean ± spread` (or `mean`), with `(n=k)` when fewer replicates than expected were measured.

    Args:
        e: The estimate; None shows as the en dash of a missing cell.
        digits: Decimal places.
        expected_n: The number of replicates planned.

    Returns:
        The cell's text.

    Examples:
        >>> fmt(estimate([1.0, 3.0]), expected_n=3)
        '2.00 ± 1.41 (n=2)'
        >>> fmt(estimate([0.5]), digits=1), fmt(None) == MISSING
        ('0.5', True)
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
    """An effect (a difference, or a slope per doubling of the batch size) and its test.

    Attributes:
        effect: The effect.
        se: Its standard error (0: measured without spread, see `exact`).
        p: The two-sided p-value of "no effect".
        n: The number of values behind it.
        df: The degrees of freedom of its t distribution.
        p_adjusted: The Holm-adjusted p-value, once a report's tests are adjusted together
            (`holm`).

    Examples:
        >>> t = Test(effect=0.5, se=0.1, p=0.001, n=8, df=7)
        >>> t.testable, t.significant, [round(v, 3) for v in t.interval()]
        (True, True, [0.264, 0.736])
        >>> Test(effect=0.5, se=0.1, p=0.001, n=4, df=3).significant  # too few values
        False
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
        """The effect exceeds its uncertainty: enough values and a (Holm-adjusted) p below ALPHA."""
        p = self.p if self.p_adjusted is None else self.p_adjusted
        return self.testable and p < ALPHA

    def interval(self) -> tuple[float, float]:
        """The LEVEL confidence interval of the effect (Student's t with `df` degrees of freedom).

        Returns:
            The interval's ends; the effect twice when it is exact.
        """
        if self.exact:
            return self.effect, self.effect
        from scipy import stats

        half = float(stats.t.ppf(0.5 + LEVEL / 2, self.df)) * self.se
        return self.effect - half, self.effect + half

    def text(self, unit: str = "", digits: int = 3) -> str:
        """The test as text: effect, confidence interval, p-values and n.

        For example `+0.12 per doubling, 95% CI [+0.05, +0.19] (p = 0.004, Holm-adjusted p = 0.031,
        n = 12)`.

        Args:
            unit: Text after the effect (" per doubling").
            digits: Significant digits of the effect and the interval.

        Returns:
            The text.
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
    """A p-value as text.

    Returns:
        `name = 0.123`, or `name < 0.001`.
    """
    return f"{name} < 0.001" if p < 1e-3 else f"{name} = {p:.3f}"


def holm(tests: Sequence[Test | None]) -> list[Test | None]:
    """The tests with Holm-adjusted p-values, over the family of all given tests that have a spread.

    The i-th smallest of m p-values becomes the largest of min(1, (m - j + 1) p_(j)) over j <= i,
    which keeps the chance of any false "exceeds" at ALPHA or below (S. Holm, "A simple
    sequentially rejective multiple test procedure", Scandinavian Journal of Statistics, 1979).

    Args:
        tests: The tests of a report; None and exact effects pass through unchanged.

    Returns:
        The tests in the same order, those of the family with `p_adjusted` set.

    Examples:
        >>> tests = [Test(1.0, 0.1, p, 8, 7) for p in (0.01, 0.04, 0.03)] + [None]
        >>> # 3 x 0.01, then 2 x 0.03, then the larger of 1 x 0.04 and 0.06
        >>> [t.p_adjusted if t else None for t in holm(tests)]
        [0.03, 0.06, 0.06, None]
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
    """Least-squares slope of `values` against log2 of the batch size: the change per doubling.

    The test is the standard error of the slope and the p-value of a zero slope (t with n - 2
    degrees of freedom). Values on an exact line have no standard error: p is 1 for a zero slope
    and 0 otherwise.

    Args:
        batch_sizes: The batch size of each value.
        values: The values (NaN: missing, left out).

    Returns:
        The slope's test, or None without three values at two batch sizes.

    Examples:
        >>> t = trend([32, 64, 128], [1.0, 2.0, 3.5])  # slope (1.1667 + 1.3333) / 2
        >>> round(t.effect, 4), t.n, t.df
        (1.25, 3, 1)
        >>> exact = trend([32, 64, 128], [1.0, 2.0, 3.0])
        >>> round(exact.effect, 6), exact.se, exact.p
        (1.0, 0.0, 0.0)
        >>> trend([32, 32, 32], [1.0, 2.0, 3.0]) is None
        True
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
    """An effect measured without spread: certainly there unless it is zero.

    Returns:
        The test with standard error 0 and p 1 (a zero effect) or 0.
    """
    return Test(effect, 0.0, 1.0 if effect == 0 else 0.0, n)


def paired(a: Sequence[float], b: Sequence[float]) -> Test | None:
    """Mean of the differences a - b of matched values, its standard error and a paired t-test.

    Differences within float rounding (ROUNDING, relative to the values or absolute below 1) count
    as zero; pairs with a missing value are left out.

    Args:
        a: The first values.
        b: The values matched with them.

    Returns:
        The test (t with n - 1 degrees of freedom), or None with fewer than two pairs.

    Examples:
        >>> t = paired([1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.0, 3.5])  # differences .5, .5, 1, .5
        >>> t.effect, t.se, t.n, t.df  # sd of the differences 0.25, over sqrt(4)
        (0.625, 0.125, 4, 3)
        >>> paired([1.0, 2.0], [1.0, 2.0 + 1e-9]).exact  # rounding is no difference
        True
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
    """Difference of the means of two groups with Welch's t-test.

    The standard error is sqrt(s_a^2 / n_a + s_b^2 / n_b) and the degrees of freedom those of
    Welch and Satterthwaite (B. L. Welch, "The generalization of 'Student's' problem when several
    different population variances are involved", Biometrika, 1947).

    Args:
        a: The first group's values (NaN: missing, left out).
        b: The second group's values.

    Returns:
        The test of mean(a) - mean(b), or None unless each group has two values.

    Examples:
        >>> t = unpaired([1.0, 2.0, 3.0], [4.0, 6.0])  # variances of the means 1/3 and 1
        >>> t.effect, round(t.se, 4), round(t.df, 3), t.n
        (-3.0, 1.1547, 1.684, 5)
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
