"""Resumable data loaders: each epoch's order comes from (seed, epoch), and any position restarts.

Resuming a run never replays the loader: an epoch's permutation is recomputed from the seed and the
sampling restarts at the saved sample offset.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset

Batch = tuple[Any, Any]


@runtime_checkable
class Loader(Protocol):
    """What the trainer needs of a training data source."""

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
    extra memory to one batch.
    """

    def __init__(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = True,
        seed: int = 0,
        device: torch.device | str = "cpu",
        gather_limit: int = 2**31,
    ) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"inputs ({len(inputs)}) and targets ({len(targets)}) differ in length")
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.inputs = inputs.to(device)
        self.targets = targets.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.gather_whole_epoch = inputs.nbytes + targets.nbytes <= gather_limit

    def __len__(self) -> int:
        return len(self.inputs)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        size = len(self)
        inputs, targets, order = self.inputs, self.targets, None
        if self.shuffle:
            order = epoch_permutation(size, self.seed, epoch).to(inputs.device)
            if self.gather_whole_epoch:
                inputs, targets, order = inputs[order], targets[order], None
        while (bounds := batch_bounds(size, start, self.batch_size, self.drop_last)) is not None:
            begin, start = bounds
            if order is None:
                yield inputs[begin:start], targets[begin:start]
            else:
                index = order[begin:start]
                yield inputs[index], targets[index]


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
    workers, a batch-size change takes effect after the batches already prefetched.
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
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self._sampler = _BatchSampler(self)
        self._loader = DataLoader(
            dataset,
            batch_sampler=self._sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        self._sampler.epoch, self._sampler.start = epoch, start
        yield from self._loader


def to_device(batch: Any, device: torch.device) -> Any:
    """Move a batch's tensors to `device` (a no-op for tensors already there, e.g. in-memory data)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(item, device) for item in batch)
    if isinstance(batch, dict):
        return {key: to_device(item, device) for key, item in batch.items()}
    return batch


def as_loader(data: Any, batch_size: int, **options: Any) -> Loader:
    """Accept a `Loader` as is and wrap a map-style dataset in a `DatasetLoader`."""
    if isinstance(data, Loader):
        return data
    if isinstance(data, Dataset) and hasattr(data, "__len__"):
        return DatasetLoader(data, batch_size, **options)
    raise TypeError(f"training data must be an algospeed Loader or a map-style Dataset, got {type(data).__name__}")
