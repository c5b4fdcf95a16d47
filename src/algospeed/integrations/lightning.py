"""algospeed's methods inside a Lightning `Trainer`, as a `lightning.pytorch.Callback`:

    trainer = lightning.Trainer(max_epochs=10, callbacks=[AlgospeedCallback("ema,cosine_schedule")])

Lightning's hooks map onto algospeed's events: `setup` fires `init` (model surgery happens before
`configure_optimizers` builds the optimizer, and before a checkpoint's weights load), `on_fit_start`
fires `fit_start`, a batch's start `after_dataloader` and `before_forward` (the batch is read-only there:
Lightning has already handed it to `training_step`), `on_before_backward`/`on_after_backward` the
backward events, `on_before_optimizer_step` sets the learning rate from algospeed's schedule and fires
`before_optimizer_step`, a batch's end (once per optimizer step) `after_optimizer_step` and
`batch_end`, validation `eval_start`/`eval_end` (with `state.eval_model`'s weights, e.g. an EMA, in the
module while Lightning validates). Progress is the optimizer steps over `estimated_stepping_batches`
(from `max_steps` or `max_epochs`). Lightning's checkpoints carry the methods' state through the
callback's `state_dict`. Methods that act between the forward and the loss (both inside
`training_step`) are refused up front; see docs/integrations.md for which methods work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn

from algospeed.core.callback import Callback
from algospeed.core.data_kind import DataKind
from algospeed.core.events import Event
from algospeed.core.state import Schedule, State
from algospeed.errors import UsageError
from algospeed.integrations.bridge import Bridge, Unavailable

LOOP = "Lightning"
MISSING = {
    event: "the forward and the loss both run inside LightningModule.training_step"
    for event in (Event.AFTER_FORWARD, Event.BEFORE_LOSS, Event.AFTER_LOSS)
}
GUARDED = {
    "model": "Lightning keeps training the LightningModule it was given",
    "optimizer": "Lightning builds its optimizer in configure_optimizers and steps it; "
    "return the method's plain function from configure_optimizers instead (algospeed.functional)",
    "batch": "Lightning has already handed the batch to training_step",
    "train_data": "Lightning owns the data loader",
    "loss_fn": "the loss is computed inside training_step",
    "forward": "the forward runs inside training_step",
}


class AlgospeedCallback(pl.Callback):
    """Runs algospeed `methods` (a spec such as `"ema,cosine_schedule"`, or built methods and callbacks, a
    logger from `logger_from_spec` included) inside a Lightning fit, with automatic optimization and one
    optimizer. `schedule` (a multiplier of the learning rate as a function of progress) replaces the
    loop's scheduler; without it, the rate is the loop's unless a method sets a schedule. `state` is the
    algospeed `State` the methods see; `curve` the points recorded at each validation."""

    def __init__(
        self,
        methods: str | Sequence[Callback] = (),
        *,
        schedule: Schedule | None = None,
        seed: int = 0,
        data_kind: DataKind | None = None,
    ) -> None:
        super().__init__()
        self.bridge = Bridge(methods, LOOP, MISSING, GUARDED, schedule=schedule, seed=seed, data_kind=data_kind)

    @property
    def state(self) -> State:
        return self.bridge.require_state()

    @property
    def curve(self) -> list[Any]:
        return self.state.curve

    # ------------------------------------------------------------------------------ fit start
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.bridge.state is not None:
            return
        if not pl_module.automatic_optimization:
            raise UsageError("the algospeed callback needs Lightning's automatic optimization")
        later = Unavailable("the optimizer", "Lightning builds it in configure_optimizers, after setup")
        self.bridge.init(pl_module, pl_module.device, later, lambda params: later)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise UsageError(
                f"the algospeed callback needs one optimizer; configure_optimizers gave {len(trainer.optimizers)}"
            )
        total = trainer.estimated_stepping_batches
        self.bridge.start(trainer.optimizers[0], int(total) if math.isfinite(total) else 0, pl_module.device)

    # ----------------------------------------------------------------------------------- steps
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bridge.fire(Event.EPOCH_START)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.bridge.begin_step(batch)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self.state.loss = loss
        self.bridge.fire(Event.BEFORE_BACKWARD)

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bridge.fire(Event.AFTER_BACKWARD)
        self.bridge.end_count()

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.bridge.before_optimizer_step()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bridge = self.bridge
        bridge.end_count()  # a step whose loss was None (skipped) had no backward
        bridge.add_loss(outputs.get("loss") if isinstance(outputs, dict) else outputs)
        state = self.state
        if trainer.global_step == state.clock.steps:  # accumulating gradients: no optimizer step yet
            return
        bridge.fire(Event.AFTER_OPTIMIZER_STEP)
        batches = trainer.num_training_batches
        fraction = (batch_idx + 1) / batches if math.isfinite(batches) and batches else 0.0
        bridge.end_step(trainer.global_step, trainer.current_epoch + fraction)
        if state.stop_requested:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bridge.epoch = self.state.clock.epoch = trainer.current_epoch + 1
        self.bridge.fire(Event.EPOCH_END)

    # ------------------------------------------------------------------------------ evaluation
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.bridge.begin_eval()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bridge.evaluating:
            metrics = {
                key: value
                for key, value in trainer.callback_metrics.items()
                if isinstance(value, torch.Tensor) and value.numel() == 1
            }
            self.bridge.end_eval(metrics)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bridge.finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.bridge.abort()

    # ----------------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.bridge.pause()  # writing the checkpoint is not training; the clock restarts at the next batch

    def state_dict(self) -> dict[str, Any]:
        return self.bridge.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.bridge.load_state_dict(state_dict)
