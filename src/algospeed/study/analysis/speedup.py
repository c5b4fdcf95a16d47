"""Speedup at matched quality between a baseline and an arm: the ratio of geometric-mean costs over seeds, with a
Welch t-interval on log cost, and how many seeds a study needs to resolve a given speedup.

Why this statistic: training costs are positive and their seed noise is multiplicative, so on log cost a speedup is
a shift and Welch's t (unequal spreads, Welch-Satterthwaite degrees of freedom) holds its coverage at 3 seeds per
arm, where a percentile bootstrap does not (with 3 seeds it covers about 80% at a nominal 95%: a resample of 3 points
underestimates the spread and has only 10 distinct values). A permutation test is exact under exchangeability but
cannot reach p < 0.1 at 3 vs 3 seeds (20 splits). `tests/test_speedup_calibration.py` holds the calibration.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from algospeed.errors import UsageError
from algospeed.study.analysis.cost import by_seed, cost_to_quality, judging, seed_budget_cost
from algospeed.study.records import ReferenceCost, RunRecord

MIN_INTERVAL_SEEDS = 3
"""Seeds per side below which no interval is given: with 2, each side's spread rests on one degree of freedom, so an
interval is either uselessly wide or narrow by luck."""

NO_SPREAD = 1e-9
"""A standard error of log cost at or below this is no spread: equal costs, up to the rounding of their mean log."""


@dataclass(frozen=True)
class Speedup:
    """`cost_baseline(quality) / cost_arm(quality)` as the ratio of geometric-mean seed costs, and its interval.

    `low`/`high` bound the same ratio at confidence `level` (Welch t on log cost, see `speedup`); `p_value` is the
    two-sided Welch p against "equal geometric means", `p_faster` the one-sided p against "the arm is no cheaper"
    (small when the arm is cheaper). They are
    None where no interval is given, and `interval_note` then says why; where an interval is given, the note is None
    unless censored seeds bias it (see `censoring_bias`). `method` names the statistic, for the report.
    `sd_log` is the pooled sample sd of log seed cost of both sides (None below 3 seeds in all or with a zero cost):
    the noise that `seeds_to_resolve` reads. `reached_*` counts the seeds (out of `n_*`) that reached `quality`;
    the estimate is None when fewer than half of either side's seeds reached it.
    """

    quality: float
    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    p_faster: float | None
    level: float
    method: str
    interval_note: str | None
    sd_log: float | None
    n_baseline: int
    n_arm: int
    reached_baseline: int
    reached_arm: int

    @property
    def censored(self) -> bool:
        """Whether some seed on either side never reached the quality (its budget cost stood in for it)."""
        return self.reached_baseline < self.n_baseline or self.reached_arm < self.n_arm

    @property
    def censoring_bias(self) -> str | None:
        """Which way censored seeds push the estimate and the interval: a stand-in cost is below the seed's true
        cost, so censored baseline seeds push the speedup "low" (the true one is likely higher), censored arm seeds
        push it "high"; "unknown" when both sides have some; None when no seed is censored."""
        return _censoring_bias(self.reached_baseline < self.n_baseline, self.reached_arm < self.n_arm)

    def significant(self, alpha: float = 0.05, one_sided: bool = False) -> bool:
        """Whether the arm differs from the baseline at level `alpha` (two-sided: the `1 - alpha` interval excludes
        1), or with `one_sided` whether the arm is cheaper at that level. False where no p-value is given."""
        if not 0 < alpha < 1:
            raise UsageError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
        p = self.p_faster if one_sided else self.p_value
        return p is not None and p < alpha


@dataclass(frozen=True)
class WelchLog:
    """Welch's two-sample t on log costs, baseline against arm, along the last axis of the cost arrays.

    `log_ratio` is the difference of mean log costs (the log of the ratio of geometric means); `low`/`high` bound the
    ratio itself, `exp(log_ratio -/+ t_{df, (1 + level) / 2} * se)`; `p_value` is two-sided, `p_faster` one-sided
    (alternative: the arm's geometric-mean cost is lower). Entries are NaN where the test is undefined: a cost that is
    not positive, or no spread on either side (se at most `NO_SPREAD`).
    """

    log_ratio: np.ndarray
    se: np.ndarray
    df: np.ndarray
    low: np.ndarray
    high: np.ndarray
    p_value: np.ndarray
    p_faster: np.ndarray


def welch_log(baseline_costs: ArrayLike, arm_costs: ArrayLike, level: float = 0.95) -> WelchLog:
    """Welch's t on log cost for each row of seed costs (the last axis is the seeds; the other axes broadcast)."""
    if not 0 < level < 1:
        raise UsageError(f"level must lie strictly between 0 and 1, got {level!r}")
    base, arm = np.asarray(baseline_costs, dtype=float), np.asarray(arm_costs, dtype=float)
    n_base, n_arm = base.shape[-1], arm.shape[-1]
    if min(n_base, n_arm) < 2:
        raise UsageError(f"Welch's t needs at least 2 seeds per side, got {n_base} and {n_arm}")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_base, log_arm = np.log(base), np.log(arm)
        log_ratio = log_base.mean(axis=-1) - log_arm.mean(axis=-1)
        var_base = log_base.var(axis=-1, ddof=1) / n_base
        var_arm = log_arm.var(axis=-1, ddof=1) / n_arm
        se = np.sqrt(var_base + var_arm)
        df = (var_base + var_arm) ** 2 / (var_base**2 / (n_base - 1) + var_arm**2 / (n_arm - 1))
        defined = np.isfinite(log_ratio) & np.isfinite(se) & (se > NO_SPREAD)
        log_ratio, se, df = (np.where(defined, value, np.nan) for value in (log_ratio, se, df))
        half = stats.t.ppf((1 + level) / 2, df) * se
        t = log_ratio / se
    return WelchLog(
        log_ratio=log_ratio,
        se=se,
        df=df,
        low=np.exp(log_ratio - half),
        high=np.exp(log_ratio + half),
        p_value=2 * stats.t.sf(np.abs(t), df),
        p_faster=stats.t.sf(t, df),
    )


def seeds_to_resolve(sd_log: float, ratio: float = 1.2, level: float = 0.95, power: float = 0.8) -> int:
    """Seeds per arm for the `level` interval to exclude 1, with probability `power`, when the true speedup is `ratio`
    and the sd of log seed cost is `sd_log` on both sides (at least `MIN_INTERVAL_SEEDS`).

    A t approximation: the two-sided t-test of equal spreads and n seeds a side (df 2n - 2, noncentral t of
    noncentrality log(ratio) / (sd_log * sqrt(2 / n))), searched upward from the normal-approximation answer
    2 * ((z_{(1 + level) / 2} + z_power) * sd_log / log(ratio))^2. Welch's df is at most 2n - 2, so the figure is
    slightly optimistic; `power=0.5` asks only that the expected interval exclude 1.
    """
    if not (math.isfinite(sd_log) and sd_log >= 0):
        raise UsageError(f"sd_log must be a finite non-negative number, got {sd_log!r}")
    if not (math.isfinite(ratio) and ratio > 0 and ratio != 1):
        raise UsageError(f"ratio must be a positive number other than 1, got {ratio!r}")
    for name, value in (("level", level), ("power", power)):
        if not 0 < value < 1:
            raise UsageError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    if sd_log == 0:
        return MIN_INTERVAL_SEEDS
    effect = abs(math.log(ratio)) / sd_log
    z = stats.norm.ppf((1 + level) / 2) + stats.norm.ppf(power)
    n = max(MIN_INTERVAL_SEEDS, math.ceil(2 * (z / effect) ** 2))

    def achieved(n: int) -> float:
        df, shift = 2 * n - 2, effect / math.sqrt(2 / n)
        critical = stats.t.ppf((1 + level) / 2, df)
        return float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))

    while achieved(n) < power:
        n += 1
    return n


def _seed_costs(
    records: Sequence[RunRecord], quality: float, currency: str, reference: ReferenceCost | None, side: str
) -> tuple[np.ndarray, int]:
    """Per seed, the cost to reach `quality` (its largest final cost where it never did), and how many reached it."""
    arms = {record.arm for record in records}
    if len(arms) != 1:
        raise UsageError(f"the {side} side of a speedup must hold the runs of one arm, got {sorted(arms) or 'none'}")
    costs, reached = [], 0
    for runs in by_seed(records).values():
        cost = cost_to_quality(runs, quality, currency, reference)
        if cost is None:
            cost = seed_budget_cost(runs, currency, reference)
        else:
            reached += 1
        costs.append(cost)
    return np.asarray(costs, dtype=float), reached


def _geometric_mean(costs: np.ndarray) -> float:
    """exp(mean log cost); 0 when any cost is 0."""
    with np.errstate(divide="ignore"):
        return float(np.exp(np.log(costs).mean()))


def _ratio(baseline: float, arm: float) -> float:
    """baseline / arm, with 0 / 0 read as 1 (both reached the quality at no cost) and x / 0 as infinity."""
    if arm == 0:
        return 1.0 if baseline == 0 else math.inf
    return baseline / arm


def _pooled_sd_log(base: np.ndarray, arm: np.ndarray) -> float | None:
    """The pooled sample sd of log cost over both sides (each around its own mean); None below 3 seeds in all or
    with a zero cost."""
    if len(base) + len(arm) < 3 or min(base.min(), arm.min()) <= 0:
        return None
    logs = [np.log(side) for side in (base, arm)]
    squares = sum(float(((side - side.mean()) ** 2).sum()) for side in logs)
    return math.sqrt(squares / (len(base) + len(arm) - 2))


def _censoring_bias(baseline_censored: bool, arm_censored: bool) -> str | None:
    """See `Speedup.censoring_bias`."""
    if baseline_censored and arm_censored:
        return "unknown"
    return "low" if baseline_censored else "high" if arm_censored else None


def _censoring_note(base_reached: int, n_base: int, arm_reached: int, n_arm: int) -> str | None:
    """What censored seeds do to the numbers, for the reader; None when no seed is censored."""
    bias = _censoring_bias(base_reached < n_base, arm_reached < n_arm)
    if bias is None:
        return None
    parts = [
        f"{n - reached} of {n} {side} seed(s)"
        for side, reached, n in (("baseline", base_reached, n_base), ("arm", arm_reached, n_arm))
        if reached < n
    ]
    effect = (
        "the direction of the bias is unknown"
        if bias == "unknown"
        else f"the speedup and its interval are biased {bias}"
    )
    return f"{' and '.join(parts)} never reached the quality and stand in at their budget cost: {effect}"


def speedup(
    baseline: Sequence[RunRecord],
    arm: Sequence[RunRecord],
    quality: float,
    currency: str,
    reference: ReferenceCost | None = None,
    level: float = 0.95,
) -> Speedup:
    """How many times less the arm spends than the baseline to reach `quality`.

    Each seed's cost is `cost_to_quality` over all its runs (every budget). The estimate is the geometric mean over
    the baseline's seeds divided by the geometric mean over the arm's seeds (not a ratio of arithmetic means: it is
    the statistic whose interval is calibrated, and it scales exactly when either side's costs do).

    The interval at `level` is Welch's t on log cost (`welch_log`), given only with at least `MIN_INTERVAL_SEEDS`
    seeds on each side, positive costs and some spread between seeds; otherwise `interval_note` says which is
    missing and only the estimate is given.

    Censoring rule: a seed that never reaches `quality` enters at its largest final cost (what it spent without
    getting there, a lower bound on its true cost) and is flagged through `reached_*` / `censored`; the interval
    treats the stand-in as an observed cost, so it inherits the stand-in's bias, which `censoring_bias` and
    `interval_note` state. When fewer than half of either side's seeds reached `quality`, the median seed never got
    there and no number is given: estimate, interval and p-values are None.
    """
    baseline, arm = list(baseline), list(arm)
    judging(baseline + arm)
    if not 0 < level < 1:
        raise UsageError(f"level must lie strictly between 0 and 1, got {level!r}")
    base_costs, base_reached = _seed_costs(baseline, quality, currency, reference, "baseline")
    arm_costs, arm_reached = _seed_costs(arm, quality, currency, reference, "arm")
    n_base, n_arm = len(base_costs), len(arm_costs)
    seeds = f"{n_base} vs {n_arm} seeds"
    fixed = dict(
        quality=float(quality),
        level=level,
        n_baseline=n_base,
        n_arm=n_arm,
        reached_baseline=base_reached,
        reached_arm=arm_reached,
    )
    no_interval = dict(low=None, high=None, p_value=None, p_faster=None)
    short = [
        side
        for side, reached, n in (("baseline", base_reached, n_base), ("arm", arm_reached, n_arm))
        if 2 * reached < n
    ]
    if short:
        return Speedup(
            estimate=None,
            method=f"ratio of geometric means, {seeds}: not given",
            interval_note=f"fewer than half of the {' and '.join(short)} seeds reached the quality",
            sd_log=None,
            **no_interval,
            **fixed,
        )
    estimate = _ratio(_geometric_mean(base_costs), _geometric_mean(arm_costs))
    sd_log = _pooled_sd_log(base_costs, arm_costs)
    if min(n_base, n_arm) < MIN_INTERVAL_SEEDS:
        note = f"needs at least {MIN_INTERVAL_SEEDS} seeds per arm"
    elif min(base_costs.min(), arm_costs.min()) <= 0:
        note = "a seed reached the quality at zero cost: log cost is undefined"
    else:
        test = welch_log(base_costs, arm_costs, level)
        if np.isfinite(test.low):
            return Speedup(
                estimate=estimate,
                low=float(test.low),
                high=float(test.high),
                p_value=float(test.p_value),
                p_faster=float(test.p_faster),
                method=f"Welch t-interval on log cost, {seeds}",
                interval_note=_censoring_note(base_reached, n_base, arm_reached, n_arm),
                sd_log=sd_log,
                **fixed,
            )
        note = "no spread between seeds on either side: an interval would have zero width"
    return Speedup(
        estimate=estimate,
        method=f"ratio of geometric means, {seeds}: no interval",
        interval_note=note,
        sd_log=sd_log,
        **no_interval,
        **fixed,
    )


def speedup_curve(
    baseline: Sequence[RunRecord],
    arm: Sequence[RunRecord],
    qualities: Sequence[float],
    currency: str,
    reference: ReferenceCost | None = None,
    level: float = 0.95,
) -> list[Speedup]:
    """`speedup` at each quality in `qualities`, in the given order."""
    return [speedup(baseline, arm, q, currency, reference, level) for q in qualities]
