"""Sequence-length warmup: train on short crops of the token blocks early, growing them to the full context."""

from __future__ import annotations

import torch

from algospeed.core.batch import Batch
from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import check_ramp, ramped_length
from algospeed.taxonomy.axes import How, Place, What, When, Where


def crop_tokens(batch: Batch, length: int, generator: torch.Generator | None = None) -> Batch:
    """The batch's (N, T) inputs, targets and mask cropped to one window of `length` contiguous positions,
    the same for every row, at a random offset drawn from `generator` (so that every position of a block is
    trained on); the batch itself when it is no longer than `length`. Next-token targets stay aligned:
    `targets[:, i]` still follows `inputs[:, i]`."""
    full = batch.inputs.shape[1]
    if length >= full:
        return batch
    start = int(torch.randint(full - length + 1, (), generator=generator))
    window = slice(start, start + length)
    mask = None if batch.mask is None else batch.mask[:, window]
    return batch.replace(inputs=batch.inputs[:, window], targets=batch.targets[:, window], mask=mask)


def describe(inputs: object) -> str:
    """What a batch's inputs are, for an error."""
    if isinstance(inputs, torch.Tensor):
        return f"{inputs.dtype} inputs of shape {tuple(inputs.shape)}"
    return f"{type(inputs).__name__} inputs"


@register("sequence_length_warmup")
class SequenceLengthWarmup(Method):
    """Sequence-length warmup: train on short crops of the token blocks, growing them to the full context.

    Place: data (the inputs' form), shrink (the sequence length); both (cheaper early steps, and the
    paper's stabler training at large batches and rates); scheduled. At `after_dataloader` each batch of
    (N, T) token blocks is cropped to `length` contiguous positions at an offset drawn from the run's
    saved generator; `length` grows linearly from `initial_fraction * T` at the start to `T` at progress
    `ramp_end`, rounded down to a multiple of `multiple`. Tokens are charged as used (a cropped batch
    counts `N x length`), so a `tok` budget buys more steps while the context is short; evaluation sees
    the full context.

    Helps: transformers whose step cost grows with the context; early training, where most of what is
    learnt (the unigram and short-range statistics) needs no long context; large batches or learning
    rates that are unstable at the start.

    Hurts: tasks whose signal is long-range (the short phase cannot learn it); learned positions beyond
    the crop stay untrained until the context reaches them; a crop discards the rest of each block for
    that step, so fewer distinct tokens are seen per epoch.

    Reference: Conglong Li, Minjia Zhang and Yuxiong He, 2022, "The Stability-Efficiency Dilemma:
    Investigating Sequence Length Warmup for Training GPT Models", NeurIPS 2022, arXiv:2108.06084.
    """

    place = Place(where=(Where.DATA,), what=(What.SHRINK,), how=How.BOTH, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.TOKENS})
    search_space = {"initial_fraction": {"linear": [0.125, 0.5]}}  # noqa: RUF012 (read-only class data)

    def __init__(self, initial_fraction: float = 0.25, ramp_end: float = 0.5, multiple: int = 16) -> None:
        check_ramp(initial_fraction, ramp_end, multiple, "initial_fraction")
        self.initial_fraction = initial_fraction
        self.ramp_end = ramp_end
        self.multiple = multiple

    def length_at(self, full: int, progress: float) -> int:
        """The context trained on at `progress`, for blocks of `full` tokens."""
        return ramped_length(full, progress, self.initial_fraction, self.ramp_end, self.multiple)

    def on_after_dataloader(self, state: State) -> None:
        inputs = state.batch.inputs
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 2 or torch.is_floating_point(inputs):
            raise UsageError(f"method {self.key!r} crops (N, T) token ids; this batch holds {describe(inputs)}")
        length = self.length_at(inputs.shape[1], state.progress)
        state.batch = crop_tokens(state.batch, length, state.generator)
