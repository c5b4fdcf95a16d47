"""Experiment-tracker loggers as algospeed callbacks: each curve point, with every metric and every cost
currency, goes to TensorBoard, MLflow, a CSV file or Weights & Biases as it is recorded.

    >>> from algospeed.integrations.loggers import logger_from_spec
    >>> logger_from_spec("csv:runs/metrics.csv").path.name
    'metrics.csv'

Pass one in a `Trainer`'s `callbacks` (or an adapter's `methods`). A point's values are its metrics
under their own names and its costs under `cost/` (steps, samples, tokens, train_seconds, flops,
extra_steps, and energy_joules where the machine measured energy: absent, not zero, elsewhere), with
`epoch`, `progress` and `train_loss`, all at the point's step.
"""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path
from typing import Any

from algospeed.core.callback import Callback
from algospeed.core.result import CurvePoint
from algospeed.core.state import State
from algospeed.errors import UsageError

COSTS = ("steps", "samples", "tokens", "train_seconds", "flops", "extra_steps", "energy_joules")


def point_values(point: CurvePoint) -> dict[str, float]:
    """A curve point as flat named numbers: metrics by name, costs under `cost/`; unmeasured ones left out."""
    costs = {
        "steps": point.step,
        "samples": point.samples,
        "tokens": point.tokens,
        "train_seconds": point.train_seconds,
        "flops": point.flops,
        "extra_steps": point.extra_steps,
        "energy_joules": point.energy_joules,
    }
    values: dict[str, Any] = {"epoch": point.epoch, "progress": point.progress, "train_loss": point.train_loss}
    values.update({f"cost/{name}": value for name, value in costs.items()})
    values.update(point.metrics)
    return {key: float(value) for key, value in values.items() if value is not None}


class CurveLogger(Callback):
    """Sends each new curve point to a tracker (`write`) and closes it when the run ends (`close`)."""

    def on_eval_end(self, state: State) -> None:
        if state.curve:
            self.write(state, state.curve[-1])

    def on_fit_end(self, state: State) -> None:
        self.close()

    def write(self, state: State, point: CurvePoint) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Flush and let go of the tracker."""


class CsvLogger(CurveLogger):
    """The whole curve as a CSV file, one row per point, rewritten at each point (from `state.curve`, so a
    resumed run's file holds the points from before the interruption too)."""

    name = "csv_logger"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def write(self, state: State, point: CurvePoint) -> None:
        rows = [point_values(p) for p in state.curve]
        columns = list(dict.fromkeys(key for row in rows for key in row))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        with partial.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
        partial.replace(self.path)


class TensorBoardLogger(CurveLogger):
    """Scalars in a TensorBoard event file under `log_dir`, at each point's step."""

    name = "tensorboard_logger"

    def __init__(self, log_dir: str | Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UsageError("the tensorboard logger needs the tensorboard package: pip install tensorboard") from None
        self.log_dir = Path(log_dir)
        self._writer_class = SummaryWriter
        self._writer: Any = None

    def write(self, state: State, point: CurvePoint) -> None:
        if self._writer is None:
            self._writer = self._writer_class(log_dir=str(self.log_dir))
        for key, value in point_values(point).items():
            self._writer.add_scalar(key, value, global_step=point.step)
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class MlflowLogger(CurveLogger):
    """Metrics of one MLflow run in a local file store under `root` (no server), or at a tracking URI
    (`sqlite:///runs/mlflow.db`); a resumed run logs into the same MLflow run, whose id the checkpoint
    carries. MLflow 3 keeps its file store in maintenance mode and refuses it unless
    `MLFLOW_ALLOW_FILE_STORE` is set, which asking for one here does (a database store migrates its
    tables on first use, seconds where the file store takes none)."""

    name = "mlflow_logger"

    def __init__(self, root: str | Path, experiment: str = "algospeed") -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UsageError("the mlflow logger needs the mlflow package: pip install mlflow") from None
        self.experiment = experiment
        self.root = None if "://" in str(root) else Path(root)
        self.tracking_uri = str(root) if self.root is None else self.root.resolve().as_uri()
        self._client_class = MlflowClient
        self._client: Any = None
        self.run_id: str | None = None

    def _open(self) -> Any:
        if self._client is None:
            if self.root is not None:
                self.root.mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self._client = self._client_class(tracking_uri=self.tracking_uri)
        if self.run_id is None:
            found = self._client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment)
            self.run_id = self._client.create_run(experiment_id).info.run_id
        return self._client

    def write(self, state: State, point: CurvePoint) -> None:
        from mlflow.entities import Metric

        client = self._open()
        stamp = int(time.time() * 1000)
        metrics = [
            Metric(key, value, stamp, point.step) for key, value in point_values(point).items() if math.isfinite(value)
        ]
        client.log_batch(self.run_id, metrics=metrics)

    def close(self) -> None:
        if self._client is not None and self.run_id is not None:
            self._client.set_terminated(self.run_id)

    def state_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id} if self.run_id else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.run_id = state.get("run_id", self.run_id)


class WandbLogger(CurveLogger):
    """A Weights & Biases run kept offline under `folder` (`WANDB_MODE=offline`: nothing is sent; `wandb sync`
    uploads it later)."""

    name = "wandb_logger"

    def __init__(self, folder: str | Path, project: str = "algospeed") -> None:
        try:
            import wandb
        except ImportError:
            raise UsageError("the wandb logger needs the wandb package: pip install wandb") from None
        self.folder = Path(folder)
        self.project = project
        self._wandb = wandb
        self._run: Any = None

    def write(self, state: State, point: CurvePoint) -> None:
        if self._run is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._run = self._wandb.init(project=self.project, dir=str(self.folder), mode="offline")
        self._run.log(point_values(point), step=point.step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


LOGGERS: dict[str, type[CurveLogger]] = {
    "tensorboard": TensorBoardLogger,
    "mlflow": MlflowLogger,
    "csv": CsvLogger,
    "wandb": WandbLogger,
}


def logger_from_spec(text: str) -> CurveLogger:
    """A logger from `KIND:PATH`: `tensorboard:runs/tb`, `mlflow:runs/mlruns`, `csv:runs/metrics.csv` or
    `wandb:runs/wandb`; a malformed spec, an unknown kind or a missing package is a one-line `UsageError`."""
    kind, separator, path = text.strip().partition(":")
    kinds = ", ".join(LOGGERS)
    if kind not in LOGGERS:
        raise UsageError(f"unknown logger {kind!r} in {text!r}: the loggers are {kinds}")
    if not separator or not path.strip():
        raise UsageError(f"logger {text!r} needs a path: {kind}:PATH")
    return LOGGERS[kind](path.strip())


def run_logger_spec(text: str, run: str) -> str:
    """The spec a logger given for a whole study has for its run named `run` (a slug): TensorBoard and
    Weights & Biases write a folder per run, a CSV logger a file per run beside the others, MLflow keeps
    one store and a run per run. Local paths become absolute, since workers may start elsewhere."""
    logger_from_spec(text)  # a bad spec is refused before any run starts
    kind, _, path = text.strip().partition(":")
    path = path.strip()
    if kind == "mlflow":
        return text.strip() if "://" in path else f"mlflow:{Path(path).resolve()}"
    root = Path(path).resolve()
    if kind == "csv":
        return f"csv:{root.with_suffix('') / f'{run}.csv'}"
    return f"{kind}:{root / run}"
