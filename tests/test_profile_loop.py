"""The profiler on a hand-written loop (the same table, FLOPs, verdict and advice as on the trainer), an MFU
above 100% never shown, and advice that fits the workload's kind of data."""

from __future__ import annotations

import io
import json
import re
import time

import pytest
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from algospeed.core.data import InMemoryLoader
from algospeed.core.data_kind import DataKind
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.registry import method_class, method_names
from algospeed.profile import peak
from algospeed.profile.advice import advise, entry_kinds
from algospeed.profile.peak import Machine
from algospeed.profile.phases import PHASES
from algospeed.profile.profiler import Profiler
from algospeed.profile.record import Profile
from algospeed.profile.render import print_profile
from algospeed.profile.schedule import ProfileSchedule
from algospeed.profile.verdict import DATA_BOUND, KINDS
from algospeed.taxonomy.catalogue import packaged_catalogue

MACHINE = Machine(
    device="test machine",
    dtype="fp32",
    peak_flops=1e13,  # above any CPU's, so that the MFU stays below 100%
    peak_source="test",
    bandwidth=2e12,
    bandwidth_source="test",
    operator_seconds=2e-6,
    memory_capacity=64e9,
)
SCHEDULE = ProfileSchedule(skip_first=2, warmup=1, active=6)


def data(batches: int = 10, batch_size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batches * batch_size, 8, generator=generator)
    targets = (inputs[:, 0] > 0).long()
    return list(zip(inputs.split(batch_size), targets.split(batch_size), strict=True))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))


def hand_loop(profiler: Profiler, net: nn.Module, *, wait: float = 0.0, extra: float = 0.0) -> Profile:
    """A plain PyTorch loop marked with the context API; `wait` sleeps as a slow loader would, `extra`
    inside the forward as work of one's own."""
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    with profiler.attach_loop(net):
        for inputs, targets in data():
            time.sleep(wait)
            with profiler.phase("h2d"):
                inputs, targets = inputs.to("cpu"), targets.to("cpu")
            with profiler.phase("forward"):
                outputs = net(inputs)
                if extra:
                    with profiler.phase("method:augment"):
                        time.sleep(extra)
            with profiler.phase("loss"):
                loss = F.cross_entropy(outputs, targets)
            with profiler.phase("backward"):
                loss.backward()
            with profiler.phase("optimizer"):
                optimizer.step()
                optimizer.zero_grad()
            profiler.step((inputs, targets))
    return profiler.report()


def test_a_hand_loop_gets_the_phase_table_flops_verdict_and_advice_of_the_trainer() -> None:
    profile = hand_loop(Profiler(SCHEDULE, machine=MACHINE), model(), wait=0.01)
    assert profile.steps == [3, 4, 5, 6, 7, 8]
    rows = profile.rows()
    assert {row.key for row in rows} >= set(PHASES)
    assert sum(row.share for row in rows) == pytest.approx(1.0)
    assert sum(profile.step_seconds) == pytest.approx(profile.total_seconds)
    assert profile.samples == 6 * 16
    assert all(profile.phases[key] > 0 for key in ("forward", "loss", "backward", "optimizer"))
    assert profile.phases["data"] >= 6 * 0.01  # the sleep before the first phase is waiting for data
    assert profile.census is not None and profile.census.operators > 0
    assert profile.mfu is not None and 0 < profile.mfu < 1
    assert profile.verdict is not None and profile.verdict.kind == DATA_BOUND
    (section,) = [s for s in profile.advice if s.kind == DATA_BOUND]
    first = section.methods[0]
    assert first.name == "data_echoing" and first.command == "algospeed methods show data_echoing"

    trainer = Trainer(
        model(),
        InMemoryLoader(*map(torch.cat, zip(*data(), strict=True)), batch_size=16, seed=0),
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05),
        budget="10ba",
        device="cpu",
    )
    profiler = Profiler(SCHEDULE, machine=MACHINE).attach(trainer)
    trainer.fit()
    assert profile.flops == pytest.approx(profiler.report().flops)  # the same FLOPs as the trainer counts


def test_nested_phases_and_work_of_ones_own() -> None:
    profile = hand_loop(Profiler(SCHEDULE, machine=MACHINE), model(), extra=0.01)
    per_step = {row.key: row.ms_per_step for row in profile.rows()}
    assert per_step["method:augment"] >= 10
    assert per_step["forward"] < per_step["method:augment"]  # the forward resumed after it, without its sleep
    assert per_step["other"] < per_step["method:augment"]


def test_the_data_kind_is_inferred_from_the_batch_and_filters_the_advice() -> None:
    profiler = Profiler(SCHEDULE, machine=MACHINE)
    profile = hand_loop(profiler, model())
    assert profiler.data_kind is DataKind.TABULAR
    implemented = [method.name for section in profile.advice for method in section.methods if method.implemented]
    assert implemented and all(DataKind.TABULAR in method_class(name).data_kinds for name in implemented)
    assert Profiler(data_kind="images").data_kind is DataKind.IMAGES


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.phase("fwd"), "unknown profiler phase 'fwd'"),
        (lambda p: p.phase("method:"), "unknown profiler phase"),
        (lambda p: p.step(), "call profiler.attach_loop"),
        (lambda p: Profiler(ProfileSchedule(warmup=0)).attach_loop(model()), "warmup 1 or more"),
        (lambda p: p.attach_loop(model()).attach_loop(model()), "already attached"),
        (lambda p: Profiler(data_kind="video"), "unknown data kind 'video'"),
    ],
)
def test_misuse_is_a_usage_error(make, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make(Profiler())


def test_outside_the_window_phases_and_steps_are_not_timed() -> None:
    profiler = Profiler(ProfileSchedule(skip_first=4, warmup=1, active=2), machine=MACHINE).attach_loop(model())
    for step in range(12):
        with profiler.phase("forward"):
            pass
        profiler.step(samples=4)
        assert (profiler._record is not None) == (4 <= step + 1 <= 6)  # steps 4 (warmup), 5 and 6
    profile = profiler.report()
    assert profile.steps == [5, 6] and profile.samples == 8


# ---------------------------------------------------------------------------------- MFU over 100%
def rendered(profile: Profile) -> str:
    out = io.StringIO()
    print_profile(profile, Console(file=out, width=200))
    return out.getvalue()


def fake_peaks(monkeypatch, tmp_path, *peaks: float) -> list[float]:
    """Peak measurements return `peaks` in turn (tiny ones: the machine was busy); returns those used."""
    monkeypatch.setenv("ALGOSPEED_CACHE", str(tmp_path))
    left, used = list(peaks), []

    def measure(device: torch.device, dtype: str) -> dict[str, float]:
        used.append(left.pop(0))
        return {"peak_flops": used[-1], "matmul_size": 256, "bandwidth": 1e10, "operator_seconds": 2e-6}

    monkeypatch.setattr(peak, "measure", measure)
    return used


def test_an_mfu_above_100_percent_is_never_printed(monkeypatch, tmp_path) -> None:
    used = fake_peaks(monkeypatch, tmp_path, 1e3, 2e3)  # far below what the loop achieves
    profile = hand_loop(Profiler(SCHEDULE), model())
    assert used == [1e3, 2e3]  # measured once more, once
    assert profile.remeasured and profile.measured_mfu is not None and profile.measured_mfu > 1
    assert profile.mfu is None
    text = rendered(profile)
    assert "MFU: not given, the figure is unreliable" in text and "measured again" in text
    shown = [float(figure) for figure in re.findall(r"MFU[^\n%]*?([\d.]+)%", text)]
    assert all(figure <= 100 for figure in shown)
    payload = profile.to_dict()
    assert payload["mfu"] is None and "exceed" in payload["mfu_unreliable"]
    json.dumps(payload)


def test_measuring_the_peak_again_gives_a_believable_mfu(monkeypatch, tmp_path) -> None:
    used = fake_peaks(monkeypatch, tmp_path, 1e3, 1e13)  # the first measurement was taken on a busy machine
    profile = hand_loop(Profiler(SCHEDULE), model())
    assert used == [1e3, 1e13]
    assert profile.mfu is not None and 0 < profile.mfu < 1 and profile.mfu_unreliable is None
    assert re.search(r"MFU: [\d.]+% of 10 TFLOP/s", rendered(profile))


def test_a_datasheet_peak_is_not_measured_again() -> None:
    sheet = Machine("gpu", "fp32", 1e3, "datasheet: test", 1e12, "datasheet: test", 1e-6)
    profile = hand_loop(Profiler(SCHEDULE, machine=sheet), model())
    assert not profile.remeasured and profile.mfu is None
    assert "FLOP count is too high" in (profile.mfu_unreliable or "")


# ---------------------------------------------------------------------------- advice by data kind
def token_only(name: str, implemented: bool) -> bool:
    if implemented:
        return set(method_class(name).data_kinds) == {DataKind.TOKENS}
    entry = next(entry for entry in packaged_catalogue().entries if entry.id == name)
    return entry_kinds(entry) <= {DataKind.TOKENS}


@pytest.mark.parametrize("kind", KINDS)
def test_advice_for_an_image_workload_never_names_a_token_only_method(kind: str) -> None:
    (section,) = advise([kind], workload="mnist5k", data_kind=DataKind.IMAGES)
    assert section.methods
    names = [method.name for method in section.methods]
    assert not [method.name for method in section.methods if token_only(method.name, method.implemented)]
    assert not {"token_dropping", "flip", "token_merging", "masked_autoencoder"} & set(names)
    for method in section.methods:
        if method.implemented:
            assert DataKind.IMAGES in method_class(method.name).data_kinds


def test_token_methods_are_advised_for_token_data() -> None:
    assert "token_dropping" in method_names()
    names = {m.name for section in advise(list(KINDS), data_kind=DataKind.TOKENS) for m in section.methods}
    assert "token_dropping" in names and "channels_last" not in names
