"""Per-arm summaries a report needs: time-to-target per budget, over seeds, and the speedup at the target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from algospeed.errors import UsageError
from algospeed.study.analysis.cost import by_arm, by_seed, cost_to_quality, final_cost, judging, time_to_target
from algospeed.study.analysis.speedup import Speedup, seeds_to_resolve, speedup
from algospeed.study.records import ReferenceCost, RunRecord


def censored_median(values: Sequence[float | None]) -> float | None:
    """The median with never-reached values (None) read as infinite; None when the median itself is infinite.

    So it is a number only when at least half the values (strictly more than half for an even count) are reached.
    """
    if not values:
        return None
    median = float(np.median([math.inf if value is None else float(value) for value in values]))
    return None if math.isinf(median) else median


@dataclass(frozen=True)
class BudgetSummary:
    """One budget of one arm: its runs' mean final cost and the median time-to-target over its seeds."""

    budget: str
    mean_final_cost: float
    median_time_to_target: float | None
    reached: int
    n_seeds: int


@dataclass(frozen=True)
class ArmSummary:
    """One arm: per budget (sorted by mean final cost), the time-to-target; over all budgets, each
    seed's cost to reach the target (`seed_costs`: `cost_to_quality`, None where never reached),
    their censored median, and the speedup against the baseline at the target.

    `seeds_needed` is `seeds_to_resolve` at the speedup's noise (`speedup.sd_log`) and level: about how many seeds
    per arm it takes to resolve a `resolve_ratio` speedup (None where the noise is unknown)."""

    arm: str
    budgets: list[BudgetSummary]
    seed_costs: tuple[float | None, ...]
    median_cost_to_target: float | None
    speedup: Speedup
    resolve_ratio: float
    seeds_needed: int | None

    @property
    def reached(self) -> int:
        """Seeds that reached the target."""
        return sum(cost is not None for cost in self.seed_costs)

    @property
    def n_seeds(self) -> int:
        return len(self.seed_costs)


def times_to_target(
    records: Sequence[RunRecord], target: float, currency: str, reference: ReferenceCost | None = None
) -> dict[str, float | None]:
    """Per arm, the median over seeds of the cost to reach `target` over all budgets (`cost_to_quality`), seeds
    that never reach it read as infinite; None when the median is. One workload's row for `performance_profile`."""
    judging(records)
    return {
        arm: censored_median(
            [cost_to_quality(seed_runs, target, currency, reference) for seed_runs in by_seed(runs).values()]
        )
        for arm, runs in by_arm(records).items()
    }


def arm_summary(
    records: Sequence[RunRecord],
    baseline_arm: str,
    target: float,
    currency: str,
    reference: ReferenceCost | None = None,
    level: float = 0.95,
    resolve_ratio: float = 1.2,
) -> dict[str, ArmSummary]:
    """Per arm (first-seen order): median time-to-target at each budget, seeds reaching it, the speedup at the
    target against `baseline_arm` with its interval at `level` (the baseline's own speedup is 1), and the seeds per
    arm needed to resolve a `resolve_ratio` speedup at the observed noise."""
    records = list(records)
    judging(records)
    arms = by_arm(records)
    if baseline_arm not in arms:
        raise UsageError(f"baseline arm {baseline_arm!r} has no runs; arms: {sorted(arms)}")
    summaries = {}
    for arm, runs in arms.items():
        budgets: dict[str, list[RunRecord]] = {}
        for run in runs:
            budgets.setdefault(run.budget, []).append(run)
        rows = []
        for budget, budget_runs in budgets.items():
            times = [time_to_target(run, target, currency, reference).cost for run in budget_runs]
            rows.append(
                BudgetSummary(
                    budget=budget,
                    mean_final_cost=float(np.mean([final_cost(run, currency, reference) for run in budget_runs])),
                    median_time_to_target=censored_median(times),
                    reached=sum(time is not None for time in times),
                    n_seeds=len(budget_runs),
                )
            )
        seed_costs = [cost_to_quality(seed_runs, target, currency, reference) for seed_runs in by_seed(runs).values()]
        result = speedup(arms[baseline_arm], runs, target, currency, reference, level)
        summaries[arm] = ArmSummary(
            arm=arm,
            budgets=sorted(rows, key=lambda row: (row.mean_final_cost, row.budget)),
            seed_costs=tuple(seed_costs),
            median_cost_to_target=censored_median(seed_costs),
            speedup=result,
            resolve_ratio=resolve_ratio,
            seeds_needed=None if result.sd_log is None else seeds_to_resolve(result.sd_log, resolve_ratio, level),
        )
    return summaries
