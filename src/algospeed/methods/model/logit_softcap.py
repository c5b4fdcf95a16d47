"""Logit soft-capping: cap x tanh(logits / cap) on the model's output, so no logit exceeds the cap."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import sequence_model
from algospeed.taxonomy.axes import How, Place, What, When, Where


def softcap(logits: torch.Tensor, cap: float) -> torch.Tensor:
    """cap x tanh(logits / cap): about the identity for small logits, bounded by +-cap."""
    return cap * torch.tanh(logits / cap)


class SoftCap:
    """A forward hook on `model.head` that soft-caps its output (a hook, so the head stays the `nn.Linear`
    whose weight a tied or untied head shares or not)."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return softcap(output, self.cap)


def apply_logit_softcap(model: nn.Module, cap: float = 30.0) -> None:
    """In place: the model's logits (its head's output) become cap x tanh(logits / cap)."""
    head = sequence_model(model, "logit_softcap").head
    if any(isinstance(hook, SoftCap) for hook in head._forward_hooks.values()):
        raise UsageError("method 'logit_softcap': the model's head is soft-capped already")
    head.register_forward_hook(SoftCap(cap))


@register("logit_softcap")
class LogitSoftcap(Method):
    """Logit soft-capping: the head's logits pass through cap x tanh(logits / cap).

    Place: model, add (a bounded squashing of the output logits); fewer steps (over-confident logits
    stop dominating the gradient, which lets training run hotter); throughout. At init a forward hook on
    `model.head` caps its output smoothly at +-`cap` (30, Gemma 2's final-logit cap and the NanoGPT
    speedrun's first); evaluation sees the capped logits too, so the reported loss is the trained one.

    Helps: language models with large vocabularies and high learning rates, whose output logits grow; the
    speedrun took it with value and embedding skips for a 1.32x step.

    Hurts: a cap below the logits the task needs (confident predictions are squashed and the loss
    floor rises); a small character vocabulary rarely reaches a cap of 30, so it changes little there.

    Reference: Gemma Team, Morgane Riviere, Shreya Pathak, et al., 2024, "Gemma 2: Improving Open Language
    Models at a Practical Size", arXiv:2408.00118.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})

    def __init__(self, cap: float = 30.0) -> None:
        if cap <= 0:
            raise ValueError(f"cap must be positive, got {cap}")
        self.cap = cap

    def on_init(self, state: State) -> None:
        apply_logit_softcap(state.model, self.cap)
