"""The events the trainer fires, in the order a step meets them."""

from __future__ import annotations

from enum import Enum


class Event(str, Enum):
    """A point in the training loop where callbacks and methods may read or change the state."""

    INIT = "init"
    FIT_START = "fit_start"
    EPOCH_START = "epoch_start"
    AFTER_DATALOADER = "after_dataloader"
    BEFORE_FORWARD = "before_forward"
    AFTER_FORWARD = "after_forward"
    BEFORE_LOSS = "before_loss"
    AFTER_LOSS = "after_loss"
    BEFORE_BACKWARD = "before_backward"
    AFTER_BACKWARD = "after_backward"
    BEFORE_OPTIMIZER_STEP = "before_optimizer_step"
    AFTER_OPTIMIZER_STEP = "after_optimizer_step"
    BATCH_END = "batch_end"
    EPOCH_END = "epoch_end"
    EVAL_START = "eval_start"
    EVAL_END = "eval_end"
    FIT_END = "fit_end"

    @property
    def runs_in_reverse(self) -> bool:
        """`after_*` and `*_end` events unwind in reverse list order, like nested context managers."""
        return self.value.startswith("after_") or self.value.endswith("_end")
