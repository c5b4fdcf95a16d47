"""Schedule-free training: no decaying learning-rate schedule; evaluation uses an online average of the iterates."""

from __future__ import annotations

from typing import Any, ClassVar

import schedulefree
import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    OPTIMIZER_METHODS,
    BaseOptimizer,
    check_beta,
    check_positive,
)
from algospeed.methods.shared.schedules import SCHEDULE_METHODS, WarmupConstant, check_fraction
from algospeed.taxonomy.axes import How, Place, What, When, Where


def schedule_free(
    params: Any,
    kind: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    beta2: float = 0.999,
    warmup_steps: int = 0,
) -> torch.optim.Optimizer:
    """The plain function: schedule-free SGD (`kind` "sgd") or AdamW ("adaptive" / "adamw") from the
    `schedulefree` package. Call `.train()` on it before training steps and `.eval()` before
    evaluating or saving the averaged weights."""
    if kind == "sgd":
        return schedulefree.SGDScheduleFree(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, warmup_steps=warmup_steps
        )
    if kind in ("adaptive", "adamw"):
        return schedulefree.AdamWScheduleFree(
            params, lr=lr, betas=(momentum, beta2), weight_decay=weight_decay, warmup_steps=warmup_steps
        )
    raise ValueError(f"schedule-free kind must be 'sgd' or 'adamw', got {kind!r}")


def in_train_mode(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a schedule-free optimizer's parameters hold the y (gradient) sequence."""
    return all(group["train_mode"] for group in optimizer.param_groups)


@register("schedule_free")
class ScheduleFreeMethod(Method):
    """Replace optimizer and schedule by schedule-free SGD or AdamW: a constant rate after warmup, averaged iterates.

    Place: optimization / replace (the optimizer and the learning-rate schedule) / fewer steps /
    throughout. The base optimizer's family picks SGDScheduleFree or AdamWScheduleFree; the
    learning rate is the base's times `lr_scale` (by default 20 over SGD, within the 10-50x the
    authors advise, since momentum SGD's effective rate is lr / (1 - momentum), and 5 over AdamW,
    within their 1-10x); the schedule becomes a linear warmup over the first `warmup` of the budget and then
    constant (equivalent to the package's own warmup, but a fraction of any budget). Evaluation
    sees the averaged weights x (the optimizer's eval mode), training the gradient point y; the
    swap back after evaluation restores y bit for bit, and checkpoints hold y with the optimizer
    state (z and the averaging weights), so a resumed run continues exactly. At the end of
    training the model is left holding the averaged weights. Batch-norm statistics are not
    recomputed at x (the authors recommend it for batch-norm models; here they come from y).

    Helps: no schedule to tune and no budget to fix in advance: the averaged iterate is good at
    any point of training, and in the reference it matches or beats cosine and linear-decay
    schedules across many problems (it won the AlgoPerf self-tuning track).

    Hurts: it is sensitive to momentum (beta1) and needs a larger learning rate than the base;
    batch-norm models evaluate with statistics gathered at y rather than x; the averaged
    weights must be swapped in for evaluation and out again (one copy of the weights).

    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled and Cutkosky, 2024, "The Road Less
    Scheduled", NeurIPS 2024, arXiv 2405.15682.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = (OPTIMIZER_METHODS - {"schedule_free"}) | SCHEDULE_METHODS | {"lookahead"}
    anytime = True
    changes_evaluation = True  # evaluates the averaged sequence x, not the raw weights
    DEFAULT_SCALE: ClassVar[dict[str, float]] = {"sgd": 20.0, "adaptive": 5.0}

    def __init__(
        self,
        lr_scale: float | None = None,
        warmup: float = 0.02,
        momentum: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float | None = None,
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_fraction("warmup", warmup, high_open=True)
        check_beta("momentum", momentum)
        if momentum == 0:
            raise ValueError("momentum must be in (0, 1) for schedule-free training, got 0")
        check_beta("beta2", beta2)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.warmup, self.momentum, self.beta2 = lr_scale, warmup, momentum, beta2
        self.weight_decay = weight_decay
        self._training_weights: list[torch.Tensor] | None = None

    def on_init(self, state: State) -> None:
        base = BaseOptimizer.of(state.optimizer)
        lr = base.scaled_lr(self.lr_scale, self.DEFAULT_SCALE)
        decay = base.weight_decay if self.weight_decay is None else self.weight_decay
        kind, momentum, beta2 = base.kind, self.momentum, self.beta2
        state.optimizer_factory = lambda params: schedule_free(params, kind, lr, decay, momentum, beta2)
        state.rebuild_optimizer()
        state.optimizer.train()
        state.schedule = WarmupConstant(self.warmup)

    def on_fit_start(self, state: State) -> None:
        state.optimizer.train()

    def on_before_optimizer_step(self, state: State) -> None:
        if not in_train_mode(state.optimizer):  # e.g. another method rebuilt the optimizer
            state.optimizer.train()

    @torch.no_grad()
    def on_eval_start(self, state: State) -> None:
        if in_train_mode(state.optimizer):
            self._training_weights = [p.detach().clone() for p in _parameters(state.optimizer)]
            state.optimizer.eval()

    @torch.no_grad()
    def on_eval_end(self, state: State) -> None:
        if self._training_weights is None:
            return
        state.optimizer.train()
        # train() recomputes y from x and z with rounding error; put back the exact y.
        for p, saved in zip(_parameters(state.optimizer), self._training_weights, strict=True):
            p.copy_(saved)
        self._training_weights = None

    def on_fit_end(self, state: State) -> None:
        state.optimizer.eval()  # the trained model is the averaged sequence x


def _parameters(optimizer: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in optimizer.param_groups for p in group["params"]]
