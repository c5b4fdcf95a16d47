"""What the sequence methods share: finding the transformer interface they act on, and the length ramp
that their schedules (context, attention window, kept tokens, batch size) follow over progress."""

from __future__ import annotations

import math

from torch import nn

from algospeed.errors import UsageError
from algospeed.workloads.gpt import SequenceAttention, SequenceBlock, SequenceModel


def sequence_model(model: nn.Module, method: str) -> SequenceModel:
    """`model` as the documented transformer interface (`algospeed.workloads.gpt`); a model that does not
    expose it is a usage error naming `method`, raised before anything trains."""
    if not isinstance(model, SequenceModel) or not all(isinstance(block, SequenceBlock) for block in model.blocks):
        raise UsageError(
            f"method {method!r} acts on a transformer exposing embedding, positions, blocks (each with attention "
            f"and mlp), norm and head, as algospeed.workloads.gpt documents; {type(model).__name__} does not"
        )
    return model


def attentions(model: SequenceModel, method: str) -> list[SequenceAttention]:
    """Every block's attention, each offering the `window`, `score_bias` and `qk_transform` hooks."""
    found = [block.attention for block in model.blocks]
    if not all(isinstance(attention, SequenceAttention) for attention in found):
        raise UsageError(f"method {method!r} sets attention hooks, and some block's attention offers none")
    return found  # type: ignore[return-value]


def ramp_fraction(progress: float, start: float, ramp_end: float) -> float:
    """`start` growing linearly to 1 at progress `ramp_end`, then 1."""
    done = 1.0 if ramp_end <= 0 else min(1.0, max(0.0, progress) / ramp_end)
    return start + (1.0 - start) * done


def ramped_length(full: int, progress: float, start: float, ramp_end: float, multiple: int) -> int:
    """`full * ramp_fraction(...)` rounded down to a multiple of `multiple` (at least `multiple`, at most
    `full`), so that a schedule passes through few distinct lengths (each a new shape to count)."""
    fraction = ramp_fraction(progress, start, ramp_end)
    if fraction >= 1.0:
        return full
    length = math.floor(full * fraction + 1e-9) // multiple * multiple
    return min(full, max(length, multiple))


def check_ramp(start: float, ramp_end: float, multiple: int, what: str) -> None:
    """ValueErrors for a ramp that cannot work (`what` names the start setting)."""
    if not 0.0 < start <= 1.0:
        raise ValueError(f"{what} must be in (0, 1], got {start}")
    if not 0.0 <= ramp_end <= 1.0:
        raise ValueError(f"ramp_end must be a fraction of the budget in [0, 1], got {ramp_end}")
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, got {multiple}")


class BlockWrapper(nn.Module):
    """A block of `model.blocks` wrapped by a method; it still offers the block's `attention` and `mlp`, so
    that other methods find the interface through it."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.block = block
        self.training = block.training

    @property
    def attention(self) -> nn.Module:
        return self.block.attention

    @property
    def mlp(self) -> nn.Module:
        return self.block.mlp


def wrap_blocks(model: SequenceModel, indices: range | list[int], wrap: type[BlockWrapper]) -> list[BlockWrapper]:
    """Replace `model.blocks[i]` for each of `indices` by `wrap(block)` in place (a block already so wrapped
    is kept); returns the wrappers in depth order."""
    wrappers = []
    for index in indices:
        block = model.blocks[index]
        if not isinstance(block, wrap):
            block = wrap(block)
            model.blocks[index] = block
        wrappers.append(block)
    return wrappers
