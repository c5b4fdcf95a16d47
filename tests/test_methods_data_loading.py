"""Loader-changing data methods: data echoing and the batch-size ramp."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Callback
from algospeed.core.data import InMemoryLoader
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.data.batch_size_ramp import ramped_batch_size
from algospeed.methods.data.data_echoing import DataEchoing, EchoingLoader, EchoPosition, flip_batch, shift_batch
from algospeed.methods.shared.schedules import parse_milestones
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


def assert_usage_error(name: str, settings: dict[str, Any], words: str) -> None:
    with pytest.raises(UsageError, match=words):
        build_method(MethodSpec(name=name, settings=settings))


class Probe(Callback):
    """Per step: the inputs and targets the model saw, the batch as loaded, progress and learning rate."""

    def __init__(self) -> None:
        self.loaded: list[torch.Tensor] = []
        self.inputs: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []
        self.progress: list[float] = []
        self.lrs: list[float] = []

    def on_after_dataloader(self, state: Any) -> None:
        self.loaded.append(state.batch.inputs.clone())

    def on_before_forward(self, state: Any) -> None:
        self.inputs.append(state.batch.inputs.clone())
        self.targets.append(state.batch.targets.clone())
        self.progress.append(state.progress)

    def on_before_optimizer_step(self, state: Any) -> None:
        self.lrs.append(state.optimizer.param_groups[0]["lr"])


def fit_with(methods: str, *, budget: str, **spec: Any) -> tuple[Trainer, Probe]:
    probe = Probe()
    spec.setdefault("workload", "digits")
    trainer = build_trainer(RunSpec(budget=budget, methods=methods, device="cpu", **spec), callbacks=[probe])
    trainer.fit()
    return trainer, probe


class CountingLoader:
    """A loader that counts the batches it is asked for."""

    def __init__(self, inner: InMemoryLoader) -> None:
        self.inner = inner
        self.drop_last = inner.drop_last
        self.batches = 0

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.inner.batch_size = value

    def __len__(self) -> int:
        return len(self.inner)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[Any]:
        for batch in self.inner.iter_epoch(epoch, start):
            self.batches += 1
            yield batch


def small_loader(size: int = 50, batch_size: int = 8, drop_last: bool = True) -> InMemoryLoader:
    inputs = torch.arange(size, dtype=torch.float32).view(size, 1)
    return InMemoryLoader(inputs, torch.arange(size), batch_size, drop_last=drop_last, seed=3)


# ---------------------------------------------------------------------------------- data echoing
def test_data_echoing_repeats_each_loaded_batch_and_loads_a_third_as_many() -> None:
    counting = CountingLoader(small_loader(96, 16))
    probe = Probe()
    torch.manual_seed(0)
    trainer = Trainer(
        nn.Sequential(nn.Linear(1, 4), nn.ReLU(), nn.Linear(4, 96)),
        counting,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.01),
        budget="2ep",
        device="cpu",
        callbacks=[DataEchoing(factor=3), probe],
    )
    result = trainer.fit()
    assert result.final.step == 2 * 3 * 6  # two echoed epochs of three times six batches
    assert counting.batches == result.final.step // 3  # the underlying loader really loads a third
    for group in range(0, len(probe.targets), 3):
        first = probe.targets[group]
        assert torch.equal(probe.targets[group + 1], first) and torch.equal(probe.targets[group + 2], first)
        if group + 3 < len(probe.targets):
            assert not torch.equal(probe.targets[group + 3], first)
    samples = torch.cat(probe.targets[:18:3])
    assert sorted(samples.tolist()) == list(range(96))  # an echoed epoch still covers the data once


def test_data_echoing_reaugments_the_repeats_with_small_shifts() -> None:
    _, probe = fit_with("data_echoing:reaugment=shift:max_shift=1", budget="6ba")
    for step in range(0, 6, 2):
        original, repeat = probe.inputs[step], probe.inputs[step + 1]
        assert torch.equal(original, probe.loaded[step])  # the first use is not augmented
        assert not torch.equal(repeat, original)
        padded = F.pad(original, (1, 1, 1, 1))
        shifts = torch.stack([padded[..., dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)])
        assert (shifts == repeat[None]).flatten(2).all(dim=2).any(dim=0).all()  # each is a shift of itself


def test_echoing_loader_resumes_at_every_offset() -> None:
    for drop_last in (True, False):
        inner = small_loader(50, 8, drop_last)
        echo = EchoingLoader(inner, factor=3)
        full = [batch.targets for batch in echo.iter_epoch(1)]
        assert len(full) == 3 * (6 if drop_last else 7)
        offset = 0
        for index, targets in enumerate(full):
            fresh = EchoingLoader(small_loader(50, 8, drop_last), factor=3)
            rest = [batch.targets for batch in fresh.iter_epoch(1, offset)]
            assert len(rest) == len(full) - index and all(
                torch.equal(a, b) for a, b in zip(rest, full[index:], strict=True)
            )
            offset += len(targets)
        assert len(echo) == 150


def test_echoing_loader_resumes_from_its_position_after_a_batch_size_change() -> None:
    echo = EchoingLoader(small_loader(64, 8), factor=2)
    seen, positions, offset = [], [], 0
    for targets in (batch.targets for batch in echo.iter_epoch(0)):
        seen.append(targets)
        offset += len(targets)
        positions.append((offset, echo.position.state_dict()))
        if len(seen) == 3:
            echo.batch_size = 5  # the loaded batch is still repeated, then batches of 5
    assert [len(t) for t in seen[:6]] == [8, 8, 8, 8, 5, 5]
    for index in range(len(seen) - 1):  # resume after each batch, the batch size as it was then
        offset, saved = positions[index]
        position = EchoPosition()
        position.load_state_dict(saved)
        fresh = EchoingLoader(small_loader(64, 8 if index < 2 else 5), factor=2, position=position)
        rest = []
        for targets in (batch.targets for batch in fresh.iter_epoch(0, offset)):
            rest.append(targets)
            if index + 1 + len(rest) == 3:
                fresh.batch_size = 5
        assert len(rest) == len(seen) - index - 1
        assert all(torch.equal(a, b) for a, b in zip(rest, seen[index + 1 :], strict=True))


def test_shift_and_flip_functions() -> None:
    images = torch.arange(2 * 16.0).view(2, 1, 4, 4) + 1
    assert torch.equal(shift_batch(images, 0), images)
    shifted = shift_batch(images, 1, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape
    for original, moved in zip(images, shifted, strict=True):
        padded = F.pad(original, (1, 1, 1, 1))
        assert any(torch.equal(padded[:, dy : dy + 4, dx : dx + 4], moved) for dy in range(3) for dx in range(3))
    signals = torch.arange(10.0).view(1, 1, 10) + 1
    moved = shift_batch(signals, 2, torch.Generator().manual_seed(1))
    assert any(torch.equal(F.pad(signals, (2, 2))[..., d : d + 10], moved) for d in range(5))
    flipped = flip_batch(images.repeat(8, 1, 1, 1), torch.Generator().manual_seed(0))
    was_flipped = (flipped == images.repeat(8, 1, 1, 1).flip(-1)).flatten(1).all(dim=1)
    assert 0 < was_flipped.sum() < 16


@pytest.mark.parametrize(
    ("methods", "budget"),
    [
        ("data_echoing", "1ep"),
        ("data_echoing:reaugment=shift:factor=3", "1ep"),  # resumes inside the repeats of a batch
        ("data_echoing,batch_size_ramp", "1500sp"),  # ... after batch-size changes, from the saved position
        ("data_pruning:proxy_epochs=0.25,data_echoing:reaugment=flip,batch_size_ramp", "1500sp"),  # re-wrapped
        ("curriculum:proxy_epochs=0.25,data_echoing:factor=3", "2000sp"),  # re-wrapped at every epoch
    ],
)
def test_data_echoing_resumes_exactly(tmp_path, methods: str, budget: str) -> None:
    assert_resumes_exactly(methods, tmp_path, budget=budget)


def test_data_echoing_rejects_bad_settings() -> None:
    assert_usage_error("data_echoing", {"factor": "0"}, "factor")
    assert_usage_error("data_echoing", {"reaugment": "rotate"}, "reaugment must be one of")


# ------------------------------------------------------------------------------- batch-size ramp
def test_batch_size_ramp_grows_the_batch_at_milestones_and_keeps_the_learning_rate() -> None:
    _, probe = fit_with("batch_size_ramp:factor=2:milestones=0.4/0.6/0.8", budget="3000sp")
    sizes = [len(targets) for targets in probe.targets]
    assert sizes == [ramped_batch_size(32, p, 2.0, (0.4, 0.6, 0.8))[0] for p in probe.progress]
    assert sorted(set(sizes)) == [32, 64, 128, 256] and sizes == sorted(sizes)
    first_64 = sizes.index(64)
    assert probe.progress[first_64] >= 0.4 > probe.progress[first_64 - 1]
    warmed = [lr for lr, p in zip(probe.lrs, probe.progress, strict=True) if p >= 0.02]
    assert warmed and all(lr == pytest.approx(0.05) for lr in warmed)  # constant: no decay at all
    _, baseline = fit_with("", budget="3000sp")
    assert baseline.lrs[-1] < 0.05 * 0.05  # whereas the default schedule decays to almost zero


def test_batch_size_ramp_turns_growth_beyond_the_cap_into_learning_rate_decay() -> None:
    _, probe = fit_with("batch_size_ramp:max_batch_size=64", budget="2000sp")
    sizes = [len(targets) for targets in probe.targets]
    assert set(sizes) == {32, 64}
    final = [lr for lr, p in zip(probe.lrs, probe.progress, strict=True) if p >= 0.8]
    middle = [lr for lr, p in zip(probe.lrs, probe.progress, strict=True) if 0.6 <= p < 0.8]
    assert final and all(lr == pytest.approx(0.05 / 4) for lr in final)
    assert middle and all(lr == pytest.approx(0.05 / 2) for lr in middle)


def test_batch_size_ramp_functions() -> None:
    assert ramped_batch_size(32, 0.0, 2.0, (0.5,)) == (32, 1.0)
    assert ramped_batch_size(32, 0.5, 2.0, (0.5,)) == (64, 1.0)
    assert ramped_batch_size(32, 0.9, 5.0, (0.3, 0.6), cap=500) == (500, pytest.approx(500 / 800))
    assert ramped_batch_size(10, 0.9, 1.5, (0.3, 0.6))[0] == 22  # rounded
    assert parse_milestones("0.3/ 0.6/0.8") == (0.3, 0.6, 0.8)
    for bad in ("0.8/0.4", "1.2", "", "a/b", "0.4/0.4"):
        with pytest.raises(ValueError, match="milestone"):
            parse_milestones(bad)


def test_batch_size_ramp_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("batch_size_ramp", tmp_path, budget="3000sp")


def test_batch_size_ramp_rejects_bad_settings() -> None:
    assert_usage_error("batch_size_ramp", {"milestones": "0.8/0.4"}, "milestones must increase")
    assert_usage_error("batch_size_ramp", {"factor": "0.5"}, "factor")
    assert_usage_error("batch_size_ramp", {"max_batch_size": "-1"}, "max_batch_size")
