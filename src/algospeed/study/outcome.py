"""What an executor returns for one run and the store keeps: a frozen `RunOutcome`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from algospeed.core.result import CurvePoint
from algospeed.core.status import RunStatus, StopReason


@dataclass(frozen=True)
class RunOutcome:
    """How one run of a study ended, with its curve and what the fairness checks read.

    `schedule_end` is the learning-rate multiplier at the end of the budget (a fully decayed run has
    about 0); `eval_fingerprint` identifies the data it was evaluated on; `hyperparameters` are what it
    really trained with; `test_metrics` its quality on the test split at the end of its budget;
    `cpu_seconds` the worker's CPU time and `load` the machine's load average per core while it ran.
    """

    key: str
    status: RunStatus
    points: tuple[CurvePoint, ...] = ()
    error: str = ""
    wall_seconds: float = 0.0
    stop_reason: StopReason | None = None
    schedule_end: float | None = None
    eval_fingerprint: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    test_metrics: dict[str, float] = field(default_factory=dict)
    cpu_seconds: float | None = None
    load: float | None = None

    @classmethod
    def died(cls, key: str, status: RunStatus, detail: str = "") -> RunOutcome:
        """The outcome of a run whose worker died: retried (`interrupted`) or given up (`failed`)."""
        error = detail or (
            "its worker process died (killed, out of memory, or a script that starts a study without an "
            "`if __name__ == '__main__':` guard)"
        )
        return cls(key=key, status=status, error=error)
