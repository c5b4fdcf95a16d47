from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import TensorDataset

from algospeed.core.data import DatasetLoader, InMemoryLoader, as_loader


def _ids(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.arange(size).float().unsqueeze(1), torch.arange(size)


def _order(loader, epoch: int, start: int = 0) -> list[int]:
    return [int(i) for batch in loader.iter_epoch(epoch, start) for i in batch.targets]


@given(st.integers(1, 200), st.integers(1, 64), st.integers(0, 5), st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_an_epoch_is_a_seeded_permutation_and_any_offset_resumes_it(size, batch, epoch, seed) -> None:
    loader = InMemoryLoader(*_ids(size), batch, drop_last=False, seed=seed)
    order = _order(loader, epoch)
    assert sorted(order) == list(range(size))
    assert order == _order(InMemoryLoader(*_ids(size), batch, drop_last=False, seed=seed), epoch)
    for start in range(0, size, batch):
        assert _order(loader, epoch, start) == order[start:]


def test_epochs_and_seeds_change_the_order_and_drop_last_drops_the_remainder() -> None:
    loader = InMemoryLoader(*_ids(100), 32, seed=1)
    assert _order(loader, 0) != _order(loader, 1)
    assert _order(loader, 0) != _order(InMemoryLoader(*_ids(100), 32, seed=2), 0)
    assert len(_order(loader, 0)) == 96
    assert all(batch.samples == 32 for batch in loader.iter_epoch(0))


def test_batch_size_may_change_between_batches() -> None:
    loader = InMemoryLoader(*_ids(50), 10, drop_last=False, seed=0)
    sizes = []
    for targets in (batch.targets for batch in loader.iter_epoch(0)):
        sizes.append(len(targets))
        loader.batch_size = 20
    assert sizes == [10, 20, 20]


def test_dataset_loader_follows_the_same_order_as_the_in_memory_loader() -> None:
    inputs, targets = _ids(70)
    memory = InMemoryLoader(inputs, targets, 8, seed=3)
    dataset = as_loader(TensorDataset(inputs, targets), 8, seed=3)
    assert isinstance(dataset, DatasetLoader)
    assert _order(dataset, 2) == _order(memory, 2)
    assert _order(dataset, 2, start=24) == _order(memory, 2)[24:]


def test_dataset_loader_with_workers_gives_the_same_batches() -> None:
    inputs, targets = _ids(40)
    plain = DatasetLoader(TensorDataset(inputs, targets), 8, seed=5)
    workers = DatasetLoader(TensorDataset(inputs, targets), 8, seed=5, num_workers=2)
    assert _order(workers, 1, start=8) == _order(plain, 1, start=8)


def test_gathering_per_batch_above_the_memory_limit_gives_the_same_batches() -> None:
    whole = InMemoryLoader(*_ids(90), 16, seed=4)
    per_batch = InMemoryLoader(*_ids(90), 16, seed=4, gather_limit=0)
    assert whole.gather_whole_epoch and not per_batch.gather_whole_epoch
    assert _order(per_batch, 3, start=32) == _order(whole, 3, start=32)
