"""Loggers write every metric and every cost currency of each curve point, read back with each library's own
reader; specs parse or fail in one line; a resumed run's log continues the interrupted one's."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from algospeed.core.callback import Callback
from algospeed.core.data import InMemoryLoader
from algospeed.core.result import CurvePoint
from algospeed.core.state import State
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.integrations.loggers import (
    CsvLogger,
    MlflowLogger,
    TensorBoardLogger,
    logger_from_spec,
    point_values,
)

COST_KEYS = {"cost/steps", "cost/samples", "cost/tokens", "cost/train_seconds", "cost/flops", "cost/extra_steps"}


def make_trainer(callbacks: list[Callback], checkpoint_dir: Path | None = None) -> Trainer:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(64, 8, generator=generator)
    data = InMemoryLoader(inputs, (inputs[:, 0] > 0).long(), batch_size=16, seed=0)
    torch.manual_seed(0)
    return Trainer(
        nn.Linear(8, 2),
        data,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.1),
        budget="6ba",
        eval_data=data,
        eval_interval="2ba",
        callbacks=callbacks,
        device="cpu",
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval="2ba",
    )


def test_each_logger_records_every_metric_and_cost_of_every_point(tmp_path: Path) -> None:
    loggers = [
        logger_from_spec(f"csv:{tmp_path / 'metrics.csv'}"),
        logger_from_spec(f"tensorboard:{tmp_path / 'tb'}"),
        logger_from_spec(f"mlflow:{tmp_path / 'mlruns'}"),
    ]
    points = make_trainer(loggers).fit().points
    expected = [point_values(point) for point in points]
    assert COST_KEYS | {"accuracy", "train_loss", "epoch", "progress"} == set(expected[0])
    assert "cost/energy_joules" not in expected[0]  # unmeasured here: absent, not zero

    with (tmp_path / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert [{key: float(value) for key, value in row.items()} for row in rows] == expected

    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert set(events.Tags()["scalars"]) == set(expected[0])
    for key in expected[0]:
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [p.step for p in points]
        assert [s.value for s in scalars] == pytest.approx([values[key] for values in expected], rel=1e-6)

    mlflow_logger = loggers[2]
    assert isinstance(mlflow_logger, MlflowLogger)
    client = MlflowClient(tracking_uri=mlflow_logger.tracking_uri)
    run = client.get_run(mlflow_logger.run_id)
    assert run.info.status == "FINISHED"
    assert set(run.data.metrics) == set(expected[0])
    for key in expected[0]:
        history = sorted(client.get_metric_history(mlflow_logger.run_id, key), key=lambda m: m.step)
        assert [m.step for m in history] == [p.step for p in points]
        assert [m.value for m in history] == pytest.approx([values[key] for values in expected])


def test_a_measured_energy_is_logged_as_a_cost() -> None:
    point = CurvePoint(3, 0.5, 48, 0, 1.5, 9.0, 0.5, 0.7, {"accuracy": 0.8}, energy_joules=12.5)
    assert point_values(point)["cost/energy_joules"] == 12.5


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_batch_end(self, state: State) -> None:
        state.stop_requested = state.clock.steps == self.step


def test_a_resumed_run_continues_its_csv_file_and_its_mlflow_run(tmp_path: Path) -> None:
    def loggers() -> list[Callback]:
        return [CsvLogger(tmp_path / "m.csv"), MlflowLogger(tmp_path / "mlruns")]

    first = loggers()
    make_trainer([*first, StopAt(3)], tmp_path / "ckpt").fit()
    again = loggers()
    result = make_trainer([*again, StopAt(-1)], tmp_path / "ckpt").fit(resume_from=tmp_path / "ckpt")
    with (tmp_path / "m.csv").open() as file:
        assert [int(float(row["cost/steps"])) for row in csv.DictReader(file)] == [2, 4, 6]
    assert len(result.points) == 3
    assert again[1].run_id == first[1].run_id
    client = MlflowClient(tracking_uri=again[1].tracking_uri)
    assert [m.step for m in client.get_metric_history(again[1].run_id, "accuracy")] == [2, 4, 6]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            "neptune:runs/x",
            "unknown logger 'neptune' in 'neptune:runs/x': the loggers are tensorboard, mlflow, csv, wandb",
        ),
        ("csv", "needs a path: csv:PATH"),
        ("tensorboard:  ", "needs a path"),
        ("", "unknown logger ''"),
    ],
)
def test_a_bad_spec_is_one_line(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as error:
        logger_from_spec(spec)
    assert "\n" not in str(error.value)


def test_spec_kinds_build_their_loggers(tmp_path: Path) -> None:
    assert isinstance(logger_from_spec(f"csv:{tmp_path}/m.csv"), CsvLogger)
    assert isinstance(logger_from_spec(f"tensorboard:{tmp_path}/tb"), TensorBoardLogger)
    database = logger_from_spec(f"mlflow:sqlite:///{tmp_path}/mlflow.db")
    assert isinstance(database, MlflowLogger) and database.tracking_uri.startswith("sqlite:///")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_its_package_is_a_usage_error_saying_how_to_install_it() -> None:
    with pytest.raises(UsageError, match="pip install wandb"):
        logger_from_spec("wandb:runs/wandb")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_wandb_offline_writes_a_local_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    make_trainer([logger_from_spec(f"wandb:{tmp_path / 'wandb'}")]).fit()
    assert list((tmp_path / "wandb").rglob("*.wandb"))


def test_train_logs_its_curve_with_logger_options(tmp_path: Path) -> None:
    from algospeed.cli import main

    out = tmp_path / "run"
    argv = ["train", "--workload", "synthetic", "--budget", "20ba", "--eval-every", "10ba", "--quiet"]
    loggers = ["--logger", f"csv:{tmp_path / 'metrics.csv'}", "--logger", f"tensorboard:{tmp_path / 'tb'}"]
    assert main([*argv, "--out", str(out), *loggers]) == 0
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    with open(tmp_path / "metrics.csv", newline="") as file:
        assert [int(float(row["cost/steps"])) for row in csv.DictReader(file)] == [point["step"] for point in curve]
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    assert [event.step for event in events.Scalars("accuracy")] == [point["step"] for point in curve]


def test_a_bad_logger_option_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from algospeed.cli import main

    assert main(["train", "--workload", "synthetic", "--out", str(tmp_path / "run"), "--logger", "nope:x"]) == 2
    assert not (tmp_path / "run").exists()


def test_every_run_of_a_study_logs_to_its_own_place(tmp_path: Path) -> None:
    from algospeed.study.runner import run_study
    from algospeed.study.spec import slug, validate_study_spec

    settings = {"name": "logged", "workload": "synthetic", "arms": {"baseline": []}, "budgets": ["10ba", "20ba"]}
    spec = validate_study_spec({**settings, "seeds": 1, "eval_interval": "5ba", "target": 0.5})
    tb, table = tmp_path / "tb", tmp_path / "metrics.csv"
    store = run_study(spec, tmp_path / "study", workers=1, loggers=[f"tensorboard:{tb}", f"csv:{table}"])
    runs = store.runs()
    assert len(runs) == 2
    for run in runs:
        steps = [point.step for point in store.points(run.key)]
        events = EventAccumulator(str(tb / slug(run.key)))
        events.Reload()
        assert [event.step for event in events.Scalars("accuracy")] == steps
        with open(table.with_suffix("") / f"{slug(run.key)}.csv", newline="") as file:
            assert [int(float(row["cost/steps"])) for row in csv.DictReader(file)] == steps
    store.close()
