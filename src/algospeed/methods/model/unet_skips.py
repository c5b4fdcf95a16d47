"""U-net skips: the first half of the blocks hands its outputs, with learned weights, to the mirrored blocks
of the second half."""

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
from algospeed.methods.shared.transformer import retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where


class UNetSkips(nn.Module):
    """The skip weights (one per pair, 1 at first, as in the speedrun) and the outputs of the current forward.

    Pair i joins block i (its output is kept) and block L - 1 - i (w_i x that output is added to its input),
    for i < L // 2; with an odd L the middle block has no pair. The kept outputs live for one forward of
    the model: a forward pre-hook on the model clears them, and a forward hook drops them after it."""

    def __init__(self, pairs: int) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(pairs))
        self.kept: dict[int, torch.Tensor] = {}

    def clear(self, *hook_args: Any) -> None:
        self.kept = {}


class KeepOutput:
    """Forward hook of encoder block `pair`: keeps its output."""

    def __init__(self, skips: UNetSkips, pair: int) -> None:
        self.skips, self.pair = skips, pair

    def __call__(self, block: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> None:
        self.skips.kept[self.pair] = output


class AddSkip:
    """Forward pre-hook of decoder block `pair`: adds the weighted output its encoder block kept (nothing
    when that block did not run, as a dropped layer does not)."""

    def __init__(self, skips: UNetSkips, pair: int) -> None:
        self.skips, self.pair = skips, pair

    def __call__(self, block: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        kept = self.skips.kept.get(self.pair)
        if kept is None:
            return None
        return (args[0] + self.skips.weights[self.pair] * kept, *args[1:])


def apply_unet_skips(model: nn.Module) -> UNetSkips:
    """In place: add `model.unet_skips` and the hooks on `model.blocks` that carry block i's output to the
    input of block L - 1 - i, weighted; returns the skips."""
    seq = sequence_model(model, "unet_skips")
    layers = len(seq.blocks)
    if layers < 2:
        raise UsageError(
            f"method 'unet_skips' pairs the first half of the blocks with the second, and the model has {layers}"
        )
    skips = UNetSkips(layers // 2)
    model.unet_skips = skips
    model.register_forward_pre_hook(skips.clear)
    model.register_forward_hook(skips.clear)
    for pair in range(layers // 2):
        seq.blocks[pair].register_forward_hook(KeepOutput(skips, pair))
        seq.blocks[layers - 1 - pair].register_forward_pre_hook(AddSkip(skips, pair))
    return skips


@register("unet_skips")
class UNetSkipConnections(Method):
    """U-net skip connections: block i's output is added, weighted, to the input of block L - 1 - i.

    Place: model, add (long skip connections with a learned weight each); fewer steps (a short gradient path
    from the loss to the early layers, and late layers that reuse early features); throughout. At init the
    model gets `unet_skips` (L // 2 weights, 1 at first) and hooks on its blocks: the first L // 2 blocks keep
    their outputs, and each block of the second half adds its mirror's kept output times its weight to its
    input, as the NanoGPT speedrun's U-net pattern does. Hooks act on `model.blocks` only, so any model with
    the documented interface opts in.

    Helps: deeper language models: the NanoGPT speedrun's record 11 (U-net skips with a doubled learning
    rate) went from 7.8 to 7.2 minutes, and later records kept the pattern.

    Hurts: shallow models (4 layers: two skips, little path to shorten); methods that change which tokens a
    block sees (token dropping: refused) or copy blocks (depth stacking: refused); a dropped encoder block
    passes no skip that step.

    Reference: Brendan Hogan Rappazzo, 2024, "NanoGPT speedrun record 11: U-net and 2x learning rate",
    modded-nanogpt, https://github.com/KellerJordan/modded-nanogpt/tree/master/records/111024_UNetDoubleLr.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"token_dropping", "depth_stacking"})

    def on_init(self, state: State) -> None:
        apply_unet_skips(state.model)
        retrain_changed_model(state)
