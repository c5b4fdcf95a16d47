"""Analysis of a study's runs, as pure functions over `RunRecord`s (no I/O).

- `cost_of`, `time_to_target`, `cost_to_quality`: costs in every currency; time-to-target with censoring.
- `tradeoff_curve`, `pareto_frontier`, `frontier_by_arm`: quality against cost per budget; the frontier.
- `speedup`, `speedup_curve`: speedup at matched quality (ratio of geometric means) with a Welch t-interval on log
  cost; `welch_log` the interval on raw cost arrays; `seeds_to_resolve` the seeds a given speedup needs.
- `performance_profile`, `algoperf_score`: across workloads, as AlgoPerf scores them.
- `arm_summary`, `times_to_target`: what a report needs per arm.
"""

from __future__ import annotations

from algospeed.study.analysis.cost import (
    TimeToTarget,
    as_currency,
    cost_of,
    cost_to_quality,
    final_cost,
    final_quality,
    time_to_target,
)
from algospeed.study.analysis.profile import algoperf_score, performance_profile, performance_ratios
from algospeed.study.analysis.speedup import (
    MIN_INTERVAL_SEEDS,
    Speedup,
    WelchLog,
    seeds_to_resolve,
    speedup,
    speedup_curve,
    welch_log,
)
from algospeed.study.analysis.summary import ArmSummary, BudgetSummary, arm_summary, censored_median, times_to_target
from algospeed.study.analysis.tradeoff import (
    FrontierPoint,
    TradeoffPoint,
    frontier_by_arm,
    pareto_frontier,
    tradeoff_curve,
    tradeoff_curves,
)
from algospeed.study.records import ReferenceCost, RunRecord

__all__ = [
    "MIN_INTERVAL_SEEDS",
    "ArmSummary",
    "BudgetSummary",
    "FrontierPoint",
    "ReferenceCost",
    "RunRecord",
    "Speedup",
    "TimeToTarget",
    "TradeoffPoint",
    "WelchLog",
    "algoperf_score",
    "arm_summary",
    "as_currency",
    "censored_median",
    "cost_of",
    "cost_to_quality",
    "final_cost",
    "final_quality",
    "frontier_by_arm",
    "pareto_frontier",
    "performance_profile",
    "performance_ratios",
    "seeds_to_resolve",
    "speedup",
    "speedup_curve",
    "time_to_target",
    "times_to_target",
    "tradeoff_curve",
    "tradeoff_curves",
    "welch_log",
]
