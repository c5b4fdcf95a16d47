"""Resumable data loaders: each epoch's order comes from (seed, epoch), and any position restarts.

Resuming a run never replays the loader: an epoch's permutation is recomputed from the seed and the
sampling restarts at the saved sample offset. Every loader yields `Batch`es.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from algospeed.core.batch import Batch


@runtime_checkable
class Loader(Protocol):
    """What the trainer needs of a training data source. A loader that cannot restart an epoch at an
    exact position sets `exact_resume = False` and says why in `resume_note`."""

    batch_size: int
    drop_last: bool

    def __len__(self) -> int:
        """Samples in one epoch."""
        ...

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """Batches of `epoch` starting at sample offset `start` (the batch size may change between batches)."""
        ...


def epoch_permutation(size: int, seed: int, epoch: int) -> torch.Tensor:
    """The deterministic order of `epoch`, independent of any global RNG."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(size, generator=generator)


def batch_bounds(size: int, start: int, batch_size: int, drop_last: bool) -> tuple[int, int] | None:
    """The [begin, end) of the next batch at offset `start`, or None when the epoch is over."""
    end = min(start + batch_size, size)
    if start >= size or (drop_last and end - start < batch_size):
        return None
    return start, end


class InMemoryLoader:
    """Whole-batch loading from tensors held on the device: no per-sample collate, no workers.

    Each epoch gathers the whole shuffled dataset once, so that every batch is a contiguous slice
    (a view, no copy); above `gather_limit` bytes it gathers batch by batch instead, to keep the
    extra memory to one batch. `mask` (optional, row-aligned) travels with the inputs.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        mask: torch.Tensor | None = None,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        gather_limit: int = 2**31,
        batch_type: type[Batch] = Batch,
    ) -> None:
        if len(inputs) != len(targets) or (mask is not None and len(mask) != len(inputs)):
            raise ValueError(f"inputs ({len(inputs)}), targets ({len(targets)}) and mask differ in length")
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.inputs = inputs.to(device)
        self.targets = targets.to(device)
        self.mask = None if mask is None else mask.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.batch_type = batch_type
        self.gather_whole_epoch = sum(t.nbytes for t in self._tensors()) <= gather_limit

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.inputs, self.targets) if self.mask is None else (self.inputs, self.targets, self.mask)

    def __len__(self) -> int:
        return len(self.inputs)

    def take(self, index: torch.Tensor) -> Batch:
        """The samples at `index`, as one batch."""
        index = index.to(self.inputs.device)
        return self.batch_type(*(tensor[index] for tensor in self._tensors()))

    def subset(self, indices: torch.Tensor, batch_size: int) -> InMemoryLoader:
        """A loader over the samples at `indices`, shuffled and batched like this one."""
        index = indices.to(self.inputs.device)
        return InMemoryLoader(
            self.inputs[index],
            self.targets[index],
            batch_size,
            mask=None if self.mask is None else self.mask[index],
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            seed=self.seed,
            device=self.inputs.device,
            batch_type=self.batch_type,
        )

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        size, tensors, order, make = len(self), self._tensors(), None, self.batch_type
        if self.shuffle:
            order = epoch_permutation(size, self.seed, epoch).to(self.inputs.device)
            if self.gather_whole_epoch:
                tensors, order = tuple(tensor[order] for tensor in tensors), None
        while (bounds := batch_bounds(size, start, self.batch_size, self.drop_last)) is not None:
            begin, start = bounds
            index = slice(begin, start) if order is None else order[begin:start]
            yield make(*(tensor[index] for tensor in tensors))


class _BatchSampler:
    """Yields index lists for the epoch and offset that `DatasetLoader` sets before each epoch.

    It holds its loader weakly: a reference cycle would leave persistent workers alive until a
    garbage collection, which then stalls on the workers' join timeout.
    """

    def __init__(self, loader: DatasetLoader) -> None:
        self.loader = weakref.proxy(loader)
        self.epoch = 0
        self.start = 0

    def __iter__(self) -> Iterator[list[int]]:
        loader = self.loader
        size = len(loader)
        order = epoch_permutation(size, loader.seed, self.epoch) if loader.shuffle else torch.arange(size)
        start = self.start
        while (bounds := batch_bounds(size, start, loader.batch_size, loader.drop_last)) is not None:
            begin, start = bounds
            yield order[begin:start].tolist()


class DatasetLoader:
    """Any map-style `torch.utils.data.Dataset` (CIFAR-10, an ImageFolder...), loaded by workers.

    The order is the same seeded permutation as `InMemoryLoader`, so resumption is exact. With
    workers, a batch-size change takes effect after the batches already prefetched. Whatever the
    collate function returns becomes a `Batch` (see `Batch.of`).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.num_workers, self.pin_memory, self.collate_fn = num_workers, pin_memory, collate_fn
        self._sampler = _BatchSampler(self)
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
            collate_fn=collate_fn,
        )

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def with_dataset(self, dataset: Dataset, batch_size: int | None = None, **changes: Any) -> DatasetLoader:
        """A loader like this one (order, workers, collate function) over another dataset."""
        settings = {
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "seed": self.seed,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "collate_fn": self.collate_fn,
            **changes,
        }
        return DatasetLoader(dataset, batch_size or self.batch_size, **settings)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self._sampler.epoch, self._sampler.start = epoch, start
        for data in self._loader:
            yield Batch.of(data)


class TorchLoader:
    """A plain `torch.utils.data.DataLoader`, iterated as it is.

    Used only where its sampler is one algospeed cannot re-seed (`as_loader` rebuilds plain random
    and sequential ones as an exact `DatasetLoader`). Each epoch calls the sampler's `set_epoch` where
    it has one; a resumed run skips the samples already trained on in a fresh iteration of the epoch,
    which is exact only if the sampler repeats its order for the same epoch.
    """

    exact_resume = False

    def __init__(self, loader: DataLoader) -> None:
        if loader.batch_size is None:
            raise TypeError("a DataLoader with a custom batch_sampler has no fixed batch size; pass a Loader instead")
        self.loader = loader
        self.batch_size = loader.batch_size
        self.drop_last = loader.drop_last
        sampler = loader.sampler
        self.resume_note = (
            f"its sampler ({type(sampler).__name__}) is not one algospeed can re-seed, so a resumed epoch "
            "skips the samples already seen in a fresh iteration; exact only if that sampler repeats its order"
        )

    def __len__(self) -> int:
        return len(self.loader.sampler)  # type: ignore[arg-type]

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        if self.batch_size != self.loader.batch_size:
            warnings.warn("a plain DataLoader's batch size cannot change during training", stacklevel=2)
        set_epoch = getattr(self.loader.sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        skipped = 0
        for data in self.loader:
            batch = Batch.of(data)
            if skipped < start:
                skipped += batch.samples
                continue
            yield batch


def as_loader(data: Any, batch_size: int | None = None, *, seed: int = 0, **options: Any) -> Loader:
    """Any training data the trainer accepts, as a `Loader`.

    A `Loader` passes as is; a map-style `Dataset` becomes a `DatasetLoader` (needs `batch_size`); a plain
    `DataLoader` over a map-style dataset with the default random or sequential sampler is rebuilt as a
    `DatasetLoader` with the same batch size, workers and collate function, in algospeed's seeded order,
    so that resumption is exact; any other `DataLoader` is iterated as is (`TorchLoader`).
    """
    if isinstance(data, Loader):
        return data
    if isinstance(data, DataLoader):
        if isinstance(data.dataset, IterableDataset):
            raise TypeError("an IterableDataset has no epoch length or order to resume; use a map-style Dataset")
        if _resamplable(data):
            return DatasetLoader(
                data.dataset,
                data.batch_size,  # type: ignore[arg-type]
                shuffle=isinstance(data.sampler, RandomSampler),
                drop_last=data.drop_last,
                seed=seed,
                num_workers=data.num_workers,
                pin_memory=data.pin_memory,
                collate_fn=data.collate_fn,
            )
        return TorchLoader(data)
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        if batch_size is None:
            raise TypeError("a Dataset needs a batch size: as_loader(dataset, batch_size)")
        return DatasetLoader(data, batch_size, seed=seed, **options)
    raise TypeError(
        "training data must be an algospeed Loader, a torch DataLoader or a map-style Dataset, "
        f"got {type(data).__name__}"
    )


def _resamplable(loader: DataLoader) -> bool:
    """Whether the loader's order is the default one of a random or sequential sampler (which algospeed
    replaces by its own seeded order without changing what the loader trains on)."""
    sampler = loader.sampler
    plain_batches = type(loader.batch_sampler) is BatchSampler and loader.batch_size is not None
    if isinstance(sampler, RandomSampler):
        return plain_batches and not sampler.replacement and sampler._num_samples is None
    return plain_batches and type(sampler) is SequentialSampler
