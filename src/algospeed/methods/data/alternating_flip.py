"""Alternating flip: each image is flipped in every other epoch, a random half of them in the first."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import torch

from algospeed.core.batch import Batch
from algospeed.core.callback import Method
from algospeed.core.data import DatasetLoader, InMemoryLoader, Loader, epoch_permutation
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.scoring import base_loader, rebase
from algospeed.taxonomy.axes import How, Place, What, When, Where

SAMPLE_INDEX = "sample_index"  # the batch extra holding each row's index in the loader's samples
FIRST_FLIP_STREAM = 7_919_000_003  # seeds the first epoch's half apart from the epoch orders (seed * 1_000_003 + epoch)


def sample_order(loader: Loader, epoch: int) -> torch.Tensor:
    """The sample indices of `epoch` in the order the loader yields them: the seeded permutation its
    in-memory or dataset loader draws from (seed, epoch), or 0..n-1 unshuffled."""
    if not isinstance(loader, (InMemoryLoader, DatasetLoader)):
        raise UsageError(
            f"alternating_flip needs to know which samples a batch holds, which a {type(loader).__name__} "
            "does not say; use an in-memory or dataset loader"
        )
    if loader.shuffle:
        return epoch_permutation(len(loader), loader.seed, epoch)
    return torch.arange(len(loader))


class IndexedLoader:
    """Wraps a loader so that every batch carries its rows' sample indices in `extras[SAMPLE_INDEX]`.

    The indices of the batch at offset `start` of `epoch` are the loader's own order there, so they are
    a function of (seed, epoch, offset), and a resumed epoch gets the same ones. It exposes `inner` and
    `with_inner`, so methods that replace the samples (data pruning) reach the loader underneath.
    """

    def __init__(self, inner: Loader) -> None:
        self.inner = inner

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
        return len(self.inner)

    def with_inner(self, inner: Loader) -> IndexedLoader:
        return IndexedLoader(inner)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        order = sample_order(self.inner, epoch)
        for batch in self.inner.iter_epoch(epoch, start):
            index = order[start : start + batch.samples]
            start += batch.samples
            yield batch.replace(extras={**batch.extras, SAMPLE_INDEX: index})


@lru_cache(maxsize=8)
def first_epoch_flips(size: int, seed: int) -> torch.Tensor:
    """Which of `size` samples are flipped in epoch 0: exactly half (rounded down), drawn from `seed` (cached:
    every batch reads it; callers must not change it)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + FIRST_FLIP_STREAM)
    flips = torch.zeros(size, dtype=torch.bool)
    flips[torch.randperm(size, generator=generator)[: size // 2]] = True
    return flips


def flipped(index: torch.Tensor, epoch: int, size: int, seed: int) -> torch.Tensor:
    """Whether the samples `index` (of `size`) are flipped in `epoch`: their epoch-0 choice, inverted in odd
    epochs, so each sample alternates and any two consecutive epochs show it once each way."""
    first = first_epoch_flips(size, seed)[index.cpu()]
    return first ^ bool(epoch % 2)


def alternating_flip_batch(inputs: torch.Tensor, index: torch.Tensor, epoch: int, size: int, seed: int) -> torch.Tensor:
    """The batch with the rows that `flipped` says mirrored left to right (the last axis reversed)."""
    mask = flipped(index, epoch, size, seed).to(inputs.device)
    return torch.where(mask.view(-1, *([1] * (inputs.dim() - 1))), inputs.flip(-1), inputs)


@register("alternating_flip")
class AlternatingFlip(Method):
    """Derandomized horizontal flips: each image is flipped in every other epoch, a random half in the first.

    Place: data (the inputs), add (flip augmentation), fewer steps, throughout. At init the loader under
    any wrappers is wrapped in an `IndexedLoader`, which puts each row's sample index into the batch's
    extras (`sample_index`), computed from the loader's seeded order (an in-memory or dataset loader;
    any other is a `UsageError`). At `after_dataloader` sample i is mirrored in epoch e when f(i) xor
    (e odd), where f is exactly half of the samples drawn from the run's seed: a function of (seed,
    sample index, epoch) only, so nothing is saved and a resumed run flips the same images. Unlike
    random flipping, any two consecutive epochs show each image both ways. `after_dataloader` handlers run
    in reverse list order: list it last to flip before other augmentations, as airbench does. Sample
    indices are positions in the loader's current samples (after data pruning, in the kept subset).

    Helps: image classifiers whose labels are mirror-invariant, trained for a few epochs: the flip
    augmentation's diversity without its repeats (the reference finds it better than random flipping
    wherever flipping helps at all).

    Hurts: data whose meaning changes when mirrored (text, digits such as 2 and 5 in some fonts,
    asymmetric medical images); a single epoch (it is random flipping of half); loaders that cannot
    say which samples a batch holds (refused).

    Reference: Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    arXiv:2404.00498 (alternating flip, its contribution).
    """

    place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES})

    def on_init(self, state: State) -> None:
        base = base_loader(state.train_data)
        sample_order(base, 0)  # refuse a loader that cannot say which samples a batch holds, before training
        state.train_data = rebase(state.train_data, IndexedLoader(base))

    def on_after_dataloader(self, state: State) -> None:
        batch = state.batch
        if SAMPLE_INDEX not in batch.extras:
            raise UsageError("alternating_flip: the batch has no sample indices (another method replaced the loader)")
        size = len(base_loader(state.train_data))
        inputs = alternating_flip_batch(batch.inputs, batch.extras[SAMPLE_INDEX], state.clock.epoch, size, state.seed)
        state.batch = batch.replace(inputs=inputs)
