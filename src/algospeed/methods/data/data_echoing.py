"""Data echoing: train on each loaded batch several times, so the data pipeline does less work per step."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from algospeed.core.batch import Batch
from algospeed.core.callback import Method
from algospeed.core.data import Loader
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

REAUGMENTATIONS = ("none", "shift", "flip")


class EchoPosition:
    """Where an `EchoingLoader` stands: the next batch's epoch and echoed offset, the inner offset,
    repeat and length of the inner batch it repeats, and the repeat index of the batch last yielded."""

    def __init__(self) -> None:
        self.epoch = -1
        self.start = -1
        self.inner_start = 0
        self.repeat = 0
        self.length = 0
        self.current = 0

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "start": self.start,
            "inner_start": self.inner_start,
            "repeat": self.repeat,
            "length": self.length,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.start = int(state["epoch"]), int(state["start"])
        self.inner_start, self.repeat, self.length = (
            int(state["inner_start"]),
            int(state["repeat"]),
            int(state["length"]),
        )


class EchoingLoader:
    """Wraps a `Loader` so that each batch it loads is yielded `factor` times in a row.

    An echoed epoch holds `factor` times the samples of the inner one (the same inner epoch,
    each batch repeated), and `iter_epoch(epoch, start)` resumes at any echoed offset: the inner
    loader restarts at the batch holding it (reloaded at the size it had) and skips the repeats
    already done. With a fixed batch size the offset alone locates it; where the batch size
    changed mid-epoch, the position recorded in `position` (saved by the method) does.
    """

    def __init__(self, inner: Loader, factor: int, position: EchoPosition | None = None) -> None:
        if factor < 1:
            raise ValueError(f"the echo factor must be at least 1, got {factor}")
        self.inner = inner
        self.factor = factor
        self.position = position or EchoPosition()

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.inner.batch_size = value

    @property
    def drop_last(self) -> bool:
        return self.inner.drop_last

    def __len__(self) -> int:
        return self.factor * len(self.inner)

    def with_inner(self, inner: Loader) -> EchoingLoader:
        """The same echoing over another inner loader (a subset chosen by another method)."""
        return EchoingLoader(inner, self.factor, self.position)

    def locate(self, epoch: int, start: int) -> tuple[int, int, int]:
        """(inner offset, repeat, inner batch length) of the echoed batch at offset `start` of `epoch`."""
        if start == 0:
            return 0, 0, self.inner.batch_size
        position = self.position
        if (position.epoch, position.start) == (epoch, start):
            return position.inner_start, position.repeat, position.length
        size, batch = len(self.inner), self.inner.batch_size
        index, rest = divmod(start, batch * self.factor)
        inner_start = index * batch
        length = batch if inner_start + batch <= size else size - inner_start
        if length <= 0 or rest % length:
            raise ValueError(f"offset {start} of epoch {epoch} is not the start of an echoed batch")
        return inner_start, rest // length, length

    def _load_one(self, epoch: int, inner_start: int, length: int) -> Batch:
        """The inner batch of `length` samples at `inner_start`, whatever the batch size is now."""
        current = self.inner.batch_size
        self.inner.batch_size = length
        try:
            return next(iter(self.inner.iter_epoch(epoch, inner_start)))
        finally:
            self.inner.batch_size = current

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        inner_start, repeat, length = self.locate(epoch, start)
        offset = start
        if repeat > 0:  # resuming inside the repeats of a batch: reload exactly that batch first
            batch = self._load_one(epoch, inner_start, length)
            offset = yield from self._repeat(batch, epoch, inner_start, repeat, offset)
            inner_start += batch.samples
        for batch in self.inner.iter_epoch(epoch, inner_start):
            offset = yield from self._repeat(batch, epoch, inner_start, 0, offset)
            inner_start += batch.samples

    def _repeat(self, batch: Batch, epoch: int, inner_start: int, first: int, offset: int) -> Iterator[Batch]:
        """Yield `batch` for repeats `first`..factor-1, recording after each where the next one starts;
        returns the echoed offset reached."""
        length, position = batch.samples, self.position
        for index in range(first, self.factor):
            offset += length
            last = index + 1 == self.factor
            position.epoch, position.start, position.current = epoch, offset, index
            position.inner_start = inner_start + length if last else inner_start
            position.repeat = 0 if last else index + 1
            position.length = length
            yield batch
        return offset


def shift_batch(inputs: torch.Tensor, max_shift: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate each sample of (N, C, *spatial) by a random whole offset in [-max_shift, max_shift]
    along every spatial axis, filling with zeros."""
    if max_shift <= 0:
        return inputs
    shifted = inputs
    for axis in range(2, inputs.dim()):
        side = inputs.shape[axis]
        offsets = torch.randint(0, 2 * max_shift + 1, (len(inputs),), generator=generator).to(inputs.device)
        padding = [0, 0] * (inputs.dim() - 1 - axis) + [max_shift, max_shift]
        padded = F.pad(shifted, padding)
        shape = [1] * inputs.dim()
        shape[axis] = side
        index = offsets.view(-1, *([1] * (inputs.dim() - 1))) + torch.arange(side, device=inputs.device).view(shape)
        target_shape = list(padded.shape)
        target_shape[axis] = side
        shifted = padded.gather(axis, index.expand(target_shape))
    return shifted


def flip_batch(inputs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reverse the last axis (a horizontal flip) of a random half of the samples."""
    flip = (torch.rand(len(inputs), generator=generator) < 0.5).to(inputs.device)
    return torch.where(flip.view(-1, *([1] * (inputs.dim() - 1))), inputs.flip(-1), inputs)


def reaugment(inputs: torch.Tensor, kind: str, max_shift: int = 1, generator: torch.Generator | None = None) -> Any:
    """Apply the cheap re-augmentation `kind` (none, shift or flip) to an echoed batch."""
    if kind == "shift":
        return shift_batch(inputs, max_shift, generator)
    if kind == "flip":
        return flip_batch(inputs, generator)
    if kind == "none":
        return inputs
    raise ValueError(f"reaugment must be one of {', '.join(REAUGMENTATIONS)}, got {kind!r}")


@register("data_echoing")
class DataEchoing(Method):
    """Train on each loaded batch `factor` times in a row, so the input pipeline loads fewer batches.

    Place: data (the loading), reuse (each loaded batch several times), cheaper steps (less data
    work per step), throughout. At init `state.train_data` is wrapped in an `EchoingLoader`: an
    echoed epoch is `factor` times as long as the inner one (each inner batch repeated), and it
    resumes exactly at any offset. With `reaugment=shift` (a random translation of up to
    `max_shift` pixels or samples per axis, zero-filled) or `reaugment=flip` (a random horizontal
    flip), the repeats (not the first use) are re-augmented from `state.generator`, which
    approximates echoing before augmentation. Budgets in epochs count echoed epochs, so an `ep`
    budget trains `factor` times the steps on the same data; compare with budgets in steps,
    samples, seconds or FLOPs, where the pipeline loads 1/factor as many batches.

    Helps: input-bound training (slow decoding, augmentation or storage) with an idle accelerator:
    the repeats are nearly free, and up to a modest factor they are nearly as useful as new data.

    Hurts: compute-bound training (the repeats cost a full step each but teach less than fresh
    data); large factors, where the repeated batches overfit; small datasets that already fit.

    Reference: Dami Choi, Alexandre Passos, Christopher J. Shallue and George E. Dahl, 2019, "Faster
    Neural Network Training with Data Echoing", arXiv:1907.05550 (this is their batch echoing).
    """

    place = Place(where=(Where.DATA,), what=(What.REUSE,), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self, factor: int = 2, reaugment: str = "none", max_shift: int = 1) -> None:
        if factor < 1:
            raise ValueError(f"factor (how many times each batch is used) must be at least 1, got {factor}")
        if reaugment not in REAUGMENTATIONS:
            raise ValueError(f"reaugment must be one of {', '.join(REAUGMENTATIONS)}, got {reaugment!r}")
        if max_shift < 0:
            raise ValueError(f"max_shift must be non-negative, got {max_shift}")
        self.factor = factor
        self.reaugment = reaugment
        self.max_shift = max_shift
        self.position = EchoPosition()

    def on_init(self, state: State) -> None:
        state.train_data = EchoingLoader(state.train_data, self.factor, self.position)

    def on_after_dataloader(self, state: State) -> None:
        if self.reaugment == "none" or self.position.current == 0:
            return
        inputs = reaugment(state.batch.inputs, self.reaugment, self.max_shift, state.generator)
        state.batch = state.batch.replace(inputs=inputs)

    def state_dict(self) -> dict[str, Any]:
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.position.load_state_dict(state)
