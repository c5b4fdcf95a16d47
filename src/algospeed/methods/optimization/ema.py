"""An exponential moving average of the weights, evaluated instead of the raw weights."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def averaged_copy(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` to hold an average of its weights (it takes no gradients)."""
    average = copy.deepcopy(model)
    for parameter in average.parameters():
        parameter.requires_grad_(False)
    return average


@torch.no_grad()
def ema_update(average: nn.Module, model: nn.Module, decay: float) -> None:
    """`average <- decay * average + (1 - decay) * model`, for parameters and floating-point buffers
    (batch-norm statistics) alike; integer buffers (batch counts) are copied."""
    sources = model.state_dict(keep_vars=True)
    targets = average.state_dict(keep_vars=True)
    if sources.keys() != targets.keys():
        raise ValueError("the averaged model and the model have different structures")
    floating = [key for key, value in targets.items() if torch.is_floating_point(value)]
    if floating:
        torch._foreach_lerp_([targets[k].data for k in floating], [sources[k].data for k in floating], 1.0 - decay)
    for key, value in targets.items():
        if not torch.is_floating_point(value):
            value.data.copy_(sources[key].data)


def half_life_decay(progress_step: float, half_life: float) -> float:
    """The per-step decay that halves an old weight's share after `half_life` of progress, for a
    step that advanced progress by `progress_step`."""
    return 0.5 ** (max(progress_step, 0.0) / half_life)


@register("ema")
class EMA(Method):
    """Keep an exponential moving average of the weights and evaluate it instead of the raw weights.

    Place: optimization, reuse (the weights already visited), fewer steps, throughout. After every
    optimizer step (at `batch_end`) the copy moves towards the model: `ema <- d * ema + (1 - d) * w`,
    for parameters and batch-norm statistics alike. Evaluation uses the copy (`state.eval_model`).
    `decay` is per step; with `half_life` > 0 (a fraction of the budget) the per-step decay is instead
    `0.5 ** (progress advanced by the step / half_life)`, so the averaging window is the same share
    of any budget, a wall-clock one included.

    Helps: noisy late training (high learning rate, small batches): the average reaches a given
    quality earlier than the raw weights, much as a learning-rate decay would, at the cost of one
    model copy and an elementwise update per step.

    Hurts: runs whose schedule already decays fully (the benefit shrinks); a window too long for the
    budget (the average lags behind, most visibly in very short runs); models too large to hold twice.
    It conflicts with SWA and with schedule-free training, which choose the evaluated weights too.

    Reference: Boris T. Polyak and Anatoli B. Juditsky, 1992, "Acceleration of Stochastic
    Approximation by Averaging", SIAM Journal on Control and Optimization 30(4) (averaging iterates);
    Antti Tarvainen and Harri Valpola, 2017, "Mean teachers are better role models", NeurIPS 2017,
    arXiv:1703.01780 (an EMA of the weights); Daniel Morales-Brotons, Thijs Vogels and Hadrien
    Hendrikx, 2024, "Exponential Moving Average of Weights in Deep Learning: Dynamics and Benefits",
    TMLR 2024, arXiv:2411.18704.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REUSE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    search_space = {"decay": {"linear": [0.9, 0.995]}}  # noqa: RUF012 (read-only class data, typed on Method)
    conflicts = frozenset({"swa", "schedule_free"})
    changes_evaluation = True  # evaluates the EMA copy, not the raw weights

    def __init__(self, decay: float = 0.99, half_life: float = 0.0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        if not 0.0 <= half_life <= 1.0:
            raise ValueError(f"half_life is a fraction of the budget in (0, 1], or 0 to use decay; got {half_life}")
        self.decay = decay
        self.half_life = half_life
        self.average: nn.Module | None = None
        self.last_progress = 0.0
        self._pending: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, state: State) -> None:
        # The copy is taken here, after every method's model surgery at init and after a resume has
        # loaded the model, so it has the model's final structure; saved averages are loaded into it.
        if self.average is None:
            self.average = averaged_copy(state.model)
        if self._pending is not None:
            self.average.load_state_dict(self._pending)
            self._pending = None
        state.eval_model = self.average

    def on_batch_end(self, state: State) -> None:
        assert self.average is not None
        progress = state.progress
        decay = self.decay if self.half_life == 0.0 else half_life_decay(progress - self.last_progress, self.half_life)
        ema_update(self.average, state.model, decay)
        self.last_progress = progress

    def state_dict(self) -> dict[str, Any]:
        if self.average is None and self._pending is None:
            return {}
        weights = self._pending if self.average is None else self.average.state_dict()
        return {"weights": weights, "last_progress": self.last_progress}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self._pending = dict(state["weights"])
        self.last_progress = float(state["last_progress"])
        if self.average is not None:
            self.average.load_state_dict(self._pending)
            self._pending = None
