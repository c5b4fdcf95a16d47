"""`algospeed profile` and `algospeed bottlenecks`: output, JSON, trace, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from algospeed.cli import main
from algospeed.profile.bottlenecks import FILES, Grid, run_grid, write_outputs
from algospeed.profile.verdict import KINDS

QUICK = ["--workload", "synthetic", "--steps", "8", "--skip", "2", "--warmup", "1"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "imagenet21k"], "unknown workload 'imagenet21k'"),
        (["--steps", "5", "--skip", "4", "--warmup", "1"], "leaves no step to measure"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--skip", "-1"], "must be 0 or more"),
        (["--peak", "guess"], "unknown --peak 'guess'"),
        (["--methods", "warp_drive"], "unknown method 'warp_drive'"),
        (["--methods", "data_echoing:factor=0"], "factor"),
        (["--option", "colour=red"], "has no option colour"),
        (["--batch-size", "0"], "batch_size"),
        (["--trace", "/does/not/exist/trace.json"], "is not a folder"),
    ],
)
def test_profile_errors_are_one_line_and_exit_2(capsys, argv: list[str], message: str) -> None:
    code, out, err = run_cli(capsys, "profile", *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert out == ""


def test_profile_prints_the_table_mfu_verdict_and_advice(capsys) -> None:
    code, out, err = run_cli(capsys, "profile", *QUICK)
    assert code == 0, err
    for expected in ("data wait", "host-to-device", "forward", "backward", "optimizer step", "MFU:", "verdict:"):
        assert expected in out
    assert "algospeed train --workload synthetic" in out or "besides methods" in out


def test_profile_json_and_trace(capsys, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    code, out, err = run_cli(capsys, "profile", *QUICK, "--methods", "label_smoothing", "--json", "--trace", str(trace))
    assert code == 0, err
    payload = json.loads(out)
    assert payload["steps"] == 5 and payload["profiled_steps"] == [3, 4, 5, 6, 7]
    assert sum(row["share"] for row in payload["phases"]) == pytest.approx(1.0)
    assert "method:label_smoothing" in {row["phase"] for row in payload["phases"]}
    assert payload["verdict"]["kind"] in KINDS
    assert payload["advice"] and payload["advice"][0]["kind"] == payload["verdict"]["kind"]
    assert 0 < payload["mfu"] < 1
    events = json.loads(trace.read_text())
    names = {event.get("name") for event in events.get("traceEvents", events)}
    assert {"forward", "backward"} <= names


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--costs", "a,b"], "--costs must be a comma-separated list"),
        (["--workers", "-1"], "--workers must be"),
        (["--echo", "0"], "--echo must be"),
        (["--steps", "3", "--skip", "2"], "--steps must be at least --skip + 2"),
        (["--workload", "nope"], "unknown workload 'nope'"),
    ],
)
def test_bottlenecks_errors_are_one_line_and_exit_2(capsys, argv: list[str], message: str, tmp_path: Path) -> None:
    code, _, err = run_cli(capsys, "bottlenecks", *argv, "--out", str(tmp_path / "b"))
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_bottleneck_experiment_shows_augmentation_turning_the_step_data_bound(tmp_path: Path) -> None:
    grid = Grid(costs=(0.0, 2.0), workers=(0, 1), echo=(1, 2), steps=7, skip=2)
    result = run_grid("synthetic", grid, device="cpu")
    assert len(result.cells) == 8
    plain, heavy = result.cell(0.0, 0, 1), result.cell(2.0, 0, 1)
    assert plain is not None and heavy is not None
    assert heavy.data_bound and heavy.data_share > plain.data_share
    assert heavy.samples_per_second < plain.samples_per_second
    worker = result.cell(2.0, 1, 1)
    assert worker is not None and worker.worker_cpu > 0 and worker.data_share >= worker.data_wait
    paths = write_outputs(result, tmp_path)
    assert [path.name for path in paths] == list(FILES) and all(path.stat().st_size > 0 for path in paths)
    table = (tmp_path / "bottlenecks.md").read_text()
    assert "| augment ms/sample | workers | echo |" in table and "## Findings" in table
    assert len((tmp_path / "bottlenecks.csv").read_text().splitlines()) == 9


PLUGIN = '''
"""A user's own image workload."""
import torch
from torch import nn

from algospeed.workloads import ADAMW, DataKind, Splits, Workload, register_workload


def load(options):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(256, 1, 8, 8, generator=generator)
    targets = (inputs.mean(dim=(1, 2, 3)) > 0).long()
    return Splits(inputs[:192], targets[:192], inputs[192:], targets[192:])


register_workload(
    Workload(
        name="mine",
        description="bright or dark 8x8 images, a small CNN",
        load=load,
        model=lambda options, classes: nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, classes)
        ),
        data_kind=DataKind.IMAGES,
        target=0.8,
        budget="2ep",
        eval_interval="1ep",
        batch_size=32,
        optimizer=ADAMW,
        lr=1e-2,
    )
)
'''


def test_profile_runs_a_users_own_workload_from_a_plugin(capsys, tmp_path: Path) -> None:
    from algospeed.methods.registry import method_class
    from algospeed.plugins import unload_plugin

    path = tmp_path / "my_workload.py"
    path.write_text(PLUGIN)
    try:
        code, out, err = run_cli(
            capsys, "profile", "--plugin", str(path), "--workload", "mine", "--steps", "8", "--skip", "2", "--json"
        )
    finally:
        unload_plugin(str(path))
    assert code == 0, err
    payload = json.loads(out)
    assert payload["workload"] == "mine" and payload["steps"] == 4
    assert payload["verdict"]["kind"] in KINDS and 0 < payload["mfu"] < 1
    implemented = [m for section in payload["advice"] for m in section["methods"] if m["implemented"]]
    assert implemented
    for method in implemented:
        assert method["command"].startswith(f"algospeed train --workload mine --plugin {path} ")
        assert "images" in method_class(method["name"]).data_kinds
