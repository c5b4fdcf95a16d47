"""Costs of curve points in every currency, time-to-target with censoring, and a seed's cost to reach a quality."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from algospeed.core.currency import Currency
from algospeed.core.metrics import reaches
from algospeed.core.result import CurvePoint
from algospeed.errors import UsageError
from algospeed.study.records import ReferenceCost, RunRecord


def as_currency(currency: Currency | str) -> Currency:
    """`currency` as a `Currency`; an unknown name is a usage error listing the valid ones."""
    try:
        return Currency(currency)
    except ValueError:
        raise UsageError(f"unknown cost currency {currency!r}; expected one of {Currency.names()}") from None


def cost_of(point: CurvePoint, currency: Currency | str, reference: ReferenceCost | None = None) -> float:
    """What had been spent by `point`, in `currency`.

    `reference` is `reference.per_step * (point.step + point.extra_steps) + reference.per_flop * point.flops`
    (every pass a method ran beside the training steps pays the per-step overhead too) and needs `reference`.
    """
    currency = as_currency(currency)
    if currency is Currency.REFERENCE:
        if reference is None:
            raise UsageError("the 'reference' currency needs a ReferenceCost calibration (per_step, per_flop)")
        return reference.per_step * float(point.step + point.extra_steps) + reference.per_flop * float(point.flops)
    if currency is Currency.ENERGY:
        if point.energy_joules is None:
            raise UsageError(
                "energy was not measured for these runs (the study's manifest says why): judge them in another currency"
            )
        return point.energy_joules
    field = {
        Currency.TRAIN_SECONDS: point.train_seconds,
        Currency.FLOPS: point.flops,
        Currency.SAMPLES: point.samples,
        Currency.TOKENS: point.tokens,
        Currency.STEPS: point.step,
    }
    return float(field[currency])


def final_cost(record: RunRecord, currency: str, reference: ReferenceCost | None = None) -> float:
    """The cost of the run's last point (0.0 for a run that recorded none)."""
    return cost_of(record.points[-1], currency, reference) if record.points else 0.0


def final_quality(record: RunRecord) -> float | None:
    """The quality of the last point that has one (None when no point has)."""
    for point in reversed(record.points):
        value = record.quality(point)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class TimeToTarget:
    """When a run first reached the target (`cost`), or that it never did (`censored`, `cost` None).

    `censored_at` is always the run's final cost: for a censored run, the cost its true time-to-target exceeds.
    """

    cost: float | None
    censored: bool
    censored_at: float


def time_to_target(
    record: RunRecord, target: float, currency: str, reference: ReferenceCost | None = None
) -> TimeToTarget:
    """The cost at which the run's quality first reaches `target` (at or above it when higher is better, at or
    below it otherwise).

    Between evaluations the curve is taken to be linear in cost: the crossing is interpolated between the last
    point not reaching the target and the first point reaching it. When the very first point with a quality already
    reaches the target there is nothing to interpolate from, and that point's cost is the answer (the run may have
    reached it earlier; evaluating earlier is the only way to tell). A run that never reaches the target is censored
    at its final cost. Failed, diverged or interrupted runs are always censored: they never count as reaching the
    target, even if an evaluation before the failure did.
    """
    if not math.isfinite(target):
        raise UsageError(f"target must be finite, got {target!r}")
    censored_at = final_cost(record, currency, reference)
    if not record.completed:
        return TimeToTarget(cost=None, censored=True, censored_at=censored_at)
    previous: tuple[float, float] | None = None
    for point in record.points:
        quality = record.quality(point)
        if quality is None:
            continue
        cost = cost_of(point, currency, reference)
        if reaches(quality, target, record.higher_is_better):
            if previous is None:
                return TimeToTarget(cost=cost, censored=False, censored_at=censored_at)
            cost_before, quality_before = previous
            # quality_before is strictly on the wrong side of target and quality on the right side (or on it),
            # so the fraction lies in (0, 1] for either direction of the metric.
            fraction = (target - quality_before) / (quality - quality_before)
            return TimeToTarget(
                cost=cost_before + fraction * (cost - cost_before), censored=False, censored_at=censored_at
            )
        previous = (cost, quality)
    return TimeToTarget(cost=None, censored=True, censored_at=censored_at)


def _check_same(records: Sequence[RunRecord], attributes: Iterable[str], what: str) -> None:
    for name in attributes:
        values = {getattr(record, name) for record in records}
        if len(values) > 1:
            raise UsageError(f"{what} mixes runs of different {name}: {sorted(map(str, values))}")


def judging(records: Sequence[RunRecord]) -> tuple[str, bool]:
    """The one (metric, higher_is_better) shared by `records`; a usage error when they disagree or are empty."""
    if not records:
        raise UsageError("no run records to analyse")
    _check_same(records, ("metric", "higher_is_better"), "the analysis")
    return records[0].metric, records[0].higher_is_better


def cost_to_quality(
    records_of_one_seed: Sequence[RunRecord], quality: float, currency: str, reference: ReferenceCost | None = None
) -> float | None:
    """The least cost at which one seed of one arm reached `quality`, over all its runs (every budget).

    Each completed run contributes its first crossing of `quality` (the point where its best-so-far quality first
    reaches it), interpolated as in `time_to_target`; the answer is the minimum over runs, i.e. where the best-so-far
    envelope of all the seed's evaluations, ordered by cost, first reaches `quality`. None when no completed run
    reaches it.
    """
    records = list(records_of_one_seed)
    judging(records)
    _check_same(records, ("arm", "seed"), "cost_to_quality")
    costs = [time_to_target(record, quality, currency, reference).cost for record in records]
    reached = [cost for cost in costs if cost is not None]
    return min(reached) if reached else None


def seed_budget_cost(
    records_of_one_seed: Sequence[RunRecord], currency: str, reference: ReferenceCost | None = None
) -> float:
    """What the seed spent on its largest run: the largest final cost over its runs (any status)."""
    return max((final_cost(record, currency, reference) for record in records_of_one_seed), default=0.0)


def by_seed(records: Iterable[RunRecord]) -> dict[int, list[RunRecord]]:
    """Records grouped by seed, in seed order."""
    groups: dict[int, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.seed, []).append(record)
    return dict(sorted(groups.items()))


def by_arm(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records grouped by arm, in first-seen order."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.arm, []).append(record)
    return groups
