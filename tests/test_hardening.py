"""Hostile input and faults: each class ends in one clear line, a non-zero exit code, and nothing written
outside (or left behind in) its folder; kills, locks and orphans lose nothing."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import algospeed.core.trainer as trainer_module
from algospeed.cli import main, os_error_line
from algospeed.core.checkpoint import FORMAT, list_checkpoints
from algospeed.plugins import unload_plugin
from algospeed.run_directory import RunDirectory
from algospeed.run_spec import RunSpec

REPO = Path(__file__).resolve().parents[1]
FAST = ["--workload", "digits", "--eval-every", "1ep", "--quiet"]
STUDY = {"workload": "digits", "arms": {"baseline": []}, "budgets": ["10ba"], "seeds": 1, "eval_interval": "0.5dur"}


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def one_line(err: str) -> str:
    assert len(err.splitlines()) == 1, err
    return err


def tree(folder: Path) -> dict[str, str]:
    """Every file under `folder` with the hash of its content (what must not change)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------- 1. resume keeps its settings
def test_resume_keeps_a_custom_checkpoint_interval(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "run"
    settings = [
        "--budget",
        "160ba",
        "--checkpoint-every",
        "8ba",
        "--eval-every",
        "0.5dur",
        "--quiet",
        "--out",
        str(out),
    ]
    command = [sys.executable, "-m", "algospeed.cli", "train", "--workload", "mnist1d", "--option", "samples=2000"]
    command += settings
    process = subprocess.Popen(command, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    deadline = time.monotonic() + 120
    while not list_checkpoints(out / "checkpoints"):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 128 + signal.SIGTERM
    stopped = trainer_module.read_checkpoint(list_checkpoints(out / "checkpoints")[-1])[1]["clock"]["steps"]
    written: list[int] = []
    original = trainer_module.write_checkpoint
    monkeypatch.setattr(
        trainer_module, "write_checkpoint", lambda d, step, *a, **k: written.append(step) or original(d, step, *a, **k)
    )
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # no --checkpoint-every: the saved 8ba
    gaps = [b - a for a, b in zip([stopped, *written], written[:-1], strict=False)]
    assert written and set(gaps) == {8} and len(written) >= (160 - stopped) // 8  # every 8 batches, as saved
    assert json.loads((out / "config.json").read_text())["checkpoint_interval"] == "8ba"


def test_resume_with_the_same_arguments_continues_and_other_ones_are_named(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "run")
    args = ["train", *FAST, "--methods", "label_smoothing,ema", "--budget", "8ba", "--out", out]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0  # the natural way to continue: the same command with --resume
    capsys.readouterr()
    code, err = run(capsys, "train", "--out", out, "--resume", "--methods", "ema", "--lr", "0.5")
    assert code == 2 and "methods" in one_line(err) and "lr 0.5 (saved: None)" in err


def test_a_run_stopped_before_its_first_checkpoint_restarts_without_overwrite(tmp_path: Path, capsys) -> None:
    directory = RunDirectory(tmp_path / "run")
    directory.start(RunSpec(workload="digits", budget="4ba"))  # a run killed while loading its data
    assert main(["train", *FAST, "--budget", "4ba", "--out", str(directory.root)]) == 0
    assert directory.summary.is_file()
    code, err = run(capsys, "train", *FAST, "--budget", "4ba", "--out", str(directory.root))
    assert code == 2 and "already holds a run" in one_line(err)  # a finished run is never replaced silently


# ----------------------------------------------------------------------------- 2. paths stay inside
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "../../x"}, "study name may not hold path separators"),
        ({"name": "/etc/x"}, "study name may not hold path separators"),
        ({"name": ".."}, "study name may not hold path separators"),
        ({"arms": {"baseline": [], "../../../../x": ["ema"]}}, "an arm name may not hold path separators"),
        ({"arms": {"baseline": [], "a\nb": ["ema"]}}, "control characters"),
        ({"arms": {"baseline": [], "x" * 5000: ["ema"]}}, "an arm name has 1 to 100 characters, got 5000"),
    ],
)
def test_names_that_become_paths_are_refused(tmp_path: Path, capsys, change: dict, message: str) -> None:
    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({**STUDY, **change}))
    before = set(tmp_path.parent.iterdir())
    code, err = run(capsys, "study", str(file))
    assert code == 2 and message in one_line(err) and len(err) < 400
    assert set(tmp_path.parent.iterdir()) == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


# --------------------------------------------------------------------------------- 3. markup stays text
MARKUP = textwrap.dedent(
    """
    from torch import nn
    from algospeed.workloads import ADAMW, DataKind, get_workload, register_workload
    import dataclasses

    register_workload(dataclasses.replace(get_workload("digits"), name="[/bold]", description="[red]5"))
    """
)


@pytest.fixture
def markup_plugin(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "markup.py"
    path.write_text(MARKUP)
    yield path
    unload_plugin(str(path))


def test_names_that_look_like_markup_are_printed_as_they_are(markup_plugin: Path, tmp_path: Path, capsys) -> None:
    assert main(["workloads", "--plugin", str(markup_plugin)]) == 0
    out = capsys.readouterr().out
    assert "[/bold]" in out and "[red]5" in out
    assert main(["train", "--plugin", str(markup_plugin), "--workload", "[/bold]", "--budget", "4ba", "--out",
                 str(tmp_path / "r")]) == 0  # fmt: skip
    study = {**STUDY, "arms": {"baseline": [], "[red]5": ["ema"], "$\\frac{$": ["label_smoothing"]}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study))
    assert main(["study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "study"), "--workers", "1"]) == 0
    shown = capsys.readouterr().out
    assert "[red]5" in shown and "$\\frac{$" in shown
    assert main(["compare", str(tmp_path / "study"), str(tmp_path / "study")]) == 0
    assert (tmp_path / "study" / "report.html").read_text().count("data:image/png") >= 3  # the figures were drawn


# ----------------------------------------------------------------------------------- 4. bounded input
def test_a_yaml_bomb_is_refused_quickly_in_one_short_line(tmp_path: Path, capsys) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\nworkload: [*a8]\n")  # 9^9 values, 400 bytes
    started = time.perf_counter()
    code, err = run(capsys, "study", str(tmp_path / "bomb.yaml"), "--out", str(tmp_path / "out"))
    assert code == 2 and "expands to more than 100000 values" in one_line(err) and len(err) < 300
    assert time.perf_counter() - started < 20 and not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 5. OS and file errors
def test_os_errors_are_one_line_naming_the_path(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    for out, message in [(tmp_path / "file" / "run", "file"), (Path("/proc/forbidden/x"), "/proc/forbidden")]:
        code, err = run(capsys, "train", *FAST, "--budget", "2ba", "--out", str(out))
        assert code == 2 and message in one_line(err), err
    full = OSError(errno.ENOSPC, "No space left on device", "/data/run/ckpt")
    assert os_error_line(full) == "/data/run/ckpt: the disk is full (no space left on the device)"


def test_a_full_disk_while_training_is_one_line_and_exit_3(tmp_path: Path, capsys, monkeypatch) -> None:
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints"))

    monkeypatch.setattr(trainer_module, "write_checkpoint", full)
    code, err = run(
        capsys, "train", *FAST, "--budget", "8ba", "--checkpoint-every", "4ba", "--out", str(tmp_path / "run")
    )
    assert code == 3 and "the disk is full" in one_line(err)


def test_stores_that_are_not_this_algospeeds_are_refused_untouched(tmp_path: Path, capsys) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / "study.sqlite") as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    before = tree(foreign)
    code, err = run(capsys, "report", str(foreign))
    assert code == 2 and "study.sqlite" in one_line(err) and tree(foreign) == before
    older = tmp_path / "older"
    older.mkdir()
    with sqlite3.connect(older / "study.sqlite") as db:
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
    code, err = run(capsys, "report", str(older))
    assert code == 2 and "store schema 1" in one_line(err)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "study.sqlite").write_bytes(b"")  # a zero-byte store holds nothing to lose: a new study
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(STUDY))
    assert main(["study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "empty"), "--workers", "1"]) == 0


def test_odd_checkpoints_cifar_files_and_images_are_one_line(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *FAST, "--budget", "4ba", "--checkpoint-every", "2ba", "--out", str(out)]) == 0
    for path in list_checkpoints(out / "checkpoints"):
        meta = {"fingerprint": trainer_module.read_checkpoint(path)[1]["fingerprint"]}  # its own run, but hollow
        torch.save({"format": FORMAT, "meta": json.dumps(meta), "model": {"w": torch.zeros(1)}}, path)
    (out / "summary.json").unlink()
    code, err = run(capsys, "train", "--out", str(out), "--resume")
    assert code == 2 and "does not match this run" in one_line(err)

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    import pickle

    for name in ("data_batch_1", "test_batch"):
        images = np.zeros((4, 3072), dtype=np.uint8)
        (cifar / name).write_bytes(pickle.dumps({"data": images, "labels": [0, 1, 2]}))
    code, err = run(capsys, "train", "--workload", "cifar10", "--option", f"path={cifar}", "--out", str(tmp_path / "c"))
    assert code == 2 and "holds 4 images but 3 labels" in one_line(err) and not (tmp_path / "c").exists()

    from PIL import Image

    for split in ("train", "val"):
        for label in ("a", "b"):
            (tmp_path / "img" / split / label).mkdir(parents=True)
            for i in range(4):
                Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "img" / split / label / f"{i}.png")
    (tmp_path / "img" / "train" / "a" / "0.png").write_bytes(b"not a png")
    options = ["--option", f"path={tmp_path / 'img'}", "--option", "size=8", "--option", "workers=0"]
    options += ["--batch-size", "2", "--budget", "8ba", "--quiet"]  # quiet: no progress line off a terminal
    code, err = run(capsys, "train", "--workload", "imagefolder", *options, "--out", str(tmp_path / "i"))
    assert code == 3 and "0.png cannot be decoded" in one_line(err)


# ---------------------------------------------------------------------- 6. validated before anything
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", str(2**63)], "seed: Input should be less than"),
        (["--workload", "synthetic", "--option", "classes=1"], "synthetic classes must be between 2"),
        (["--workload", "synthetic", "--option", "samples=99999999999"], "synthetic samples must be between"),
        (["--workload", "synthetic", "--option", "shape=1000x1000x1000"], "is over 2^28 values"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--batch-size", "5000"], "batch size 5000 is larger than the 1293 training samples"),
        (["--budget", "-3ep"], "malformed amount '-3ep'"),
        (["--eval-every", "2dur"], "at most 1dur"),
    ],
)
def test_bad_run_settings_are_refused_before_anything_is_written(tmp_path: Path, capsys, argv, message) -> None:
    out = tmp_path / "run"
    code, err = run(capsys, "train", "--workload", "digits", "--budget", "2ba", *argv, "--out", str(out))
    assert code == 2 and message in one_line(err) and not out.exists()


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        ({"budgets": 5}, [], "budgets are a list of amounts"),
        ({"budgets": None}, [], "budgets are a list of amounts"),
        ({"device": "tpu"}, [], "unknown device 'tpu'"),
        ({"target": float("nan")}, [], "target: Input should be a finite number"),
        ({"seeds": [2**63]}, [], "seeds must be below"),
        ({"batch_size": 5000}, [], "batch size 5000 is larger than the 1293 training samples"),
        ({}, ["--executor", "slurm"], "unknown executor 'slurm'"),
        ({}, ["--workers", "-1"], "--workers must be at least 1"),
        ({}, ["--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_bad_studies_are_refused_before_anything_is_written(tmp_path: Path, capsys, change, extra, message) -> None:
    file, out = tmp_path / "s.yaml", tmp_path / "out"
    file.write_text(yaml.safe_dump({**STUDY, **change}))
    code, err = run(capsys, "study", str(file), "--out", str(out), *extra)
    assert code == 2 and message in one_line(err) and not out.exists()


FAILING = textwrap.dedent(
    """
    from algospeed.core.callback import Method
    from algospeed.methods import register
    from algospeed.taxonomy.axes import How, Place, What, When, Where


    @register("explode")
    class Explode(Method):
        place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

        def on_batch_end(self, state) -> None:
            raise RuntimeError("boom")
    """
)


def test_a_study_whose_runs_all_fail_exits_3(tmp_path: Path, capsys) -> None:
    plugin = tmp_path / "explode.py"
    plugin.write_text(FAILING)
    file = tmp_path / "s.yaml"
    file.write_text(yaml.safe_dump({**STUDY, "plugins": [str(plugin)], "arms": {"baseline": ["explode"]}}))
    try:
        code, err = run(capsys, "study", str(file), "--out", str(tmp_path / "out"), "--workers", "1")
    finally:
        unload_plugin(str(plugin))
    assert code == 3 and "every run of the study failed" in err.splitlines()[-1] and "boom" in err


# -------------------------------------------------------------------------------------- 7. leftovers
def test_a_stale_temporary_checkpoint_is_cleaned_and_a_bad_trace_path_fails(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", *FAST, "--budget", "8ba", "--checkpoint-every", "2ba", "--out", str(out)]) == 0
    stale = out / "checkpoints" / ".ckpt-000000006.pt.tmp-999999"
    stale.write_bytes(b"half a checkpoint")
    (out / "summary.json").unlink()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0 and not stale.exists()
    code, err = run(capsys, "profile", "--workload", "digits", "--steps", "20", "--trace", "/proc/no/trace.json")
    assert code == 2 and "cannot write --trace" in one_line(err)


# ------------------------------------------------------------------------------ 8. locks and orphans
def _study_process(folder: Path, file: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "algospeed.cli", "study", str(file), "--out", str(folder), "--workers", "1"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(child) for child in found]


@pytest.mark.slow
def test_a_second_study_on_one_folder_is_refused_and_workers_die_with_their_parent(tmp_path: Path, capsys) -> None:
    file, folder = tmp_path / "s.yaml", tmp_path / "study"
    file.write_text(yaml.safe_dump({**STUDY, "budgets": ["400ba", "800ba"], "seeds": 3}))
    process = _study_process(folder, file)
    deadline = time.monotonic() + 120
    workers: list[int] = []
    while not workers:
        assert time.monotonic() < deadline and process.poll() is None
        workers = [c for c in _children(process.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        time.sleep(0.2)
    code, err = run(capsys, "study", str(file), "--out", str(folder), "--workers", "1")
    assert code == 2 and f"in use by process {process.pid}" in one_line(err)
    children = _children(process.pid)  # the workers and multiprocessing's resource tracker
    assert any(b"resource_tracker" in Path(f"/proc/{c}/cmdline").read_bytes() for c in children)
    os.kill(process.pid, signal.SIGKILL)  # the parent alone: none of its children may live on as orphans
    process.wait(timeout=30)
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, "a worker or the resource tracker outlived its study"
        time.sleep(0.2)


# ------------------------------------------------------------------------------------ 9. spreadsheets
def test_cells_a_spreadsheet_would_run_are_neutralized(tmp_path: Path) -> None:
    arms = {"baseline": [], "=cmd|' -C calc'!A0": ["ema"], "@sum": ["label_smoothing"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({**STUDY, "arms": arms}))
    assert main(["study", str(tmp_path / "s.yaml"), "--out", str(tmp_path / "study"), "--workers", "1"]) == 0
    with open(tmp_path / "study" / "runs.csv", newline="") as handle:
        seen = {row["arm"] for row in csv.DictReader(handle)}
    assert {row_arm for row_arm in seen} == {"baseline", "'=cmd|' -C calc'!A0", "'@sum"}


# ------------------------------------------------------------------------------- 10. one line each
@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--budgett", "3ep"],
        ["train", "--seed", "many"],
        ["tarin"],
        ["study", "--workers"],
        ["taxonomy", "--where", "nowhere"],
    ],
)
def test_framework_usage_errors_are_one_line(capsys, argv: list[str]) -> None:
    code, err = run(capsys, *argv)
    assert code == 2 and one_line(err).startswith("error:")


def test_yaml_errors_are_one_line_and_verbose_adds_the_details(tmp_path: Path, capsys) -> None:
    (tmp_path / "s.yaml").write_text("workload: digits\narms: {baseline: [\n  budgets: [1ep\n")
    code, err = run(capsys, "study", str(tmp_path / "s.yaml"))
    assert code == 2 and "is not valid YAML" in one_line(err)
    code, err = run(capsys, "--verbose", "study", str(tmp_path / "s.yaml"))
    assert code == 2 and len(err.splitlines()) > 1 and "Traceback" in err
