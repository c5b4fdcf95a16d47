"""Study analysis: costs, time-to-target with censoring, tradeoff curves, frontiers, speedups, AlgoPerf scoring."""

from __future__ import annotations

import dataclasses
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from algospeed.core.currency import Currency
from algospeed.core.result import CurvePoint, RunResult
from algospeed.core.status import StopReason
from algospeed.errors import UsageError
from algospeed.study.analysis import (
    algoperf_score,
    arm_summary,
    censored_median,
    cost_of,
    cost_to_quality,
    frontier_by_arm,
    pareto_frontier,
    performance_profile,
    seeds_to_resolve,
    speedup,
    speedup_curve,
    time_to_target,
    times_to_target,
    tradeoff_curve,
    tradeoff_curves,
    welch_log,
)
from algospeed.study.fairness import significance
from algospeed.study.records import ReferenceCost, RunRecord

REF = ReferenceCost(per_step=0.5, per_flop=2e-9)


def point(step: int, quality: float | None, metric: str = "acc", **overrides: float) -> CurvePoint:
    """A curve point whose every currency is a fixed multiple of `step` unless overridden."""
    values = dict(
        step=step,
        epoch=step / 100,
        samples=step * 32,
        tokens=step * 32 * 16,
        train_seconds=step * 0.1,
        flops=step * 1e9,
        energy_joules=step * 2.5,
        progress=0.0,
        train_loss=1.0,
        metrics={} if quality is None else {metric: quality},
    )
    values.update(overrides)
    return CurvePoint(**values)


def record(
    qualities: list[float | None],
    *,
    steps: list[int] | None = None,
    arm: str = "base",
    budget: str = "100ba",
    seed: int = 0,
    status: str = "completed",
    metric: str = "acc",
    higher_is_better: bool = True,
) -> RunRecord:
    steps = steps if steps is not None else [10 * (index + 1) for index in range(len(qualities))]
    points = tuple(point(step, quality, metric) for step, quality in zip(steps, qualities, strict=True))
    return RunRecord(arm, budget, seed, status, points, metric, higher_is_better)


def scaled(rec: RunRecord, factor: float) -> RunRecord:
    """The same run with every cost (steps, samples, tokens, seconds, FLOPs, joules) multiplied by `factor`."""
    points = tuple(
        dataclasses.replace(
            p,
            step=round(p.step * factor),
            samples=round(p.samples * factor),
            tokens=round(p.tokens * factor),
            train_seconds=p.train_seconds * factor,
            flops=p.flops * factor,
            energy_joules=None if p.energy_joules is None else p.energy_joules * factor,
        )
        for p in rec.points
    )
    return dataclasses.replace(rec, points=points)


# --- cost currencies -------------------------------------------------------------------------------------------


def test_cost_of_reads_every_currency_and_the_reference_formula() -> None:
    p = CurvePoint(
        step=40,
        epoch=2.0,
        samples=1280,
        tokens=5000,
        train_seconds=3.25,
        flops=7e9,
        progress=0.5,
        train_loss=0.7,
        energy_joules=9.5,
    )
    assert cost_of(p, "energy_joules") == 9.5
    assert cost_of(p, "train_seconds") == 3.25
    assert cost_of(p, "flops") == 7e9
    assert cost_of(p, "samples") == 1280
    assert cost_of(p, "tokens") == 5000
    assert cost_of(p, "steps") == 40
    # 0.25 s per step * 40 steps + 1e-9 s per FLOP * 7e9 FLOPs = 10 + 7 = 17 seconds.
    assert cost_of(p, "reference", ReferenceCost(per_step=0.25, per_flop=1e-9)) == pytest.approx(17.0)
    assert cost_of(p, "reference", ReferenceCost(per_step=0.0, per_flop=0.0)) == 0.0


def test_cost_of_rejects_unknown_currency_and_missing_calibration() -> None:
    p = point(10, 0.5)
    with pytest.raises(UsageError, match="currency"):
        cost_of(p, "joules")
    with pytest.raises(UsageError, match="ReferenceCost"):
        cost_of(p, "reference")
    with pytest.raises(UsageError):
        ReferenceCost(per_step=-1.0, per_flop=0.0)


def test_run_record_validates_status_and_builds_from_a_result() -> None:
    with pytest.raises(UsageError, match="status"):
        record([0.5], status="complete")
    result = RunResult(points=[point(10, 0.3), point(20, 0.6)], stop_reason=StopReason.BUDGET_SPENT, budget="20ba")
    rec = RunRecord.from_result(result, arm="sam", seed=3, metric="acc", higher_is_better=True, status="diverged")
    assert (rec.arm, rec.budget, rec.seed, rec.status, len(rec.points)) == ("sam", "20ba", 3, "diverged", 2)
    assert isinstance(rec.points, tuple)
    loss_rec = RunRecord("a", "1ba", 0, "completed", [point(1, None, train_loss=0.25)], "train_loss", False)
    assert loss_rec.quality(loss_rec.points[0]) == 0.25


# --- time to target --------------------------------------------------------------------------------------------


def test_time_to_target_interpolates_between_the_bracketing_evaluations() -> None:
    rec = record([0.1, 0.4, 0.8, 0.9], steps=[0, 10, 20, 30])
    # 0.6 lies halfway between 0.4 (step 10) and 0.8 (step 20).
    result = time_to_target(rec, 0.6, "steps")
    assert result.cost == pytest.approx(15.0)
    assert not result.censored
    assert result.censored_at == 30
    # In FLOPs (1e9 per step) the same crossing is at 15e9.
    assert time_to_target(rec, 0.6, "flops").cost == pytest.approx(15e9)
    # A target hit exactly by an evaluation costs that evaluation's cost.
    assert time_to_target(rec, 0.8, "steps").cost == pytest.approx(20.0)


def test_time_to_target_uses_the_first_crossing_of_a_noisy_curve() -> None:
    rec = record([0.5, 0.7, 0.3, 0.9], steps=[0, 10, 20, 30])
    # First crossing of 0.65 is between 0.5 (step 0) and 0.7 (step 10): 0.15 / 0.2 of the way.
    assert time_to_target(rec, 0.65, "steps").cost == pytest.approx(7.5)


def test_time_to_target_when_the_first_evaluation_already_reaches_it() -> None:
    rec = record([0.9, 0.95], steps=[5, 10])
    assert time_to_target(rec, 0.5, "steps").cost == 5.0


def test_time_to_target_for_a_lower_is_better_metric() -> None:
    rec = record([2.0, 1.5, 1.0, 0.8], steps=[0, 10, 20, 30], metric="loss", higher_is_better=False)
    # 1.2 lies 0.3 / 0.5 of the way from 1.5 (step 10) to 1.0 (step 20).
    assert time_to_target(rec, 1.2, "steps").cost == pytest.approx(16.0)
    never = time_to_target(rec, 0.5, "steps")
    assert never.cost is None and never.censored and never.censored_at == 30
    # A loss target the first evaluation already beats costs that evaluation's cost (step 0).
    assert time_to_target(rec, 2.5, "steps").cost == 0.0


def test_time_to_target_censors_runs_that_never_reach_it_at_their_final_cost() -> None:
    rec = record([0.1, 0.2, 0.3], steps=[10, 20, 30])
    result = time_to_target(rec, 0.5, "train_seconds")
    assert result.cost is None
    assert result.censored
    assert result.censored_at == pytest.approx(3.0)


@pytest.mark.parametrize("status", ["failed", "diverged", "interrupted"])
def test_unfinished_runs_never_count_as_reaching_the_target(status: str) -> None:
    rec = record([0.9, 0.95, float("nan")], steps=[10, 20, 30], status=status)
    result = time_to_target(rec, 0.5, "steps")
    assert result.cost is None and result.censored and result.censored_at == 30


def test_time_to_target_skips_points_without_the_metric() -> None:
    rec = record([0.2, None, 0.6], steps=[0, 10, 20])
    # The point without a quality is not an evaluation: interpolate between steps 0 and 20.
    assert time_to_target(rec, 0.4, "steps").cost == pytest.approx(10.0)


increasing_curves = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=10).map(
    lambda steps: list(np.cumsum(steps))
)


@given(
    increments=increasing_curves,
    target=st.floats(0.0, 10.0, allow_nan=False),
    status=st.sampled_from(["completed", "failed", "diverged"]),
    higher=st.booleans(),
)
@settings(max_examples=100, deadline=None)
def test_time_to_target_reaches_exactly_when_an_evaluation_does(
    increments: list[float], target: float, status: str, higher: bool
) -> None:
    qualities = increments if higher else [-q for q in increments]
    target = target if higher else -target
    rec = record(qualities, status=status, higher_is_better=higher)
    result = time_to_target(rec, target, "steps")
    hit = any((q >= target) if higher else (q <= target) for q in qualities)
    assert result.censored == (status != "completed" or not hit)
    assert (result.cost is None) == result.censored
    assert result.censored_at == rec.points[-1].step
    if result.cost is not None:
        first = next(i for i, q in enumerate(qualities) if (q >= target if higher else q <= target))
        # The crossing lies after the last evaluation that missed and no later than the first that hit.
        assert result.cost <= rec.points[first].step + 1e-9
        if first > 0:
            assert result.cost > rec.points[first - 1].step - 1e-9


@given(increments=increasing_curves, a=st.floats(0.0, 10.0), b=st.floats(0.0, 10.0))
@settings(max_examples=100, deadline=None)
def test_time_to_target_is_monotone_in_the_target(increments: list[float], a: float, b: float) -> None:
    rec = record(increments)
    low, high = sorted((a, b))
    first, second = time_to_target(rec, low, "flops").cost, time_to_target(rec, high, "flops").cost
    if second is not None:
        assert first is not None and first <= second + 1e-6


# --- tradeoff curves and frontiers -----------------------------------------------------------------------------


def test_tradeoff_curve_statistics_over_seeds_exclude_unfinished_runs() -> None:
    runs = [
        record([0.2, 0.50], steps=[50, 100], budget="100ba", seed=0),
        record([0.2, 0.60], steps=[50, 100], budget="100ba", seed=1),
        record([0.2, 0.70], steps=[50, 100], budget="100ba", seed=2),
        record([0.3, 0.80], steps=[100, 200], budget="200ba", seed=0),
        record([0.3, 0.90], steps=[100, 200], budget="200ba", seed=1),
        record([0.3, 0.99], steps=[100, 150], budget="200ba", seed=2, status="diverged"),
    ]
    curve = tradeoff_curve(runs, "steps")
    assert [p.budget for p in curve] == ["100ba", "200ba"]
    small, large = curve
    assert small.cost == 100 and small.n_seeds == 3 and small.failed == 0
    assert small.quality_mean == pytest.approx(0.6)
    assert (small.quality_min, small.quality_max) == (0.5, 0.7)
    assert small.quality_std == pytest.approx(0.1)  # sample std of 0.5, 0.6, 0.7
    # The diverged run's 0.99 and its 150 steps stay out of the means.
    assert large.cost == 200 and large.n_seeds == 2 and large.failed == 1
    assert large.quality_mean == pytest.approx(0.85)
    assert large.quality_max == 0.9


def test_tradeoff_curve_with_no_completed_run_and_several_arms() -> None:
    runs = [record([0.5], steps=[40], status="failed"), record([0.5], steps=[60], status="diverged", seed=1)]
    (only,) = tradeoff_curve(runs, "steps")
    assert only.quality_mean is None and only.n_seeds == 0 and only.failed == 2 and only.cost == 50
    mixed = [*runs, record([0.5], arm="other")]
    with pytest.raises(UsageError, match="one arm"):
        tradeoff_curve(mixed, "steps")
    assert set(tradeoff_curves(mixed, "steps")) == {"base", "other"}


def test_pareto_frontier_hand_example() -> None:
    points = [(1.0, 0.5), (2.0, 0.4), (2.0, 0.7), (3.0, 0.7), (4.0, 0.9), (0.5, 0.1), (4.0, 0.9)]
    assert pareto_frontier(points, higher_is_better=True) == [(0.5, 0.1), (1.0, 0.5), (2.0, 0.7), (4.0, 0.9)]
    losses = [(1.0, 2.0), (2.0, 1.0), (3.0, 1.5), (4.0, 0.5)]
    assert pareto_frontier(losses, higher_is_better=False) == [(1.0, 2.0), (2.0, 1.0), (4.0, 0.5)]
    assert pareto_frontier([], higher_is_better=True) == []


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@given(points=st.lists(st.tuples(finite, finite), max_size=40), higher=st.booleans())
@settings(max_examples=120, deadline=None)
def test_pareto_frontier_is_monotone_and_covers_every_point(points: list[tuple[float, float]], higher: bool) -> None:
    frontier = pareto_frontier(points, higher_is_better=higher)
    better = (lambda a, b: a > b) if higher else (lambda a, b: a < b)
    at_least = (lambda a, b: a >= b) if higher else (lambda a, b: a <= b)
    for (c0, q0), (c1, q1) in itertools.pairwise(frontier):
        assert c1 > c0
        assert better(q1, q0)
    for cost, quality in points:
        assert any(fc <= cost and at_least(fq, quality) for fc, fq in frontier)
    # No frontier point is dominated by an input point (other than itself).
    for fc, fq in frontier:
        assert (fc, fq) in points
        assert not any(c <= fc and at_least(q, fq) and (c, q) != (fc, fq) for c, q in points)


def test_frontier_by_arm_names_the_owner_of_each_point() -> None:
    base = [
        record([0.6], steps=[100], arm="base", budget="100ba"),
        record([0.8], steps=[200], arm="base", budget="200ba"),
        record([0.9], steps=[400], arm="base", budget="400ba"),
    ]
    fast = [
        record([0.7], steps=[100], arm="fast", budget="100ba"),
        record([0.75], steps=[200], arm="fast", budget="200ba"),
        record([0.1], steps=[50], arm="fast", budget="50ba", status="diverged"),
    ]
    frontier = frontier_by_arm(tradeoff_curves(base + fast, "steps"))
    assert [(p.cost, p.quality, p.arm, p.budget) for p in frontier] == [
        (100, 0.7, "fast", "100ba"),
        (200, 0.8, "base", "200ba"),
        (400, 0.9, "base", "400ba"),
    ]


# --- cost to quality and speedups ------------------------------------------------------------------------------


def test_cost_to_quality_takes_the_cheapest_run_of_the_seed() -> None:
    short = record([0.4, 0.8], steps=[50, 100], budget="100ba")  # a fully decayed short run reaches 0.7 at 87.5
    long = record([0.3, 0.6, 0.9], steps=[100, 200, 300], budget="300ba")  # reaches 0.7 at 233.3
    assert cost_to_quality([short, long], 0.7, "steps") == pytest.approx(87.5)
    assert cost_to_quality([short, long], 0.85, "steps") == pytest.approx(850 / 3)  # only the long run
    assert cost_to_quality([short, long], 0.95, "steps") is None
    crashed = dataclasses.replace(short, status="failed")
    assert cost_to_quality([crashed, long], 0.7, "steps") == pytest.approx(700 / 3)
    with pytest.raises(UsageError, match="seed"):
        cost_to_quality([short, dataclasses.replace(long, seed=1)], 0.7, "steps")


def test_speedup_hand_example() -> None:
    # Baseline seeds reach 0.5 at 100, 200 and 400 steps; the arm at 50, 100 and 200: geometric means 200 and 100, 2x.
    baseline = [record([0.1, 0.5], steps=[c // 2, c], seed=s) for s, c in enumerate([100, 200, 400])]
    arm = [record([0.5], steps=[c], arm="fast", seed=s) for s, c in enumerate([50, 100, 200])]
    result = speedup(baseline, arm, 0.5, "steps")
    assert result.estimate == pytest.approx(2.0)
    assert (result.n_baseline, result.n_arm, result.reached_baseline, result.reached_arm) == (3, 3, 3, 3)
    assert not result.censored and result.censoring_bias is None and result.interval_note is None
    assert result.method == "Welch t-interval on log cost, 3 vs 3 seeds" and result.level == 0.95
    # Log costs are log 100 + {0, 1, 2} * log 2 and log 50 + the same: each side's sample variance is (log 2)^2, so
    # se = log 2 * sqrt(2 / 3), Welch's df = (2v)^2 / (2 v^2 / 2) = 4 and t = log 2 / se = sqrt(3 / 2).
    se = math.log(2) * math.sqrt(2 / 3)
    half = stats.t.ppf(0.975, 4) * se
    assert (result.low, result.high) == pytest.approx((2 * math.exp(-half), 2 * math.exp(half)), rel=1e-12)
    assert result.p_value == pytest.approx(2 * stats.t.sf(math.sqrt(1.5), 4), rel=1e-12)
    assert result.p_faster == pytest.approx(stats.t.sf(math.sqrt(1.5), 4), rel=1e-12)
    assert result.sd_log == pytest.approx(math.log(2))
    assert not result.significant() and not result.significant(one_sided=True)
    assert result.significant(alpha=0.3) and result.significant(alpha=0.15, one_sided=True)
    narrower = speedup(baseline, arm, 0.5, "steps", level=0.5)
    assert result.low < narrower.low < narrower.high < result.high and narrower.p_value == result.p_value
    # Below 3 seeds a side only the estimate is given, and it says why.
    no_ci = speedup(baseline[:2], arm[:2], 0.5, "steps")
    assert no_ci.estimate == pytest.approx(2.0)
    assert (no_ci.low, no_ci.high, no_ci.p_value, no_ci.p_faster) == (None, None, None, None)
    assert no_ci.interval_note == "needs at least 3 seeds per arm" and not no_ci.significant(alpha=0.99)
    assert no_ci.method == "ratio of geometric means, 2 vs 2 seeds: no interval"
    one_side_short = speedup(baseline, arm[:1], 0.5, "steps")
    assert one_side_short.low is None and one_side_short.interval_note == "needs at least 3 seeds per arm"
    assert one_side_short.estimate == pytest.approx(200 / 50)
    with pytest.raises(UsageError, match="level"):
        speedup(baseline, arm, 0.5, "steps", level=1.0)
    with pytest.raises(UsageError, match="alpha"):
        result.significant(alpha=0.0)


def test_speedup_without_spread_or_at_zero_cost_gives_no_interval() -> None:
    same = [record([0.5], steps=[100], seed=s) for s in range(3)]
    flat = speedup(same, [dataclasses.replace(r, arm="x") for r in same], 0.5, "steps")
    assert flat.estimate == 1.0 and flat.low is None and flat.p_value is None and flat.sd_log == pytest.approx(0.0)
    assert flat.interval_note == "no spread between seeds on either side: an interval would have zero width"
    # The first evaluation, at step 0, already reaches the quality: cost 0, whose log is undefined.
    free = [record([0.5], steps=[0], arm="x", seed=s) for s in range(3)]
    zero = speedup(same, free, 0.5, "steps")
    assert zero.estimate == math.inf and zero.low is None and zero.sd_log is None
    assert zero.interval_note == "a seed reached the quality at zero cost: log cost is undefined"
    assert speedup([dataclasses.replace(r, arm="base") for r in free], free, 0.5, "steps").estimate == 1.0


def test_welch_log_matches_scipy_and_broadcasts() -> None:
    rng = np.random.default_rng(3)
    for n_base, n_arm, level in [(3, 3, 0.95), (3, 5, 0.9), (6, 4, 0.99), (2, 2, 0.8)]:
        base = np.exp(rng.normal(1.0, 0.3, size=(50, n_base)))
        arm = np.exp(rng.normal(0.5, rng.uniform(0.05, 0.6), size=(50, n_arm)))
        test = welch_log(base, arm, level)
        two = stats.ttest_ind(np.log(base), np.log(arm), axis=-1, equal_var=False)
        one = stats.ttest_ind(np.log(base), np.log(arm), axis=-1, equal_var=False, alternative="greater")
        interval = two.confidence_interval(level)
        assert test.low == pytest.approx(np.exp(interval.low), rel=1e-9)
        assert test.high == pytest.approx(np.exp(interval.high), rel=1e-9)
        assert test.p_value == pytest.approx(two.pvalue, rel=1e-9)
        assert test.p_faster == pytest.approx(one.pvalue, rel=1e-9)
        assert test.df == pytest.approx(two.df, rel=1e-9)
        row = welch_log(base[7], arm[7], level)
        assert float(row.low) == pytest.approx(test.low[7], rel=1e-12)
    # No spread on either side (also when the costs differ only by rounding), and a zero cost.
    undefined = welch_log(
        [[1.0, 1.0, 1.0], [0.3, 0.3, 0.3], [0.0, 1.0, 2.0]], [[2.0, 2.0, 2.0], [0.1 * 3, 0.3, 0.3], [1.0, 2.0, 3.0]]
    )
    assert np.isnan(undefined.low).all() and np.isnan(undefined.p_value).all()
    with pytest.raises(UsageError, match="2 seeds"):
        welch_log([1.0, 2.0, 3.0], [1.0])
    with pytest.raises(UsageError, match="level"):
        welch_log([1.0, 2.0], [1.0, 2.0], level=0.0)


def test_seeds_to_resolve() -> None:
    # Normal approximation 2 * ((1.96 + 0.84) * 0.2 / log 1.2)^2 = 18.9; the t correction adds one seed.
    assert seeds_to_resolve(0.2) == 20
    assert seeds_to_resolve(0.2, ratio=1 / 1.2) == 20
    assert seeds_to_resolve(0.0) == 3 and seeds_to_resolve(0.01, ratio=2.0) == 3
    counts = [seeds_to_resolve(sd) for sd in (0.05, 0.1, 0.2, 0.4)]
    assert counts == sorted(counts) and counts[-1] > 3 * counts[-2]
    assert seeds_to_resolve(0.2, level=0.99) > 20 > seeds_to_resolve(0.2, power=0.5)
    assert seeds_to_resolve(0.2, ratio=1.5) < 20
    for args in [(-0.1,), (math.nan,), (0.1, 1.0), (0.1, -2.0), (0.1, 1.2, 1.0), (0.1, 1.2, 0.95, 0.0)]:
        with pytest.raises(UsageError):
            seeds_to_resolve(*args)


def test_speedup_censoring_rule() -> None:
    baseline = [record([0.5], steps=[100], seed=s) for s in range(3)]
    # Two arm seeds reach 0.5 at 50 steps; the third stops at 0.4 after 80 steps and stands in at 80.
    arm = [
        record([0.5], steps=[50], arm="x", seed=0),
        record([0.5], steps=[50], arm="x", seed=1),
        record([0.2, 0.4], steps=[40, 80], arm="x", seed=2),
    ]
    result = speedup(baseline, arm, 0.5, "steps")
    assert result.reached_arm == 2 and result.censored
    assert result.estimate == pytest.approx(100 / (50 * 50 * 80) ** (1 / 3))
    # The interval treats the stand-in as a cost; it is below the seed's true cost, so the arm looks cheaper.
    assert result.low < result.estimate < result.high
    assert result.censoring_bias == "high"
    assert result.interval_note == (
        "1 of 3 arm seed(s) never reached the quality and stand in at their budget cost: "
        "the speedup and its interval are biased high"
    )
    # With only one of three arm seeds reaching it, no speedup is claimed.
    arm_mostly_failing = [arm[0], dataclasses.replace(arm[1], status="diverged"), arm[2]]
    none = speedup(baseline, arm_mostly_failing, 0.5, "steps")
    assert none.estimate is None and none.low is None and none.high is None and none.p_value is None
    assert none.reached_arm == 1 and none.n_arm == 3
    assert none.interval_note == "fewer than half of the arm seeds reached the quality"
    # The same holds when the baseline is the side that mostly misses.
    flipped = speedup(arm_mostly_failing, [dataclasses.replace(r, arm="y") for r in baseline], 0.5, "steps")
    assert flipped.estimate is None and flipped.reached_baseline == 1
    # A censored baseline biases the speedup low; censoring on both sides, in no known direction.
    low = speedup(
        [dataclasses.replace(r, arm="b") for r in arm],
        [dataclasses.replace(r, arm="y") for r in baseline],
        0.5,
        "steps",
    )
    assert low.censoring_bias == "low" and low.interval_note.endswith("biased low") and low.low is not None
    both = speedup([dataclasses.replace(r, arm="b") for r in arm], arm, 0.5, "steps")
    assert both.censoring_bias == "unknown" and both.interval_note == (
        "1 of 3 baseline seed(s) and 1 of 3 arm seed(s) never reached the quality and stand in at their budget "
        "cost: the direction of the bias is unknown"
    )


def test_speedup_rejects_mixed_arms_and_metrics() -> None:
    baseline = [record([0.5], arm="a"), record([0.5], arm="b", seed=1)]
    with pytest.raises(UsageError, match="one arm"):
        speedup(baseline, [record([0.5], arm="c")], 0.5, "steps")
    with pytest.raises(UsageError, match="metric"):
        speedup([record([0.5])], [record([0.5], arm="c", metric="top5")], 0.5, "steps")


seed_curves = st.lists(increasing_curves, min_size=1, max_size=5)


def _runs(curves: list[list[float]], arm: str) -> list[RunRecord]:
    """One run per seed, plus a half-length run (another budget) for every other seed."""
    runs = []
    for seed, curve in enumerate(curves):
        runs.append(record(curve, arm=arm, seed=seed, budget="full"))
        if seed % 2 == 0 and len(curve) > 1:
            half = curve[: len(curve) // 2]
            runs.append(record([q * 0.9 for q in half], arm=arm, seed=seed, budget="half"))
    return runs


@given(curves=seed_curves, where=st.floats(0.0, 1.0), currency=st.sampled_from(list(Currency)))
@settings(max_examples=60, deadline=None)
def test_speedup_of_an_arm_against_itself_is_one(curves: list[list[float]], where: float, currency: str) -> None:
    runs = _runs(curves, "base")
    finals = sorted(curve[-1] for curve in curves)
    quality = finals[0] * where  # reached by every seed
    # Also when some seeds are censored (the median final), as long as the estimate is given.
    for result in (
        speedup(runs, runs, quality, currency, REF),
        speedup(runs, runs, finals[len(finals) // 2], currency, REF),
    ):
        assert result.estimate == 1.0
        if len(curves) < 3:
            assert result.low is None and result.interval_note == "needs at least 3 seeds per arm"
        elif result.low is None:  # every seed cost the same
            assert result.interval_note.startswith("no spread") and result.sd_log == pytest.approx(0.0, abs=1e-12)
        else:
            assert result.low < 1.0 < result.high and result.low == pytest.approx(1 / result.high)
            assert result.p_value == 1.0 and result.p_faster == 0.5


@given(
    base=seed_curves,
    arm=seed_curves,
    factor=st.sampled_from([0.5, 2.0, 3.0, 7.5]),
    currency=st.sampled_from(list(Currency)),
    quality=st.floats(0.0, 3.0),
)
@settings(max_examples=60, deadline=None)
def test_scaling_an_arms_costs_scales_its_speedup_inversely(
    base: list[list[float]], arm: list[list[float]], factor: float, currency: str, quality: float
) -> None:
    baseline_runs, arm_runs = _runs(base, "base"), _runs(arm, "arm")
    original = speedup(baseline_runs, arm_runs, quality, currency, REF)
    cheaper = speedup(baseline_runs, [scaled(r, factor) for r in arm_runs], quality, currency, REF)
    assert (original.estimate is None) == (cheaper.estimate is None)
    assert (original.low is None) == (cheaper.low is None) and original.interval_note == cheaper.interval_note
    if original.estimate is not None and math.isfinite(original.estimate) and original.estimate > 0:
        assert cheaper.estimate == pytest.approx(original.estimate / factor, rel=1e-9)
        # The noise, each side's spread of log cost around its own mean, does not change with scale.
        assert (cheaper.sd_log is None) == (original.sd_log is None)
        assert original.sd_log is None or cheaper.sd_log == pytest.approx(original.sd_log, rel=1e-9, abs=1e-12)
    if original.low is not None:
        assert cheaper.low == pytest.approx(original.low / factor, rel=1e-9)
        assert cheaper.high == pytest.approx(original.high / factor, rel=1e-9)


def test_speedup_curve_follows_quality() -> None:
    baseline = [record([0.2, 0.4, 0.6, 0.8], steps=[100, 200, 300, 400], seed=s) for s in range(2)]
    # The arm learns at the same rate per step at first but costs half as much per step.
    arm = [scaled(dataclasses.replace(r, arm="fast"), 0.5) for r in baseline]
    curve = speedup_curve(baseline, arm, [0.3, 0.5, 0.7, 0.9], "steps", level=0.9)
    assert [s.quality for s in curve] == [0.3, 0.5, 0.7, 0.9]
    assert [s.estimate for s in curve[:3]] == pytest.approx([2.0, 2.0, 2.0])
    assert curve[3].estimate is None and curve[3].reached_baseline == 0
    assert curve == [speedup(baseline, arm, q, "steps", level=0.9) for q in [0.3, 0.5, 0.7, 0.9]]


# --- performance profiles and the AlgoPerf score ---------------------------------------------------------------


def test_performance_profile_and_score_hand_example() -> None:
    times = {
        "mnist": {"a": 10.0, "b": 20.0, "c": None},
        "cifar": {"a": 30.0, "b": 15.0, "c": math.inf},
    }
    profile = performance_profile(times, [1.0, 1.5, 2.0, 4.0])
    assert profile["a"] == [0.5, 0.5, 1.0, 1.0]  # ratios 1 and 2
    assert profile["b"] == [0.5, 0.5, 1.0, 1.0]  # ratios 2 and 1
    assert profile["c"] == [0.0, 0.0, 0.0, 0.0]
    score = algoperf_score(times)
    # Each of a and b: rho = 1/2 on [1, 2) and 1 on [2, 4]: (0.5 * 1 + 1 * 2) / 3 = 5/6.
    assert score["a"] == pytest.approx(5 / 6)
    assert score["b"] == pytest.approx(5 / 6)
    assert score["c"] == 0.0


def test_algoperf_score_extremes() -> None:
    times = {
        "w1": {"best": 5.0, "slow": 25.0, "never": None},
        "w2": {"best": 1.0, "slow": 3.0},  # "never" has no entry: never reached
        "w3": {"best": 2.0, "slow": 4.0, "never": math.inf},
    }
    score = algoperf_score(times)
    assert score["best"] == 1.0
    assert score["never"] == 0.0
    # slow: ratios 5 (beyond tau_max, adds nothing), 3 (adds (4 - 3) / 3) and 2 (adds 2 / 3), over 3 workloads.
    assert score["slow"] == pytest.approx((0 + 1 / 3 + 2 / 3) / 3)
    with pytest.raises(UsageError):
        algoperf_score(times, tau_max=1.0)
    with pytest.raises(UsageError):
        algoperf_score({"w": {"a": -1.0}})


times_strategy = st.dictionaries(
    st.sampled_from(["w1", "w2", "w3", "w4", "w5"]),
    st.dictionaries(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(st.none(), st.just(math.inf), st.floats(0.01, 100.0)),
        min_size=1,
    ),
    min_size=1,
)


@given(times=times_strategy, taus=st.lists(st.floats(1.0, 10.0), min_size=1, max_size=10))
@settings(max_examples=100, deadline=None)
def test_rho_is_non_decreasing_and_the_score_is_its_area(times: dict, taus: list[float]) -> None:
    taus = sorted(taus)
    for rho in performance_profile(times, taus).values():
        assert all(0.0 <= r <= 1.0 for r in rho)
        assert all(a <= b for a, b in itertools.pairwise(rho))
    # The exact area against a midpoint Riemann sum of rho over [1, 4].
    grid = np.linspace(1.0, 4.0, 301)
    mids = list((grid[:-1] + grid[1:]) / 2)
    profile = performance_profile(times, mids)
    for arm, score in algoperf_score(times).items():
        assert 0.0 <= score <= 1.0
        # Each workload's step is off by at most one cell of width 0.01, i.e. 0.01 / 3 of the area.
        assert score == pytest.approx(float(np.mean(profile[arm])), abs=0.01 / 3 + 1e-9)


# --- summaries -------------------------------------------------------------------------------------------------


def test_censored_median() -> None:
    assert censored_median([3.0, 1.0, 2.0]) == 2.0
    assert censored_median([3.0, None, 1.0]) == 3.0
    assert censored_median([None, None, 1.0]) is None
    assert censored_median([1.0, None]) is None
    assert censored_median([]) is None


def test_arm_summary_and_times_to_target() -> None:
    records = []
    for seed in range(3):
        records.append(record([0.3, 0.6], steps=[100, 200], arm="base", budget="200ba", seed=seed))
        records.append(record([0.2, 0.4], steps=[50, 100], arm="base", budget="100ba", seed=seed))
        records.append(record([0.3, 0.6], steps=[50, 100], arm="fast", budget="100ba", seed=seed))
    records[-1] = dataclasses.replace(records[-1], status="diverged")  # fast, seed 2
    summary = arm_summary(records, "base", 0.5, "steps")
    base, fast = summary["base"], summary["fast"]
    assert [b.budget for b in base.budgets] == ["100ba", "200ba"]
    short, long = base.budgets
    assert short.median_time_to_target is None and short.reached == 0 and short.n_seeds == 3
    assert long.median_time_to_target == pytest.approx(200 * 2 / 3 + 100 / 3)  # 0.5 is 2/3 of the way from 0.3
    assert long.reached == 3 and base.reached == 3
    assert base.speedup.estimate == 1.0 and base.speedup.sd_log == pytest.approx(0.0) and base.speedup.low is None
    assert base.seeds_needed == 3 and base.resolve_ratio == 1.2
    (fast_budget,) = fast.budgets
    assert fast_budget.reached == 2 and fast_budget.n_seeds == 3
    assert fast_budget.median_time_to_target == pytest.approx(100 * 2 / 3 + 50 / 3)
    # fast seed 2 diverged: it stands in at its 100 steps; baseline 166.7 over the geometric mean of 83.3, 83.3, 100.
    base_cost, fast_cost = 500 / 3, 250 / 3
    assert fast.speedup.estimate == pytest.approx(base_cost / (fast_cost**2 * 100) ** (1 / 3))
    assert fast.speedup.reached_arm == 2 and fast.speedup.censoring_bias == "high"
    assert fast.speedup.low < fast.speedup.estimate < fast.speedup.high
    fast_logs = np.log([fast_cost, fast_cost, 100])
    assert fast.speedup.sd_log == pytest.approx(math.sqrt(((fast_logs - fast_logs.mean()) ** 2).sum() / 4))
    assert fast.seeds_needed == seeds_to_resolve(fast.speedup.sd_log, 1.2, 0.95)
    wider = arm_summary(records, "base", 0.5, "steps", level=0.99, resolve_ratio=1.1)["fast"]
    assert wider.speedup.low < fast.speedup.low and wider.resolve_ratio == 1.1
    assert wider.seeds_needed == seeds_to_resolve(fast.speedup.sd_log, 1.1, 0.99) > fast.seeds_needed
    assert times_to_target(records, 0.5, "steps") == pytest.approx({"base": base_cost, "fast": fast_cost})
    with pytest.raises(UsageError, match="baseline"):
        arm_summary(records, "nope", 0.5, "steps")


def test_the_significance_rule_needs_three_seeds_and_an_interval_excluding_one() -> None:
    # The rule reads only the baseline's name and the summaries; the rest of StudyFacts does not matter here.
    def warnings(base_costs: list[int], arm_costs: list[int]) -> list[str]:
        records = [record([0.5], steps=[c], arm="baseline", seed=s) for s, c in enumerate(base_costs)]
        records += [record([0.5], steps=[c], arm="smooth", seed=s) for s, c in enumerate(arm_costs)]
        summaries = arm_summary(records, "baseline", 0.5, "steps")
        return significance(SimpleNamespace(spec=SimpleNamespace(baseline="baseline"), summaries=summaries))

    assert warnings([100, 110, 120], [50, 55, 60]) == []
    (overlap,) = warnings([100, 150, 200], [90, 140, 210])
    assert "that includes 1: no speedup can be claimed" in overlap
    (few,) = warnings([100, 110], [50, 55])
    assert few == "arm 'smooth': speedup 2.00x: no speedup can be claimed: fewer than 3 seeds"
    (flat,) = warnings([100, 100, 100], [50, 50, 50])
    assert flat.endswith(
        "no speedup can be claimed: no spread between seeds on either side: an interval would have zero width"
    )
