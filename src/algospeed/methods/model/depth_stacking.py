"""Depth stacking (G_stack): train a shallow transformer first, then grow it to full depth by stacking
copies of its trained layers on top."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.model.progressive_growing import rebuild_keeping_state
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import sequence_model
from algospeed.taxonomy.axes import How, Place, What, When, Where


def shallow_depth(layers: int, factor: int) -> int:
    """The depth trained before growth: `layers / factor`, at least 1."""
    return max(1, layers // factor)


def truncate_blocks(model: nn.Module, depth: int) -> None:
    """Keep the first `depth` blocks of a sequence model, in place."""
    blocks = sequence_model(model, "depth_stacking").blocks
    del blocks[depth:]


def stack_blocks(model: nn.Module, layers: int) -> list[nn.Module]:
    """Grow a sequence model's blocks to `layers` by appending copies of its trained blocks, in order and
    repeatedly (G_stack: blocks 1..k, then copies of 1..k, ...); returns the new blocks."""
    blocks = sequence_model(model, "depth_stacking").blocks
    trained = list(blocks)
    new = [copy.deepcopy(trained[i % len(trained)]) for i in range(layers - len(trained))]
    blocks.extend(new)
    return new


@register("depth_stacking")
class DepthStacking(Method):
    """Depth stacking (G_stack): train a shallow model, then stack copies of its trained layers to full depth.

    Place: model, add and reuse (layers grown from trained ones); cheaper steps (the shallow phase);
    scheduled. At init the workload's transformer keeps its first `layers / factor` blocks. At progress
    `grow_at` its blocks are repeated in order until the original depth is reached (blocks 1..k, then
    copies of 1..k, as G_stack stacks the whole small model), each copy with the trained weights exactly;
    the optimizer is rebuilt over all parameters, the old ones keeping their state (moments, step counts)
    and the copies starting with none, and the FLOPs are counted again. Evaluation before `grow_at` is of
    the shallow model.

    Helps: deep transformers trained for long, where a shallow model learns the early, easy part of the
    loss at a fraction of the cost, and the stacked copies start the deep model from it (the paper:
    about 54% fewer tokens to the same loss at 7B).

    Hurts: shallow targets (4 layers grown from 2: a small saving and a loss spike at growth); short
    budgets, where the deep model has too little time after `grow_at`; conflicts with methods that wrap
    or count the blocks themselves (token dropping, layer dropping, progressive growing, layer freezing).

    Reference: Wenyu Du, Tongxu Luo, Zihan Qiu, Zeyu Huang, Yikang Shen, Reynold Cheng, Yike Guo and Jie
    Fu, 2024, "Stacking Your Transformers: A Closer Look at Model Growth for Efficient LLM Pre-Training",
    NeurIPS 2024, arXiv:2405.15319; earlier, Linyuan Gong et al., 2019, "Efficient Training of BERT by
    Progressively Stacking", ICML 2019.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD, What.REUSE), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"token_dropping", "progressive_layer_drop", "progressive_growing", "layer_freezing"})

    def __init__(self, factor: int = 2, grow_at: float = 0.3) -> None:
        if factor < 2:
            raise ValueError(f"factor (the growth in depth) must be at least 2, got {factor}")
        if not 0.0 < grow_at < 1.0:
            raise ValueError(f"grow_at must be a fraction of the budget in (0, 1), got {grow_at}")
        self.factor = factor
        self.grow_at = grow_at
        self.layers = 0
        self.grown = False
        self._state: State | None = None

    def on_init(self, state: State) -> None:
        self._state = state
        self.layers = len(sequence_model(state.model, self.key).blocks)
        depth = shallow_depth(self.layers, self.factor)
        if depth < self.layers:
            truncate_blocks(state.model, depth)
            state.rebuild_optimizer()

    def on_after_dataloader(self, state: State) -> None:
        if not self.grown and state.progress >= self.grow_at:
            self._grow(state)
            state.model_version += 1  # a deeper model: count its FLOPs again

    def _grow(self, state: State) -> None:
        stack_blocks(state.model, self.layers)
        rebuild_keeping_state(state)
        self.grown = True

    def state_dict(self) -> dict[str, Any]:
        return {"grown": self.grown}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        # after INIT (shallow model), before the weights and optimizer state load: grow, so that both fit
        if saved.get("grown") and self._state is not None:
            self._grow(self._state)
