from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from algospeed.cli import main
from algospeed.core.checkpoint import list_checkpoints

REPO = Path(__file__).resolve().parents[1]
FAST = ["--workload", "digits", "--budget", "3ep", "--eval-every", "1ep", "--quiet"]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_workloads_lists_every_workload_with_its_target(capsys) -> None:
    code, out, _ = run_cli(capsys, "workloads")
    assert code == 0
    for name, target in [("mnist1d", "0.9"), ("mnist5k", "0.97"), ("digits", "0.97"), ("synthetic", "0.75")]:
        line = next(line for line in out.splitlines() if line.startswith(f"│ {name} "))
        assert target in line


def test_train_writes_config_curve_summary_and_checkpoints(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    code, out, err = run_cli(capsys, "train", *FAST, "--seed", "3", "--out", str(out_dir))
    assert code == 0, err
    curve = [json.loads(line) for line in (out_dir / "curve.jsonl").read_text().splitlines()]
    assert [point["step"] for point in curve] == [40, 80, 120]  # 1293 training digits: 144 are held out to validate
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["final"] == curve[-1]
    assert summary["spec"]["seed"] == 3 and summary["environment"]["torch"]
    assert json.loads((out_dir / "config.json").read_text())["workload"] == "digits"
    assert list_checkpoints(out_dir / "checkpoints")
    assert "done: 120 steps" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "imagenet21k"], "unknown workload 'imagenet21k'; valid workloads:"),
        (["--budget", "20 epochs"], "malformed amount '20 epochs': expected a positive number followed by a unit"),
        (["--budget", "0ep"], "amount must be positive"),
        (["--budget", "-3ba"], "malformed amount"),
        (["--eval-every", "often"], "eval_interval: malformed amount"),
        (["--option", "samples"], "--option: expected KEY=VALUE"),
        (["--option", "colour=red"], "has no option colour"),
        (["--batch-size", "0"], "batch_size: Input should be greater than 0"),
        (["--device", "tpu:7"], "unknown device"),
        (["--workload", "cifar10", "--option", "path=/does/not/exist"], "does not exist"),
    ],
)
def test_bad_input_is_one_clear_line_exit_2_and_nothing_written(capsys, tmp_path: Path, argv, message) -> None:
    out_dir = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--quiet", "--out", str(out_dir), *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) <= 3  # one line, soft-wrapped by rich at most
    assert not out_dir.exists()


def test_an_existing_run_is_not_overwritten_and_resume_needs_a_run(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "train", *FAST, "--out", str(out_dir))[0] == 0
    before = (out_dir / "curve.jsonl").read_text()
    code, _, err = run_cli(capsys, "train", *FAST, "--out", str(out_dir))
    assert code == 2 and "already holds a run; pass --resume" in err
    assert (out_dir / "curve.jsonl").read_text() == before
    code, _, err = run_cli(capsys, "train", "--quiet", "--out", str(tmp_path / "none"), "--resume")
    assert code == 2 and "nothing to resume" in err
    code, _, err = run_cli(capsys, "train", *FAST, "--out", str(out_dir), "--resume", "--overwrite")
    assert code == 2 and "pass one of them" in err
    assert run_cli(capsys, "train", *FAST, "--seed", "1", "--out", str(out_dir), "--overwrite")[0] == 0
    assert json.loads((out_dir / "config.json").read_text())["seed"] == 1
    assert len(list_checkpoints(out_dir / "checkpoints")) == 2  # the old run's checkpoints are gone


def test_resume_with_a_different_budget_or_a_corrupt_checkpoint_is_a_clear_error(capsys, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "train", *FAST, "--out", str(out_dir))[0] == 0
    code, _, err = run_cli(capsys, "train", "--quiet", "--out", str(out_dir), "--resume", "--budget", "5ep")
    assert code == 2 and "budget '5ep' (saved: '3ep') differs" in err
    for checkpoint in list_checkpoints(out_dir / "checkpoints"):
        checkpoint.write_bytes(b"garbage")
    code, _, err = run_cli(capsys, "train", "--quiet", "--out", str(out_dir), "--resume")
    assert code == 2 and "corrupt or unreadable" in err


def test_the_command_line_exits_2_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.run(
        [sys.executable, "-m", "algospeed.cli", "train", "--budget", "lots", "--out", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 2
    assert "malformed amount 'lots'" in process.stderr and "Traceback" not in process.stderr
    unknown = subprocess.run([sys.executable, "-m", "algospeed.cli", "trian"], env=env, capture_output=True, text=True)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
