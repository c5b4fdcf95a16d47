"""Progressive growing (stacking): train a shallow network first and deepen it by copying blocks."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import is_residual_block
from algospeed.taxonomy.axes import How, Place, What, When, Where

Slot = tuple[str, int]  # (name of an nn.Sequential in the model, index of a block in it)


class Dormant(nn.Identity):
    """Stands in for a block that has not been grown yet (the identity: the block's input shape is its output's)."""


def is_shape_preserving_block(module: nn.Module) -> bool:
    """A residual block whose shortcut is the identity, so that it can be removed or repeated without changing
    any shape."""
    return is_residual_block(module) and isinstance(module.shortcut, nn.Identity)


def growth_slots(model: nn.Module) -> list[Slot]:
    """The blocks progressive growing removes, in the order it grows them back.

    Within every nn.Sequential, a run of consecutive shape-preserving blocks keeps its first block; the
    others are slots. They are ordered round-robin across runs (every run's second block, then every run's
    third, ...), so that all stages deepen together.
    """
    runs: list[list[Slot]] = []
    for name, sequential in model.named_modules():
        if not isinstance(sequential, nn.Sequential):
            continue
        run: list[Slot] = []
        for index, child in enumerate(sequential):
            if is_shape_preserving_block(child) or isinstance(child, Dormant):
                run.append((name, index))
                continue
            runs.append(run)
            run = []
        runs.append(run)
    runs = [run for run in runs if len(run) > 1]
    longest = max((len(run) for run in runs), default=0)
    return [run[level] for level in range(1, longest) for run in runs if level < len(run)]


def shrink(model: nn.Module, slots: list[Slot]) -> None:
    """Replace the blocks at `slots` by `Dormant` placeholders, in place."""
    for name, index in slots:
        model.get_submodule(name)[index] = Dormant()


def grow(model: nn.Module, slot: Slot) -> nn.Module:
    """Put back the block at `slot` as a copy (weights, buffers, training mode) of the block before it
    (stacking); returns the new block."""
    name, index = slot
    sequential = model.get_submodule(name)
    previous = sequential[index - 1]
    if isinstance(previous, Dormant):
        raise ValueError(f"the block before {name}[{index}] has not been grown yet")
    block = copy.deepcopy(previous)
    sequential[index] = block
    return block


def growth_times(slots: int, grow_end: float) -> list[float]:
    """The progress at which each slot is grown: evenly spaced, the last at `grow_end`."""
    return [grow_end * (j + 1) / slots for j in range(slots)]


def rebuild_keeping_state(state: State) -> None:
    """Rebuild the optimizer over the model's trainable parameters, carrying over the state (momentum, Adam
    moments) of every parameter the old one held; new parameters start with none."""
    old = state.optimizer
    state.rebuild_optimizer()
    for param, saved in old.state.items():
        state.optimizer.state[param] = saved


@register("progressive_growing")
class ProgressiveGrowing(Method):
    """Progressive growing (stacking): start shallow and deepen the network by copying residual blocks.

    Place: model, remove (blocks, early in training); cheaper steps; scheduled. At init, in every
    nn.Sequential, each run of consecutive shape-preserving residual blocks (identity shortcut) keeps
    its first block; the others are replaced by identity placeholders. As progress advances they
    come back one at a time, evenly spaced up to `grow_end`, round-robin across runs, each
    initialized as a copy of the block before it (its weights and batch-norm statistics). At each
    growth the optimizer is rebuilt over the new parameters, keeping the state of the old ones (the
    copies start with none), and the FLOPs are counted again. Models without such runs do not change.

    Helps: deep networks of repeated blocks (transformers, ResNets with several blocks per stage),
    where the early, shallow phase is cheaper and the stacked copies start from learnt weights
    (the paper: BERT trained about 25% faster by stacking).

    Hurts: shallow networks or stages of one block (nothing to remove); short budgets, where the deep
    network has too little time after the last growth; the evaluation before `grow_end` is of the
    shallow network. The embedded SmallResNet has one block per stage by default: use the mnist5k
    option blocks_per_stage (2 or more) to give it something to grow.

    Reference: Gong, He, Li, Qin, Wang, Liu, 2019, "Efficient Training of BERT by Progressively
    Stacking", ICML 2019 (copying lower layers on top); function-preserving deepening in Chen,
    Goodfellow, Shlens, 2016, "Net2Net: Accelerating Learning via Knowledge Transfer", ICLR 2016,
    arXiv:1511.05641.
    """

    place = Place(where=(Where.MODEL,), what=(What.REMOVE,), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    conflicts = frozenset({"stochastic_depth", "layer_freezing"})

    def __init__(self, grow_end: float = 0.5) -> None:
        if not 0.0 < grow_end <= 1.0:
            raise ValueError(f"grow_end must be in (0, 1], got {grow_end}")
        self.grow_end = grow_end
        self.slots: list[Slot] = []
        self.grown = 0
        self._state: State | None = None

    def on_init(self, state: State) -> None:
        self._state = state
        self.slots = growth_slots(state.model)
        if self.slots:
            shrink(state.model, self.slots)
            state.rebuild_optimizer()

    def on_after_dataloader(self, state: State) -> None:
        due = sum(1 for t in growth_times(len(self.slots), self.grow_end) if t <= state.progress)
        if due > self.grown:
            self._grow_to(state, due)
            state.model_version += 1  # a deeper network: count its FLOPs again

    def _grow_to(self, state: State, count: int) -> None:
        for slot in self.slots[self.grown : count]:
            grow(state.model, slot)
        self.grown = count
        rebuild_keeping_state(state)

    def state_dict(self) -> dict[str, Any]:
        return {"grown": self.grown}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        # after INIT (shallow model) and before the weights and optimizer state load: grow the same blocks so
        # that both fit; the weights the copies get here are overwritten by the saved ones
        grown = int(saved.get("grown", 0))
        if grown and self._state is not None:
            self._grow_to(self._state, grown)
