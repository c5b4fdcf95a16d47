"""Speedup at matched quality between a baseline and an arm, with a seed-bootstrap confidence interval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from algospeed.errors import UsageError
from algospeed.study.analysis.cost import by_seed, cost_to_quality, judging, seed_budget_cost
from algospeed.study.records import ReferenceCost, RunRecord


@dataclass(frozen=True)
class Speedup:
    """`cost_baseline(quality) / cost_arm(quality)` and its bootstrap interval [low, high].

    `reached_*` counts the seeds (out of `n_*`) that reached `quality`. The estimate and interval are None when fewer
    than half of either side's seeds reached it (see `speedup`).
    """

    quality: float
    estimate: float | None
    low: float | None
    high: float | None
    n_baseline: int
    n_arm: int
    reached_baseline: int
    reached_arm: int

    @property
    def censored(self) -> bool:
        """Whether some seed on either side never reached the quality (its budget cost stood in for it)."""
        return self.reached_baseline < self.n_baseline or self.reached_arm < self.n_arm


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


def _ratio(baseline_mean: np.ndarray, arm_mean: np.ndarray) -> np.ndarray:
    """baseline / arm, with 0 / 0 read as 1 (both reached the quality at no cost) and x / 0 as infinity."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.asarray(baseline_mean, dtype=float) / np.asarray(arm_mean, dtype=float)
    return np.where((baseline_mean == 0) & (arm_mean == 0), 1.0, ratio)


def speedup(
    baseline: Sequence[RunRecord],
    arm: Sequence[RunRecord],
    quality: float,
    currency: str,
    reference: ReferenceCost | None = None,
    n_boot: int = 2000,
    rng_seed: int = 0,
    ci: float = 0.95,
) -> Speedup:
    """How many times less the arm spends than the baseline to reach `quality`.

    Each seed's cost is `cost_to_quality` over all its runs (every budget). The estimate is the mean over the
    baseline's seeds divided by the mean over the arm's seeds.

    Censoring rule: a seed that never reaches `quality` enters at its largest final cost (what it spent without
    getting there, a lower bound on its true cost) and is flagged through `reached_*` / `censored`. When fewer than
    half of either side's seeds reached `quality`, the median seed never got there and no number is given: estimate,
    low and high are None.

    The interval is a percentile bootstrap at level `ci`: `n_boot` times, the seeds of each side are resampled with
    replacement, independently of the other side, and the same ratio of means is taken (censored seeds keep their
    stand-in cost; the half-reached rule applies to the full sample only). Seeded by `rng_seed`, so repeatable.
    `n_boot=0` gives no interval (low and high None).
    """
    baseline, arm = list(baseline), list(arm)
    judging(baseline + arm)
    if not 0 < ci < 1:
        raise UsageError(f"ci must lie strictly between 0 and 1, got {ci!r}")
    if n_boot < 0:
        raise UsageError(f"n_boot must be non-negative, got {n_boot!r}")
    base_costs, base_reached = _seed_costs(baseline, quality, currency, reference, "baseline")
    arm_costs, arm_reached = _seed_costs(arm, quality, currency, reference, "arm")
    counts = dict(
        quality=float(quality),
        n_baseline=len(base_costs),
        n_arm=len(arm_costs),
        reached_baseline=base_reached,
        reached_arm=arm_reached,
    )
    if 2 * base_reached < len(base_costs) or 2 * arm_reached < len(arm_costs):
        return Speedup(estimate=None, low=None, high=None, **counts)
    estimate = float(_ratio(base_costs.mean(), arm_costs.mean()))
    if n_boot == 0:
        return Speedup(estimate=estimate, low=None, high=None, **counts)
    rng = np.random.default_rng(rng_seed)
    base_means = base_costs[rng.integers(0, len(base_costs), size=(n_boot, len(base_costs)))].mean(axis=1)
    arm_means = arm_costs[rng.integers(0, len(arm_costs), size=(n_boot, len(arm_costs)))].mean(axis=1)
    ratios = _ratio(base_means, arm_means)
    low, high = np.quantile(ratios, [(1 - ci) / 2, (1 + ci) / 2])
    return Speedup(estimate=estimate, low=float(low), high=float(high), **counts)


def speedup_curve(
    baseline: Sequence[RunRecord],
    arm: Sequence[RunRecord],
    qualities: Sequence[float],
    currency: str,
    reference: ReferenceCost | None = None,
    n_boot: int = 2000,
    rng_seed: int = 0,
    ci: float = 0.95,
) -> list[Speedup]:
    """`speedup` at each quality in `qualities`, in the given order (each bootstrap seeded by `rng_seed`)."""
    return [speedup(baseline, arm, q, currency, reference, n_boot, rng_seed, ci) for q in qualities]
