"""Tradeoff curves (final quality against final cost, per budget) and Pareto frontiers within and across arms."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from algospeed.errors import UsageError
from algospeed.study.analysis.cost import by_arm, final_cost, final_quality, judging
from algospeed.study.records import ReferenceCost, RunRecord

T = TypeVar("T")


@dataclass(frozen=True)
class TradeoffPoint:
    """One budget of one arm: the mean final cost and the spread of the final quality over seeds.

    Cost and quality statistics are over the `n_seeds` runs that completed with a quality; `failed` counts the runs
    that did not (failed, diverged, interrupted, or without any quality). When no run completed, the quality fields
    are None and `cost` is the mean final cost of all the budget's runs. `quality_std` is the sample standard
    deviation (ddof 1), 0.0 for a single seed.
    """

    arm: str
    budget: str
    cost: float
    quality_mean: float | None
    quality_min: float | None
    quality_max: float | None
    quality_std: float | None
    n_seeds: int
    failed: int
    metric: str
    higher_is_better: bool


def tradeoff_curve(
    records: Sequence[RunRecord], currency: str, reference: ReferenceCost | None = None
) -> list[TradeoffPoint]:
    """One arm's tradeoff curve: one point per budget, sorted by cost (then budget)."""
    records = list(records)
    metric, higher_is_better = judging(records)
    arms = {record.arm for record in records}
    if len(arms) > 1:
        raise UsageError(f"tradeoff_curve takes the runs of one arm, got {sorted(arms)}; use tradeoff_curves")
    budgets: dict[str, list[RunRecord]] = {}
    for record in records:
        budgets.setdefault(record.budget, []).append(record)
    curve = []
    for budget, runs in budgets.items():
        good = [(final_cost(run, currency, reference), final_quality(run)) for run in runs if run.completed]
        good = [(cost, quality) for cost, quality in good if quality is not None]
        qualities = np.array([quality for _, quality in good], dtype=float)
        if good:
            cost = float(np.mean([cost for cost, _ in good]))
            stats = (
                float(qualities.mean()),
                float(qualities.min()),
                float(qualities.max()),
                float(qualities.std(ddof=1)) if len(good) > 1 else 0.0,
            )
        else:
            cost = float(np.mean([final_cost(run, currency, reference) for run in runs]))
            stats = (None, None, None, None)
        curve.append(
            TradeoffPoint(
                records[0].arm, budget, cost, *stats, len(good), len(runs) - len(good), metric, higher_is_better
            )
        )
    return sorted(curve, key=lambda point: (point.cost, point.budget))


def tradeoff_curves(
    records: Sequence[RunRecord], currency: str, reference: ReferenceCost | None = None
) -> dict[str, list[TradeoffPoint]]:
    """Every arm's tradeoff curve, in first-seen arm order."""
    judging(records)
    return {arm: tradeoff_curve(runs, currency, reference) for arm, runs in by_arm(records).items()}


def _frontier(items: Sequence[T], cost: Callable[[T], float], quality: Callable[[T], float], hib: bool) -> list[T]:
    """The non-dominated items by cost (lower better) and quality, sorted by cost; ties keep the earliest item."""
    sign = 1.0 if hib else -1.0
    finite = [
        (index, item) for index, item in enumerate(items) if math.isfinite(cost(item)) and math.isfinite(quality(item))
    ]
    ordered = sorted(finite, key=lambda pair: (cost(pair[1]), -sign * quality(pair[1]), pair[0]))
    frontier: list[T] = []
    best = -math.inf
    for _, item in ordered:
        if sign * quality(item) > best:
            frontier.append(item)
            best = sign * quality(item)
    return frontier


def pareto_frontier(points: Sequence[tuple[float, float]], higher_is_better: bool) -> list[tuple[float, float]]:
    """The non-dominated (cost, quality) points, sorted by cost, quality strictly improving as cost grows.

    A point is dropped when another costs no more and is at least as good (duplicates are kept once); points with a
    non-finite cost or quality are ignored. Every input point is thus on the frontier or dominated by a point of it.
    """
    pairs = [(float(cost), float(quality)) for cost, quality in points]
    return _frontier(pairs, lambda pair: pair[0], lambda pair: pair[1], higher_is_better)


@dataclass(frozen=True)
class FrontierPoint:
    """A point of the frontier across arms and the arm (and budget) that owns it."""

    cost: float
    quality: float
    arm: str
    budget: str


def frontier_by_arm(curves: Mapping[str, Sequence[TradeoffPoint]]) -> list[FrontierPoint]:
    """The Pareto frontier of every arm's (mean cost, mean quality) points, each labelled with the arm owning it.

    Budgets where no seed completed are left out. When two arms tie exactly, the arm listed first in `curves` owns
    the point.
    """
    points = [point for curve in curves.values() for point in curve if point.quality_mean is not None]
    if not points:
        return []
    directions = {point.higher_is_better for point in points}
    if len(directions) > 1:
        raise UsageError("frontier_by_arm mixes metrics where higher is better with metrics where lower is better")
    frontier = _frontier(points, lambda point: point.cost, lambda point: point.quality_mean, directions.pop())
    return [FrontierPoint(point.cost, float(point.quality_mean), point.arm, point.budget) for point in frontier]
