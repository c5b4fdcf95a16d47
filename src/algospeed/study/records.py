"""What the analysis reads: one finished run of a study (`RunRecord`) and a calibrated cost table (`ReferenceCost`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from algospeed.core.result import CurvePoint, RunResult
from algospeed.core.status import RunStatus
from algospeed.errors import UsageError


@dataclass(frozen=True)
class ReferenceCost:
    """A calibration that charges each step a fixed cost instead of the clock.

    The reference cost of a point is `per_step * steps + per_flop * flops`: `per_step` is the measured per-step
    overhead in seconds and `per_flop` the measured seconds per floating-point operation. It removes machine noise
    from wall-clock comparisons ("reference system time", No Train No Gain).
    """

    per_step: float
    per_flop: float

    def __post_init__(self) -> None:
        for name in ("per_step", "per_flop"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"reference cost {name} must be finite and non-negative, got {value!r}")


@dataclass(frozen=True)
class RunRecord:
    """One run of a study: which arm, budget and seed, how it ended, its curve, and how to judge its quality.

    Only a `completed` run can reach a target or enter a quality mean; `status` is any status of a run
    that ended (`RunStatus.ended`).

    `points` are in the order they were recorded (cost never decreases along them). The quality of a point is
    `point.metrics[metric]` (or `point.train_loss` when `metric == "train_loss"` and the point has no such metric);
    points without a finite quality are skipped by every quality computation but still count for cost.
    """

    arm: str
    budget: str
    seed: int
    status: RunStatus
    points: tuple[CurvePoint, ...]
    metric: str
    higher_is_better: bool

    def __post_init__(self) -> None:
        try:
            status = RunStatus(self.status)
        except ValueError:
            status = None
        if status is None or not status.ended:
            ended = ", ".join(s.value for s in RunStatus if s.ended)
            raise UsageError(f"run status must be one of {ended}, got {self.status!r}")
        object.__setattr__(self, "status", status)
        if not isinstance(self.points, tuple):
            object.__setattr__(self, "points", tuple(self.points))

    @property
    def completed(self) -> bool:
        return self.status is RunStatus.COMPLETED

    def quality(self, point: CurvePoint) -> float | None:
        """The quality of `point` by this record's metric, or None where the point has no finite value."""
        value = point.metrics.get(self.metric)
        if value is None and self.metric == "train_loss":
            value = point.train_loss
        if value is None:
            return None
        value = float(value)
        return value if math.isfinite(value) else None

    @classmethod
    def from_result(
        cls,
        result: RunResult,
        *,
        arm: str,
        seed: int,
        metric: str,
        higher_is_better: bool,
        status: RunStatus | str | None = None,
    ) -> RunRecord:
        """A record from a trainer's `RunResult` (its status unless `status` is given)."""
        return cls(
            arm=arm,
            budget=result.budget,
            seed=seed,
            status=status or result.status,
            points=tuple(result.points),
            metric=metric,
            higher_is_better=higher_is_better,
        )
