"""How a run stands or ended, and why a fit stopped: each vocabulary defined once, here."""

from __future__ import annotations

from algospeed.core.vocabulary import Vocabulary


class RunStatus(Vocabulary):
    """A run's state in a study store, or how a trainer's fit ended."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    FAILED = "failed"

    @property
    def ended(self) -> bool:
        """A run that ran and stopped (any outcome): what the analysis may read."""
        return self in (RunStatus.COMPLETED, RunStatus.INTERRUPTED, RunStatus.DIVERGED, RunStatus.FAILED)

    @property
    def final(self) -> bool:
        """An outcome a restarted study keeps (a failed or interrupted run is tried again)."""
        return self in (RunStatus.COMPLETED, RunStatus.DIVERGED)


class StopReason(Vocabulary):
    """Why `Trainer.fit` returned."""

    BUDGET_SPENT = "budget_spent"
    SIGINT = "sigint"
    SIGTERM = "sigterm"
    REQUESTED = "requested"  # a callback set `state.stop_requested`

    @property
    def status(self) -> RunStatus:
        return RunStatus.COMPLETED if self is StopReason.BUDGET_SPENT else RunStatus.INTERRUPTED
