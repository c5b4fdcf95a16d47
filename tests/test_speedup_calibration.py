"""Calibration of the speedup interval: simulated studies from a known noise model (per-seed costs lognormal).

A/A studies (no true speedup) must be covered at the nominal 95% rate at 3, 4 and 5 seeds per arm, a real 1.5x
speedup must be resolved, and `seeds_to_resolve` must name the smallest seed count that resolves its speedup. Every
study is seeded; 20,000 replicates put a coverage figure within about 0.3 percentage points (one sd) of the truth.
"""

from __future__ import annotations

import numpy as np
import pytest

from algospeed.core.result import CurvePoint
from algospeed.study.analysis import seeds_to_resolve, speedup, welch_log
from algospeed.study.records import RunRecord

REPLICATES = 20_000
LEVEL = 0.95


def lognormal_costs(seed: int, sigma: float, seeds: int, median: float = 100.0) -> np.ndarray:
    """REPLICATES rows of `seeds` per-seed costs, log cost normal around log `median` with sd `sigma`."""
    return np.exp(np.random.default_rng(seed).normal(np.log(median), sigma, size=(REPLICATES, seeds)))


def resolved(baseline: np.ndarray, arm: np.ndarray) -> np.ndarray:
    """Per replicate, whether the LEVEL interval excludes 1."""
    test = welch_log(baseline, arm, LEVEL)
    return (test.low > 1) | (test.high < 1)


@pytest.mark.parametrize("seeds", [3, 4, 5])
@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.5])
def test_a_over_a_studies_are_covered_at_the_nominal_rate(seeds: int, sigma: float) -> None:
    # In theory the coverage does not depend on sigma (t on log cost is scale-free); each cell draws its own studies.
    baseline = lognormal_costs(1000 * seeds + round(100 * sigma), sigma, seeds)
    arm = lognormal_costs(1000 * seeds + round(100 * sigma) + 1, sigma, seeds)
    test = welch_log(baseline, arm, LEVEL)
    covered = (test.low <= 1) & (test.high >= 1)
    # Welch's t is slightly conservative at equal spreads and few seeds (about 96.5% at 3 seeds), never vacuous.
    assert 0.93 <= covered.mean() <= 0.975
    # The p-value is the same test: two-sided significance at 5% exactly where the 95% interval excludes 1.
    assert np.array_equal(test.p_value < 1 - LEVEL, ~covered)
    # One-sided "the arm is cheaper" at 5% is claimed in no more than about 5% of A/A studies.
    assert 0.03 <= (test.p_faster < 0.05).mean() <= 0.055


@pytest.mark.parametrize("seeds", [3, 5])
def test_coverage_holds_when_the_arms_spreads_differ(seeds: int) -> None:
    # The same median cost, but the arm's seeds scatter five times more: Welch's df is what keeps the coverage.
    baseline, arm = lognormal_costs(seeds, 0.1, seeds), lognormal_costs(seeds + 50, 0.5, seeds)
    assert 0.93 <= 1 - resolved(baseline, arm).mean() <= 0.97


def test_a_true_speedup_of_one_and_a_half_is_resolved() -> None:
    baseline = lognormal_costs(7, 0.1, 5)
    arm = lognormal_costs(8, 0.1, 5, median=100 / 1.5)
    test = welch_log(baseline, arm, LEVEL)
    assert (test.low > 1).mean() > 0.99
    assert (test.p_faster < 0.05).mean() > 0.99
    assert np.median(np.exp(test.log_ratio)) == pytest.approx(1.5, rel=0.01)
    # At 3 seeds the same speedup is resolved most of the time, not always.
    short = welch_log(lognormal_costs(9, 0.1, 3), lognormal_costs(10, 0.1, 3, median=100 / 1.5), LEVEL)
    assert 0.8 < (short.low > 1).mean() < 0.97


@pytest.mark.parametrize(("sd_log", "ratio"), [(0.1, 1.2), (0.2, 1.2), (0.3, 1.5)])
def test_seeds_to_resolve_is_the_smallest_count_with_its_power(sd_log: float, ratio: float) -> None:
    needed = seeds_to_resolve(sd_log, ratio, LEVEL, power=0.8)
    assert needed > 3
    seed = int(100 * sd_log * ratio)
    enough = resolved(lognormal_costs(seed, sd_log, needed), lognormal_costs(seed + 1, sd_log, needed, 100 / ratio))
    fewer = resolved(
        lognormal_costs(seed + 2, sd_log, needed - 1), lognormal_costs(seed + 3, sd_log, needed - 1, 100 / ratio)
    )
    # Welch's df is a little below the 2n - 2 the rule assumes, so the simulated power sits just under 80%.
    assert enough.mean() >= 0.78
    assert fewer.mean() < 0.8


def test_speedup_from_run_records_is_the_same_interval() -> None:
    """`speedup` reads each seed's cost off its run and hands the costs to `welch_log` unchanged."""
    baseline, arm = lognormal_costs(11, 0.3, 3)[:40], lognormal_costs(12, 0.3, 3)[:40]

    def point(seconds: float, acc: float) -> CurvePoint:
        counts = dict(step=1, epoch=1.0, samples=1, tokens=1, flops=1.0, progress=1.0, train_loss=1.0)
        return CurvePoint(train_seconds=seconds, metrics={"acc": acc}, **counts)

    def runs(costs: np.ndarray, name: str) -> list[RunRecord]:
        """One run per seed whose first evaluation, at `cost` seconds, reaches the quality."""
        return [
            RunRecord(name, "1ba", seed, "completed", (point(float(cost), 1.0),), "acc", True)
            for seed, cost in enumerate(costs)
        ]

    direct = welch_log(baseline, arm, LEVEL)
    for row, (base_costs, arm_costs) in enumerate(zip(baseline, arm, strict=True)):
        result = speedup(runs(base_costs, "a"), runs(arm_costs, "b"), 1.0, "train_seconds", level=LEVEL)
        assert result.method == "Welch t-interval on log cost, 3 vs 3 seeds"
        assert result.estimate == pytest.approx(np.exp(direct.log_ratio[row]), rel=1e-12)
        assert (result.low, result.high) == pytest.approx((direct.low[row], direct.high[row]), rel=1e-12)
        assert result.p_value == pytest.approx(direct.p_value[row], rel=1e-9)
