"""What events may read and change: the model, optimizer, current batch, loss, cost and RNG."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.clock import Clock
from algospeed.core.data import Loader
from algospeed.core.flops import FlopMeter
from algospeed.core.metrics import Forward, forward_inputs
from algospeed.core.result import CurvePoint
from algospeed.core.units import Amount

T = TypeVar("T")
LossFn = Callable[[Any, Any], torch.Tensor]
OptimizerFactory = Callable[[list[nn.Parameter]], torch.optim.Optimizer]
Schedule = Callable[[float], float]


@dataclass(eq=False)
class State:
    """The training loop's state, shared with every callback and method.

    Methods change training by changing this: `train_data` (read at every epoch start and batch),
    `batch` after the data loader (a new `Batch`, e.g. `state.batch.replace(inputs=...)`), `loss`
    after the loss,
    `schedule` (a learning-rate multiplier as a function of progress), `eval_model` (e.g. an EMA
    copy), `step_tag` (marks a step whose work differs for the same batch shape, so that FLOPs are
    counted for it separately), and `model_version` (bump it after changing the model's structure
    or which parameters train). A callback sets `stop_requested` to end the run after the current
    step, with a checkpoint, as an interruption (`StopReason.REQUESTED`).
    """

    model: nn.Module
    train_data: Loader
    optimizer: torch.optim.Optimizer
    optimizer_factory: OptimizerFactory | None
    loss_fn: LossFn
    budget: Amount
    schedule: Schedule
    device: torch.device
    seed: int
    generator: torch.Generator
    clock: Clock = field(default_factory=Clock)
    flops: FlopMeter = field(default_factory=FlopMeter)
    curve: list[CurvePoint] = field(default_factory=list)
    batch: Batch | None = None
    outputs: Any = None
    loss: torch.Tensor | None = None
    eval_model: nn.Module | None = None
    step_tag: str = ""
    model_version: int = 0
    stop_requested: bool = False
    forward: Forward = forward_inputs

    @property
    def progress(self) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        return self.clock.progress(self.budget)

    def counted(self, kind: Hashable, work: Callable[[], T]) -> T:
        """Run extra `work` outside the step's own counting (a proxy step, a scoring forward) and charge
        it: its FLOPs (counted the first time this `kind` of work runs) and one extra step (so that the
        reference cost charges its per-step overhead too; its time is on the clock anyway)."""
        with self.flops.count(kind):
            result = work()
        self.clock.flops += self.flops.charge(kind)
        self.clock.extra_steps += 1
        return result

    def rebuild_optimizer(self) -> None:
        """Build a fresh optimizer over the model's trainable parameters (after model surgery)."""
        if self.optimizer_factory is None:
            raise TypeError("this trainer was given an optimizer instance; pass a factory instead")
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_factory(params)
