"""The phase profiler: schedule, phase accounting, per-method attribution, verdicts, the CUDA-event path."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from algospeed.core.callback import Callback, Method
from algospeed.core.data import InMemoryLoader, batch_bounds
from algospeed.core.state import State
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.profile import profiler as profiler_module
from algospeed.profile.advice import advise
from algospeed.profile.census import Census
from algospeed.profile.peak import Machine
from algospeed.profile.phases import PHASES
from algospeed.profile.profiler import Profiler
from algospeed.profile.record import Profile
from algospeed.profile.schedule import Action, ProfileSchedule
from algospeed.profile.verdict import (
    COMMUNICATION_BOUND,
    COMPUTE_BOUND,
    DATA_BOUND,
    KINDS,
    MEMORY_BOUND,
    OVERHEAD_BOUND,
    classify,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where

# Deterministic machine limits, so that verdicts do not depend on how loaded the test machine is.
MACHINE = Machine(
    device="test machine",
    dtype="fp32",
    peak_flops=5e10,
    peak_source="test",
    bandwidth=1e10,
    bandwidth_source="test",
    operator_seconds=2e-6,
    memory_capacity=64e9,
    cache_bytes=0.0,
)


class SleepyLoader:
    """A deliberately data-bound pipeline: sleeps before yielding each batch."""

    def __init__(self, delay: float, samples: int = 256, batch_size: int = 16, features: int = 8) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(samples, features, generator=generator)
        self.targets = (self.inputs[:, 0] > 0).long()
        self.batch_size, self.drop_last, self.delay = batch_size, True, delay

    def __len__(self) -> int:
        return len(self.inputs)

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while (bounds := batch_bounds(len(self), start, self.batch_size, self.drop_last)) is not None:
            begin, start = bounds
            time.sleep(self.delay)
            yield self.inputs[begin:start], self.targets[begin:start]


class Sleepy(Method):
    """A test method whose own work is a sleep in `before_backward`."""

    name = "sleepy"
    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_before_backward(self, state: State) -> None:
        time.sleep(self.seconds)


class Nap(Callback):
    """A logging-like callback that sleeps at the end of each batch."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_batch_end(self, state: State) -> None:
        time.sleep(self.seconds)


def make_trainer(loader, *, budget: str = "12ba", model: nn.Module | None = None, **kwargs) -> Trainer:
    torch.manual_seed(0)
    model = model or nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
    return Trainer(
        model,
        loader,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        budget=budget,
        device="cpu",
        **kwargs,
    )


def profiled(trainer: Trainer, schedule: ProfileSchedule, machine: Machine | None = MACHINE) -> Profile:
    profiler = Profiler(schedule, machine=machine).attach(trainer)
    trainer.fit()
    return profiler.report()


SHORT = ProfileSchedule(skip_first=2, warmup=1, active=6)


# ------------------------------------------------------------------------------------ schedule
def test_the_schedule_skips_waits_warms_up_and_repeats() -> None:
    schedule = ProfileSchedule(skip_first=3, wait=1, warmup=1, active=2, repeat=2)
    actions = [schedule.action(step) for step in range(13)]
    S, W, U, A, D = Action.SKIP, Action.WAIT, Action.WARMUP, Action.ACTIVE, Action.DONE
    assert actions == [S, S, S, W, U, A, A, W, U, A, A, D, D]
    assert schedule.active_steps(13) == [5, 6, 9, 10]
    assert ProfileSchedule(skip_first=0, warmup=0, active=2, repeat=0).active_steps(5) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("field", ["skip_first", "wait", "warmup", "repeat"])
def test_a_negative_schedule_is_a_usage_error(field: str) -> None:
    with pytest.raises(UsageError, match=field):
        ProfileSchedule(**{field: -1})
    with pytest.raises(UsageError, match="active"):
        ProfileSchedule(active=0)


def test_only_the_active_window_is_profiled(tiny_loader) -> None:
    schedule = ProfileSchedule(skip_first=3, wait=1, warmup=1, active=2, repeat=2)
    trainer = make_trainer(tiny_loader, budget="15ba")
    profile = profiled(trainer, schedule)
    assert profile.steps == [5, 6, 9, 10]
    assert len(profile.step_seconds) == 4
    assert profile.samples == 4 * tiny_loader.batch_size
    assert trainer.timer is None  # switched off again outside the window


def test_a_window_starting_at_step_zero_and_one_past_the_end(tiny_loader) -> None:
    profile = profiled(make_trainer(tiny_loader, budget="5ba"), ProfileSchedule(skip_first=0, warmup=0, active=50))
    assert profile.steps == [0, 1, 2, 3, 4]
    profile = profiled(make_trainer(tiny_loader, budget="5ba"), ProfileSchedule(skip_first=10))
    assert profile.steps == [] and profile.verdict is not None


def test_a_profiler_attaches_once(tiny_loader) -> None:
    profiler = Profiler().attach(make_trainer(tiny_loader))
    with pytest.raises(UsageError, match="already attached"):
        profiler.attach(make_trainer(tiny_loader))
    with pytest.raises(UsageError, match="never attached"):
        Profiler().report()


# ---------------------------------------------------------------------------------- accounting
def test_phase_shares_sum_to_one_and_cover_every_phase(tiny_loader, tmp_path) -> None:
    trainer = make_trainer(
        tiny_loader,
        eval_data=tiny_loader,
        eval_interval="3ba",
        checkpoint_dir=tmp_path,
        checkpoint_interval="3ba",
    )
    profile = profiled(trainer, SHORT)
    assert profile.steps == [3, 4, 5, 6, 7, 8]
    rows = profile.rows()
    assert sum(row.share for row in rows) == pytest.approx(1.0)
    assert {row.key for row in rows} >= set(PHASES)
    assert profile.phases["eval"] > 0 and profile.phases["checkpoint"] > 0
    assert sum(profile.step_seconds) == pytest.approx(profile.total_seconds)
    assert profile.train_seconds < profile.total_seconds
    assert profile.census is not None and profile.census.operators > 0
    assert profile.flops > 0 and profile.mfu is not None and profile.mfu > 0
    assert profile.peak_memory > 0


def test_method_work_is_charged_to_the_method_by_name(tiny_loader) -> None:
    trainer = make_trainer(tiny_loader, callbacks=[Sleepy(0.01), Nap(0.005)])
    profile = profiled(trainer, SHORT)
    per_step = {row.key: row.ms_per_step for row in profile.rows()}
    assert per_step["method:sleepy"] >= 10
    assert per_step["callback:Nap"] >= 5
    assert per_step["backward"] < 10  # the sleep happened before backward, not in it
    assert per_step["method:sleepy"] > per_step["callback:Nap"] > per_step["other"]


class ShortLoader(SleepyLoader):
    """Ends each epoch a batch early: the trainer then closes the epoch after the loop, without a step."""

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index, batch in enumerate(super().iter_epoch(epoch, start)):
            if start + (index + 1) * self.batch_size < len(self):
                yield batch


def test_an_epoch_ended_without_a_batch_does_not_open_an_empty_step() -> None:
    loader = ShortLoader(delay=0.0, samples=48, batch_size=16)  # two batches per epoch, not three
    profile = profiled(make_trainer(loader, budget="6ba"), ProfileSchedule(skip_first=0, warmup=0, active=6))
    assert profile.steps == [0, 1, 2, 3, 4, 5]
    assert profile.samples == 6 * 16
    assert sum(profile.step_seconds) == pytest.approx(profile.total_seconds)


# ------------------------------------------------------------------------------------ verdicts
def test_a_data_bound_pipeline_is_diagnosed_and_advised_data_echoing() -> None:
    profile = profiled(make_trainer(SleepyLoader(delay=0.02)), SHORT)
    assert profile.verdict is not None and profile.verdict.kind == DATA_BOUND
    assert profile.train_share("data") > 0.5
    assert any("waiting for data" in line for line in profile.verdict.evidence)
    names = [method.name for section in advise([profile.verdict.kind]) for method in section.methods]
    assert "data_echoing" in names
    assert names.index("data_echoing") < 3  # among the first suggested


def _compute_heavy_trainer() -> Trainer:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(512, 1024, generator=generator)
    loader = InMemoryLoader(inputs, (inputs[:, 0] > 0).long(), batch_size=256, seed=0)
    model = nn.Sequential(nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 2))
    return make_trainer(loader, budget="8ba", model=model)


def test_a_compute_heavy_model_is_compute_bound() -> None:
    # a peak above any CPU's, so that the MFU is below 100%, at the same balance of FLOPs to bytes
    fast = dataclasses.replace(MACHINE, peak_flops=MACHINE.peak_flops * 200, bandwidth=MACHINE.bandwidth * 200)
    profile = profiled(_compute_heavy_trainer(), ProfileSchedule(skip_first=2, warmup=1, active=5), machine=fast)
    assert profile.verdict is not None and profile.verdict.kind == COMPUTE_BOUND, profile.verdict
    assert profile.share("forward", "backward", "optimizer") > 0.8
    assert any("MFU" in line for line in profile.verdict.evidence)


def test_compute_bound_against_the_machine_measured_here() -> None:
    profile = profiled(_compute_heavy_trainer(), ProfileSchedule(skip_first=2, warmup=1, active=3), machine=None)
    assert profile.machine is not None and profile.machine.peak_source.startswith("measured")
    assert profile.verdict is not None and profile.verdict.kind == COMPUTE_BOUND, profile.verdict


def synthetic(phases: dict[str, float], *, census: Census | None = None, world_size: int = 1, **changes) -> Profile:
    """A profile of 10 steps with the given phase seconds, 1 GFLOP per step."""
    profile = Profile(
        device="cpu",
        steps=list(range(10)),
        step_seconds=[sum(phases.values()) / 10] * 10,
        phases=phases,
        samples=640,
        tokens=0,
        flops=1e10,
        machine=MACHINE,
        census=census,
        peak_memory=1e9,
        memory_kind="test",
        world_size=world_size,
    )
    for key, value in changes.items():
        setattr(profile, key, value)
    return profile


def test_overhead_memory_and_communication_verdicts_from_their_evidence() -> None:
    loop = synthetic({"data": 0.01, "forward": 0.1, "backward": 0.2, "optimizer": 0.05, "other": 0.9})
    assert classify(loop).kind == OVERHEAD_BOUND
    tiny_kernels = synthetic(
        {"forward": 0.1, "backward": 0.2, "optimizer": 0.05},
        census=Census(operators=15_000, operator_bytes=(1000,) * 15_000, dtype="fp32"),  # 30 ms/step fixed
    )
    assert classify(tiny_kernels).kind == OVERHEAD_BOUND
    streaming = synthetic(
        {"forward": 0.1, "backward": 0.2, "optimizer": 0.05},
        census=Census(operators=10, operator_bytes=(10**9,) * 10, dtype="fp32"),  # 0.1 FLOP per byte
    )
    verdict = classify(streaming)
    assert verdict.kind == MEMORY_BOUND and any("FLOPs per byte" in line for line in verdict.evidence)
    synchronizing = synthetic({"forward": 0.1, "backward": 1.0, "optimizer": 0.05}, world_size=8)
    assert classify(synchronizing).kind == COMMUNICATION_BOUND
    assert classify(synthetic({"forward": 0.1, "backward": 1.0, "optimizer": 0.05})).kind == COMPUTE_BOUND


def test_smaller_bottlenecks_above_threshold_are_flagged_and_shares_add_up() -> None:
    profile = synthetic({"data": 0.1, "forward": 0.3, "backward": 0.6, "optimizer": 0.1, "eval": 2.0})
    verdict = classify(profile)
    assert verdict.kind == COMPUTE_BOUND
    assert verdict.flagged == [DATA_BOUND]  # 9% of training time, above torch.profiler's 5%
    assert sum(verdict.shares.values()) == pytest.approx(1.0)
    assert set(verdict.shares) == set(KINDS)
    assert any("evaluation" in note for note in verdict.notes)
    full = synthetic({"forward": 0.3, "backward": 0.6}, peak_memory=0.95 * 64e9)
    assert MEMORY_BOUND in classify(full).flagged


# ----------------------------------------------------------------------------- the CUDA path
class FakeEvent:
    """Stands in for `torch.cuda.Event`: records the host clock, as an idle GPU would."""

    def __init__(self, enable_timing: bool = False) -> None:
        self.at = 0.0

    def record(self, stream: object = None) -> None:
        self.at = time.perf_counter()

    def synchronize(self) -> None:
        pass

    def elapsed_time(self, end: FakeEvent) -> float:
        return (end.at - self.at) * 1e3


def test_the_cuda_event_path_resolves_marks_into_the_same_accounting(tiny_loader, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 123.0)
    monkeypatch.setattr(profiler_module, "CUDA_RESOLVE_EVERY", 3)
    trainer = make_trainer(tiny_loader, budget="14ba", callbacks=[Sleepy(0.002)])
    profiler = Profiler(ProfileSchedule(skip_first=2, warmup=1, active=10), machine=MACHINE).attach(trainer)
    profiler._cuda = True
    trainer.fit()
    profile = profiler.report()
    assert profile.steps == list(range(3, 13))
    assert sum(row.share for row in profile.rows()) == pytest.approx(1.0)
    assert sum(profile.step_seconds) == pytest.approx(profile.total_seconds)
    assert profile.phases["method:sleepy"] >= 10 * 0.002
    assert profile.peak_memory == 123.0 and profile.memory_kind == "CUDA allocator peak"


class Explodes(Method):
    """Raises in the middle of a step."""

    name = "explodes"
    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def on_before_backward(self, state: State) -> None:
        if state.clock.steps == 2:
            raise RuntimeError("boom")


def test_a_run_that_raises_leaves_no_census_running(tiny_loader) -> None:
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    trainer = make_trainer(tiny_loader, callbacks=[Explodes()])
    with pytest.raises(RuntimeError, match="boom"), Profiler(SHORT, machine=MACHINE).attach(trainer):
        trainer.fit()  # step 2 is the warmup step that takes the census
    assert _get_current_dispatch_mode() is None
