"""The profiler in a Lightning fit, as a `lightning.pytorch.Callback`:

    profiler = Profiler(ProfileSchedule(skip_first=5, warmup=2, active=20))
    trainer = lightning.Trainer(max_steps=40, callbacks=[AlgospeedCallback("ema"), ProfilerCallback(profiler)])
    trainer.fit(module, loader)
    print_profile(profiler.report())

Lightning's hooks mark the phases of a step (one optimizer step; the micro-batches of gradient
accumulation add up): from the previous step's end to a batch's start is `data` (the loader and the
copy to the device: Lightning gives a callback no hook between them); `training_step` is `forward`
(the loss is computed inside it); `zero_grad` and the step itself are `optimizer`; `backward` runs from
`on_before_backward` to `on_after_backward`; gradient clipping and the loop's own work are `other`;
validation is `eval`; a checkpoint is `checkpoint` until training resumes. The methods of an
`AlgospeedCallback` in the same fit are timed under their own names. Step 0 starts when training
starts, after Lightning's sanity check.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.trainer.states import TrainerFn

from algospeed.core.batch import Batch
from algospeed.core.callback import Method
from algospeed.integrations.lightning import AlgospeedCallback
from algospeed.profile.phases import CHECKPOINT, DATA, EVAL, OTHER
from algospeed.profile.profiler import Profiler, handler_label


class ProfilerCallback(pl.Callback):
    """Drives `profiler` (not yet attached) from a Lightning fit; `profiler.report()` after the fit."""

    def __init__(self, profiler: Profiler) -> None:
        super().__init__()
        self.profiler = profiler
        self._steps = 0
        self._samples = 0
        self._tokens = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        profiler = self.profiler
        for callback in trainer.callbacks:  # type: ignore[attr-defined]
            if isinstance(callback, AlgospeedCallback):
                bridge = callback.bridge
                bridge.instrument(lambda c, handler: profiler.timed_handler(handler_label(c), handler))
                profiler.methods += [c.key for c in bridge.callbacks if isinstance(c, Method)]
        self._steps = trainer.global_step
        profiler.attach_loop(pl_module, device=pl_module.device)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self.profiler.mark("forward")

    def on_before_zero_grad(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.profiler.mark("optimizer")

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self.profiler.mark("backward")

    def on_after_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.profiler.mark(OTHER)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self.profiler.mark("optimizer")

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.profiler.mark(OTHER)
        seen = Batch.of(batch)
        self._samples += seen.samples
        self._tokens += seen.tokens
        if trainer.global_step == self._steps:  # accumulating gradients: no optimizer step yet
            return
        self._steps = trainer.global_step
        self.profiler.step(batch, samples=self._samples, tokens=self._tokens)
        self._samples = self._tokens = 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.profiler.mark(EVAL)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == TrainerFn.FITTING and not trainer.sanity_checking:
            self.profiler.mark(DATA)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self.profiler.mark(CHECKPOINT)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.profiler.finish()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self.profiler.finish()
