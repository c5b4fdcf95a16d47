"""A run's result: its quality-against-cost curve, each point stamped with every cost currency."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from algospeed.core.status import RunStatus, StopReason


@dataclass(frozen=True)
class CurvePoint:
    """Quality measured at one moment of a run, with what had been spent to get there. `extra_steps` counts
    the passes outside the training steps that methods charged (a proxy run's steps, a scoring forward).
    `eval_seconds` and `eval_flops` are what the evaluations on the validation split took up to and
    including this point: recorded apart, never charged to training (so test-time augmentation shows)."""

    step: int
    epoch: float
    samples: int
    tokens: int
    train_seconds: float
    flops: float
    progress: float
    train_loss: float
    metrics: dict[str, float] = field(default_factory=dict)
    extra_steps: int = 0
    energy_joules: float | None = None  # measured like train_seconds; None where the machine cannot measure it
    eval_seconds: float = 0.0
    eval_flops: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CurvePoint:
        return cls(**data)


@dataclass(frozen=True)
class RunResult:
    """The curve of a run, why it stopped, and so how it ended (`completed` when its budget was spent,
    `interrupted` by a signal or a callback's request)."""

    points: list[CurvePoint]
    stop_reason: StopReason
    budget: str
    test_metrics: dict[str, float] = field(default_factory=dict)

    @property
    def status(self) -> RunStatus:
        return self.stop_reason.status

    @property
    def final(self) -> CurvePoint:
        if not self.points:
            raise ValueError("the run recorded no curve point")
        return self.points[-1]

    def summary(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "stop_reason": self.stop_reason.value,
            "budget": self.budget,
            "points": len(self.points),
            "final": self.points[-1].to_dict() if self.points else None,
            "test_metrics": self.test_metrics,
        }


def curve_jsonl(points: list[CurvePoint]) -> str:
    """A curve as JSON lines, one point per line (the format of `curve.jsonl`)."""
    return "".join(json.dumps(point.to_dict()) + "\n" for point in points)
