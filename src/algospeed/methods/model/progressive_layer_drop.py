"""Progressive layer dropping (PLD): skip whole transformer layers in training, with a probability that
grows with progress and with depth."""

from __future__ import annotations

import math
from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import BlockWrapper, sequence_model, wrap_blocks
from algospeed.taxonomy.axes import How, Place, What, When, Where


def keep_probabilities(layers: int, progress: float, theta: float = 0.5, gamma: float = 10.0) -> list[float]:
    """PLD's keep probability of each of `layers` layers at `progress`: the global keep ratio
    `theta_t = (1 - theta) * exp(-gamma * progress) + theta` falls from 1 towards `theta`, and layer i of L
    (from 1) keeps with `1 - i / L * (1 - theta_t)`, so the deepest layer is dropped most often."""
    theta_t = (1.0 - theta) * math.exp(-gamma * progress) + theta
    return [1.0 - i / layers * (1.0 - theta_t) for i in range(1, layers + 1)]


class SkippableBlock(BlockWrapper):
    """A block that a training step may skip (`dropped`): the residual stream passes through unchanged."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__(block)
        self.dropped = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropped:
            return x
        return self.block(x)


def apply_layer_drop(model: torch.nn.Module) -> list[SkippableBlock]:
    """Wrap every block of a sequence model so that it can be skipped, in place."""
    seq = sequence_model(model, "progressive_layer_drop")
    return wrap_blocks(seq, range(len(seq.blocks)), SkippableBlock)  # type: ignore[return-value]


@register("progressive_layer_drop")
class ProgressiveLayerDrop(Method):
    """Progressive layer dropping: skip layers at random, more often later in training and deeper in.

    Place: model, remove (whole layers' forward and backward); cheaper steps; scheduled. At init every
    block is wrapped. Before each training step one draw per layer from the run's saved generator decides
    which layers are skipped: layer i of L keeps with probability `1 - i / L * (1 - theta_t)`, where the
    global keep ratio `theta_t = (1 - theta) * exp(-gamma * progress) + theta` starts at 1 and falls
    towards `theta` (DeepSpeed's schedule, with progress for its step count). A skipped layer passes the
    residual stream on unchanged; evaluation runs every layer. Each skip pattern is its own FLOP-counting
    kind, so cheaper steps are charged less.

    Helps: deep pre-norm transformers (the paper: BERT, 24 layers), where the identity shortcut makes a
    skipped layer harmless and most later steps skip several layers.

    Hurts: shallow models (each skipped layer is a large share of the capacity, and the variance is
    high); post-norm blocks (the paper needs its pre-norm "switchable" design); short budgets, where the
    run ends soon after the drop rate has grown.

    Reference: Minjia Zhang and Yuxiong He, 2020, "Accelerating Training of Transformer-Based Language
    Models with Progressive Layer Dropping", NeurIPS 2020, arXiv:2010.13369.
    """

    place = Place(where=(Where.MODEL,), what=(What.REMOVE,), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"depth_stacking"})

    def __init__(self, theta: float = 0.5, gamma: float = 10.0) -> None:
        if not 0.0 < theta <= 1.0:
            raise ValueError(f"theta (the keep ratio PLD tends to) must be in (0, 1], got {theta}")
        if not gamma >= 0.0 or math.isinf(gamma):
            raise ValueError(f"gamma (how fast the drop rate grows with progress) must be finite and >= 0, got {gamma}")
        self.theta = theta
        self.gamma = gamma
        self.layers: list[SkippableBlock] = []

    def on_init(self, state: State) -> None:
        self.layers = apply_layer_drop(state.model)

    def on_after_dataloader(self, state: State) -> None:
        keep = keep_probabilities(len(self.layers), state.progress, self.theta, self.gamma)
        draws = torch.rand(len(self.layers), generator=state.generator).tolist()
        for layer, draw, probability in zip(self.layers, draws, keep, strict=True):
            layer.dropped = draw >= probability
        if any(layer.dropped for layer in self.layers):
            state.step_tag += "|pld:" + "".join("1" if layer.dropped else "0" for layer in self.layers)

    def on_batch_end(self, state: State) -> None:
        for layer in self.layers:
            layer.dropped = False

    def state_dict(self) -> dict[str, Any]:
        return {}  # the draws come from state.generator, which the checkpoint saves
