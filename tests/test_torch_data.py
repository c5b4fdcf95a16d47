"""Plain PyTorch data into the Trainer (a DataLoader, a Dataset, dict batches), the general Batch, and the
named reasons a fit stops."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset, WeightedRandomSampler

from algospeed.core.batch import IGNORE_INDEX, Batch
from algospeed.core.callback import Callback
from algospeed.core.checkpoint import list_checkpoints
from algospeed.core.data import DatasetLoader, TorchLoader, as_loader
from algospeed.core.status import RunStatus, StopReason
from algospeed.core.trainer import Trainer
from method_harness import same


def _data(size: int = 96) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(size, 8, generator=generator)
    return TensorDataset(inputs, (inputs[:, 0] > 0).long())


def _trainer(data, budget: str = "30ba", **options) -> Trainer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return Trainer(model, data, optimizer=lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), budget=budget,
                   device="cpu", **options)  # fmt: skip


def test_a_plain_shuffled_dataloader_is_rebuilt_in_the_seeded_order_and_resumes_exactly(tmp_path: Path) -> None:
    loader = DataLoader(_data(), batch_size=16, shuffle=True, drop_last=True)
    assert isinstance(as_loader(loader), DatasetLoader)
    full = _trainer(loader, checkpoint_dir=tmp_path / "full", checkpoint_interval="7ba")
    full.keep_checkpoints = 10
    result = full.fit()
    assert result.final.step == 30 and result.stop_reason is StopReason.BUDGET_SPENT
    middle = list_checkpoints(tmp_path / "full")[1]
    resumed = _trainer(DataLoader(_data(), batch_size=16, shuffle=True, drop_last=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an exact resume says nothing
        resumed.fit(resume_from=middle)
    assert same(full.state.model.state_dict(), resumed.state.model.state_dict())


def test_a_map_style_dataset_trains_with_a_batch_size_and_needs_one() -> None:
    result = _trainer(_data(), batch_size=32, budget="1ep").fit()
    assert result.final.step == 3 and result.final.samples == 96
    with pytest.raises(TypeError, match="needs a batch size"):
        _trainer(_data())


def test_a_dataloader_with_its_own_sampler_trains_and_says_its_resume_is_not_exact(tmp_path: Path) -> None:
    sampler = WeightedRandomSampler(torch.ones(96), num_samples=96, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(_data(), batch_size=16, sampler=sampler)
    assert isinstance(as_loader(loader), TorchLoader)
    trainer = _trainer(loader, budget="12ba", checkpoint_dir=tmp_path, checkpoint_interval="5ba")
    assert trainer.fit().final.step == 12
    with pytest.warns(UserWarning, match="not exact: its sampler \\(WeightedRandomSampler\\)"):
        _trainer(DataLoader(_data(), batch_size=16, sampler=sampler), budget="12ba").fit(resume_from=tmp_path)


class _Dicts(Dataset):
    """Hugging Face style samples: input_ids, labels and an attention mask."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.arange(6) + index
        labels = ids.clone()
        labels[-2:] = IGNORE_INDEX
        return {"input_ids": ids, "labels": labels, "attention_mask": torch.tensor([1, 1, 1, 1, 0, 0])}


def test_dict_batches_become_batches_with_a_mask_and_count_tokens() -> None:
    batch = next(as_loader(DataLoader(_Dicts(), batch_size=4)).iter_epoch(0))
    assert batch.inputs.shape == (4, 6) and batch.mask is not None and batch.samples == 4
    assert batch.tokens == 16  # the mask's real positions, not all 24 ids
    unmasked = batch.replace(mask=None)
    assert unmasked.tokens == 24 and Batch(torch.randn(4, 3), torch.zeros(4)).tokens == 0


def test_select_takes_the_rows_of_every_row_aligned_field() -> None:
    batch = Batch(
        torch.arange(10).view(5, 2), torch.arange(5), torch.ones(5, 2), {"weights": torch.arange(5.0), "k": 3}
    )
    picked = batch.select(torch.tensor([4, 0]))
    assert picked.targets.tolist() == [4, 0] and picked.inputs.tolist() == [[8, 9], [0, 1]]
    assert picked.extras["weights"].tolist() == [4.0, 0.0] and picked.extras["k"] == 3
    assert Batch.of((torch.zeros(2), torch.ones(2))).targets.tolist() == [1.0, 1.0]
    with pytest.raises(TypeError, match="a batch must be"):
        Batch.of(torch.zeros(2))


def test_an_iterable_dataset_is_refused_with_a_reason() -> None:
    class Stream(IterableDataset):
        def __iter__(self):
            yield torch.zeros(8), torch.tensor(0)

    with pytest.raises(TypeError, match="IterableDataset has no epoch length"):
        as_loader(DataLoader(Stream(), batch_size=2))


def test_a_callback_can_stop_the_run_and_the_reason_is_recorded(tmp_path: Path) -> None:
    class StopAtTen(Callback):
        def on_batch_end(self, state) -> None:
            state.stop_requested = state.clock.steps >= 10

    trainer = _trainer(DataLoader(_data(), batch_size=16, shuffle=True), callbacks=[StopAtTen()],
                       checkpoint_dir=tmp_path)  # fmt: skip
    result = trainer.fit()
    assert result.stop_reason is StopReason.REQUESTED and result.status is RunStatus.INTERRUPTED
    assert trainer.state.clock.steps == 10 and list_checkpoints(tmp_path)  # stopped after a checkpoint
    assert result.summary()["stop_reason"] == "requested"
