"""A training run's output folder: its spec, its curve as it grows, its summary and checkpoints."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError

from algospeed import __version__
from algospeed.core.callback import Callback
from algospeed.core.checkpoint import list_checkpoints
from algospeed.core.device import resolve_device
from algospeed.core.energy import EnergyMeter
from algospeed.core.files import write_json_atomic, write_text_atomic
from algospeed.core.result import CurvePoint, RunResult, curve_jsonl
from algospeed.core.state import State
from algospeed.errors import UsageError, usage_error_from_validation
from algospeed.run_spec import RunSpec
from algospeed.workloads.registry import get_workload


class RunDirectory:
    """`config.json`, `curve.jsonl`, `summary.json` and `checkpoints/` under one folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.curve = self.root / "curve.jsonl"
        self.summary = self.root / "summary.json"
        self.checkpoints = self.root / "checkpoints"

    def check_new(self, overwrite: bool = False) -> None:
        """A fresh run must not overwrite another run's files, unless asked to replace that run; a run that
        stopped before its first checkpoint has nothing to lose and is replaced without asking."""
        if self.root.exists() and not self.root.is_dir():
            raise UsageError(f"--out {self.root} is a file, not a folder")
        if self.config.exists() and not overwrite and (self.summary.exists() or list_checkpoints(self.checkpoints)):
            raise UsageError(
                f"{self.root} already holds a run; pass --resume to continue it, --overwrite to replace it, "
                "or choose another --out"
            )

    def load_spec(self) -> RunSpec:
        """The spec of the run to resume."""
        if not self.config.is_file():
            raise UsageError(f"nothing to resume: {self.config} does not exist")
        try:
            return RunSpec.model_validate_json(self.config.read_text())
        except ValidationError as error:
            raise usage_error_from_validation(error, f"run config {self.config}") from None

    def start(self, spec: RunSpec, replace: bool = False) -> None:
        """Create the folder (after everything was validated), replacing a previous run if asked (or a run
        that left nothing to resume)."""
        if self.config.exists() and (replace or not list_checkpoints(self.checkpoints)):
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.config, spec.model_dump())

    def write_curve(self, points: list[CurvePoint]) -> None:
        write_text_atomic(self.curve, curve_jsonl(points))

    def finish(self, spec: RunSpec, result: RunResult) -> dict[str, Any]:
        """Write the summary: how the run ended, its final point and when it first reached the target."""
        workload = get_workload(spec.workload)
        metric = workload.metric
        reached = next(
            (
                p
                for p in result.points
                if metric.name in p.metrics and metric.better(p.metrics[metric.name], workload.target)
            ),
            None,
        )
        summary = {
            **result.summary(),
            "spec": spec.model_dump(),
            "metric": metric.name,
            "higher_is_better": metric.higher_is_better,
            "target": workload.target,
            "target_reached_at": reached.to_dict() if reached else None,
            "environment": environment(),
        }
        self.write_curve(result.points)
        write_json_atomic(self.summary, summary)
        return summary


class CurveWriter(Callback):
    """Rewrites `curve.jsonl` at every curve point, so a crashed run keeps the curve it had."""

    name = "curve_writer"

    def __init__(self, directory: RunDirectory) -> None:
        self.directory = directory

    def on_eval_end(self, state: State) -> None:
        self.directory.write_curve(state.curve)


def environment() -> dict[str, Any]:
    """The hardware and software a run used, for its manifest (with what measures energy, or why nothing does)."""
    meter = EnergyMeter.for_device(resolve_device())
    return {
        "algospeed": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "energy": ", ".join(meter.source_names) if meter.available else f"not measured: {meter.reason}",
    }
