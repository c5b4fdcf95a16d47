"""Energy is a measured currency or absent: absent here (no GPU, no RAPL in a container), correct on a fake
RAPL folder (wrap-around included) and a fake NVML counter, and charged by the Trainer like its seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pynvml
import pytest
import torch
from torch import nn

from algospeed.core import energy as energy_module
from algospeed.core.callback import Callback
from algospeed.core.data import InMemoryLoader
from algospeed.core.energy import EnergyMeter, nvml_device, rapl_zones
from algospeed.core.state import State
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError

RANGE_UJ = 1_000_000_000  # a 1 kJ counter range, so that a wrap is easy to plant


def fake_rapl(root: Path, packages: int = 1) -> list[Path]:
    """Package zones with a core sub-zone each and a psys zone, as a laptop's powercap folder has."""
    root.mkdir(parents=True, exist_ok=True)
    folders = []
    for index in range(packages):
        for name, label in ((f"intel-rapl:{index}", f"package-{index}"), (f"intel-rapl:{index}:0", "core")):
            folder = root / name
            folder.mkdir()
            (folder / "name").write_text(label + "\n")
            (folder / "energy_uj").write_text("5000000\n")
            (folder / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
        folders.append(root / f"intel-rapl:{index}")
    psys = root / f"intel-rapl:{packages}"
    psys.mkdir()
    (psys / "name").write_text("psys\n")
    (psys / "energy_uj").write_text("7\n")
    (psys / "max_energy_range_uj").write_text(f"{RANGE_UJ}\n")
    return folders


def add_joules(folder: Path, joules: float) -> None:
    raw = int((folder / "energy_uj").read_text()) + round(joules * 1e6)
    (folder / "energy_uj").write_text(f"{raw % RANGE_UJ}\n")


def test_this_machine_measures_no_energy_and_says_why() -> None:
    assert not Path("/sys/class/powercap").exists(), "this test expects a container without RAPL"
    meter = EnergyMeter.for_device(torch.device("cpu"))
    assert not meter.available
    assert meter.joules() is None and meter.lap() is None
    assert "no RAPL" in meter.reason and "/sys/class/powercap" in meter.reason
    _, reason = nvml_device(0)
    assert "NVML" in reason or "nvidia-ml-py" in reason


def test_rapl_counts_package_zones_only_and_undoes_a_wrap(tmp_path: Path) -> None:
    first, second = fake_rapl(tmp_path, packages=2)
    zones, reason = rapl_zones(tmp_path)
    assert reason == ""
    assert [zone.name for zone in zones] == ["cpu package-0 (RAPL)", "cpu package-1 (RAPL)"]
    meter = EnergyMeter(zones)
    assert meter.available and meter.joules() == 0.0
    add_joules(first, 2.5)
    add_joules(second, 1.0)
    assert meter.joules() == pytest.approx(3.5)
    (first / "energy_uj").write_text(f"{RANGE_UJ - 1_000_000}\n")  # 994 J on from 5 J: near the top
    assert meter.joules() == pytest.approx(3.5 + (RANGE_UJ - 1_000_000 - 7_500_000) / 1e6)
    before = meter.joules()
    add_joules(first, 3.0)  # wraps past the range to 2 J
    assert int((first / "energy_uj").read_text()) == 2_000_000
    assert meter.joules() == pytest.approx(before + 3.0)


def test_lap_and_restart_charge_only_the_intervals_asked_for(tmp_path: Path) -> None:
    (folder,) = fake_rapl(tmp_path)
    meter = EnergyMeter(rapl_zones(tmp_path)[0])
    add_joules(folder, 1.0)
    assert meter.lap() == pytest.approx(1.0)
    add_joules(folder, 50.0)
    meter.restart()  # an evaluation: not charged
    add_joules(folder, 2.0)
    assert meter.lap() == pytest.approx(2.0)


def test_unreadable_rapl_is_no_figure_with_a_reason(tmp_path: Path) -> None:
    (folder,) = fake_rapl(tmp_path)
    (folder / "energy_uj").unlink()
    (folder / "energy_uj").mkdir()  # reading fails as it does when only root may read (root reads anything)
    zones, reason = rapl_zones(tmp_path)
    assert zones == [] and "not readable" in reason
    assert EnergyMeter(zones, [reason]).reason == reason


def test_a_counter_that_fails_mid_run_leaves_no_figure(tmp_path: Path) -> None:
    (folder,) = fake_rapl(tmp_path)
    meter = EnergyMeter(rapl_zones(tmp_path)[0])
    (folder / "energy_uj").write_text("garbage\n")
    assert meter.joules() is None and meter.lap() is None


def test_nvml_energy_counter_in_millijoules(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = {"mj": 123_000}
    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: f"handle{index}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByUUID", lambda uuid: f"handle-{uuid}")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", lambda handle: counter["mj"])
    gpu, reason = nvml_device(0)
    assert gpu is not None and reason == "" and gpu.name == "gpu 0 (NVML)"
    meter = EnergyMeter([gpu])
    counter["mj"] += 4_500  # 4.5 J
    assert meter.joules() == pytest.approx(4.5)
    assert meter.lap() == pytest.approx(4.5)


def test_a_gpu_without_the_counter_is_no_figure_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(handle: object) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda index: "handle")
    monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", unsupported)
    gpu, reason = nvml_device(0)
    assert gpu is None and "Volta" in reason and "Not Supported" in reason


class Burner(Callback):
    """Plants energy on the fake counter: 1 J per training step, 100 J per evaluation (which must not count)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_before_forward(self, state: State) -> None:
        add_joules(self.folder, 1.0)

    def on_eval_start(self, state: State) -> None:
        add_joules(self.folder, 100.0)


def make_trainer(callbacks: list[Callback], checkpoint_dir: Path | None = None) -> Trainer:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 8, generator=generator)
    data = InMemoryLoader(inputs, (inputs[:, 0] > 0).long(), batch_size=16, seed=0)
    torch.manual_seed(0)
    return Trainer(
        nn.Linear(8, 2),
        data,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        budget="8ba",
        eval_data=data,
        eval_interval="2ba",
        callbacks=callbacks,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval="3ba",
    )


def test_the_trainer_charges_energy_like_seconds_without_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder,) = fake_rapl(tmp_path / "powercap")
    monkeypatch.setattr(energy_module, "RAPL_ROOT", tmp_path / "powercap")
    result = make_trainer([Burner(folder)]).fit()
    assert [point.energy_joules for point in result.points] == pytest.approx([2.0, 4.0, 6.0, 8.0])


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state: State) -> None:
        state.stop_requested = state.clock.steps == self.step


def test_energy_resumes_from_a_checkpoint_and_is_absent_where_the_rest_cannot_be_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (folder,) = fake_rapl(tmp_path / "powercap")
    monkeypatch.setattr(energy_module, "RAPL_ROOT", tmp_path / "powercap")
    first = make_trainer([Burner(folder), StopAt(5)], tmp_path / "ckpt").fit()
    assert first.status == "interrupted"
    shutil.copytree(tmp_path / "ckpt", tmp_path / "copy")
    resumed = make_trainer([Burner(folder), StopAt(-1)], tmp_path / "ckpt").fit(resume_from=tmp_path / "ckpt")
    assert resumed.final.energy_joules == pytest.approx(8.0)
    monkeypatch.setattr(energy_module, "RAPL_ROOT", tmp_path / "nowhere")  # resumed on a machine without RAPL
    elsewhere = make_trainer([StopAt(-1)], tmp_path / "copy").fit(resume_from=tmp_path / "copy")
    assert elsewhere.points[0].energy_joules == pytest.approx(2.0)  # measured before the interruption
    assert elsewhere.final.energy_joules is None


def test_without_a_meter_the_curve_has_no_energy_not_zero(tiny_loader: InMemoryLoader) -> None:
    trainer = Trainer(
        nn.Linear(8, 2), tiny_loader, optimizer=lambda p: torch.optim.SGD(p, lr=0.1), budget="2ba", device="cpu"
    )
    result = trainer.fit()
    assert trainer.state.clock.energy_joules is None
    assert result.final.energy_joules is None and "energy_joules" in result.final.to_dict()


def test_energy_is_a_study_currency_stored_per_point_and_refused_where_unmeasurable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from algospeed.cli import main
    from algospeed.core.currency import Currency
    from algospeed.core.result import CurvePoint
    from algospeed.core.status import RunStatus
    from algospeed.run_directory import environment
    from algospeed.study.analysis.cost import cost_of
    from algospeed.study.outcome import RunOutcome
    from algospeed.study.store import STORE_NAME, StudyStore

    measured = CurvePoint(10, 0.5, 320, 0, 1.5, 2e9, 1.0, 0.3, {"accuracy": 0.9}, energy_joules=12.5)
    store = StudyStore.create(tmp_path / STORE_NAME)
    store.add_runs([("k1", "baseline", "10ba", 0, None, {})])
    store.mark_running("k1")
    store.finish(RunOutcome("k1", RunStatus.COMPLETED, (measured,), wall_seconds=3.0))
    stored = store.points("k1")[0]
    store.close()
    assert stored.energy_joules == 12.5 and cost_of(stored, Currency.ENERGY) == 12.5
    with pytest.raises(UsageError, match="energy was not measured"):
        cost_of(CurvePoint(10, 0.5, 320, 0, 1.5, 2e9, 1.0, 0.3, {}), Currency.ENERGY)  # absent is never zero

    monkeypatch.setattr(energy_module, "RAPL_ROOT", tmp_path / "nowhere")
    assert environment()["energy"].startswith("not measured: no RAPL")
    study = tmp_path / "study.yaml"
    study.write_text("workload: synthetic\narms: {baseline: []}\nbudgets: [10ba]\nseeds: 1\ncurrency: energy_joules\n")
    assert main(["study", str(study), "--out", str(tmp_path / "out")]) == 2
    assert "cannot measure it: no RAPL" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    fake_rapl(tmp_path / "powercap")
    monkeypatch.setattr(energy_module, "RAPL_ROOT", tmp_path / "powercap")
    assert environment()["energy"] == "cpu package-0 (RAPL)"
