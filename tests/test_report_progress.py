"""Progress where nobody watches a terminal: a study and a training run print lines to a file or a pipe, and
the live view counts only the runs that really train (a whole study's lines: tests/test_report.py)."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from algospeed.progress_bar import ProgressBar, duration_text
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.study.live_view import StudyProgress, StudyView

LINE = re.compile(r"study \d\d:\d\d:\d\d: (\d+)/(\d+) done, (\d+) running, (\d+) left, (\d+) failed, ETA \S+")


def _piped() -> tuple[Console, io.StringIO]:
    shown = io.StringIO()
    return Console(file=shown, force_terminal=False, width=80), shown


def test_running_counts_only_what_the_workers_can_train() -> None:
    progress = StudyProgress(total=27, workers=1, in_flight=18, done=3)
    assert (progress.running, progress.left) == (1, 23)
    progress.in_flight = 0
    assert (progress.running, progress.left) == (0, 24)
    ray = StudyProgress(total=27, workers=None, in_flight=5)
    assert ray.running == 5


def test_durations_read_at_a_glance() -> None:
    assert [duration_text(s) for s in (4.4, 65, 3725)] == ["4s", "1m 05s", "1h 02m"]


def test_a_silent_study_still_prints_a_line_every_interval() -> None:
    console, shown = _piped()
    with StudyView(StudyProgress(total=3, workers=1), console, interval=0.05):
        deadline = time.monotonic() + 60
        while shown.getvalue().count("\n") < 3:  # the opening line and two heartbeats, though no run finished
            assert time.monotonic() < deadline, "no heartbeat line"
            time.sleep(0.05)
    assert all(LINE.match(line) for line in shown.getvalue().splitlines())


def test_train_prints_progress_lines_when_not_a_terminal() -> None:
    console, shown = _piped()
    spec = RunSpec.model_validate({"workload": "digits", "budget": "8ba", "eval_interval": "0.5dur"})
    bar = ProgressBar("digits seed 0", "accuracy", console=console, interval=0.0)
    build_trainer(spec, callbacks=[bar]).fit()
    lines = shown.getvalue().splitlines()
    assert len(lines) >= 8 and all(line.startswith("digits seed 0: ") for line in lines), lines
    assert lines[0].startswith("digits seed 0: 0%") and lines[-1].startswith("digits seed 0: 100%")
    assert "accuracy" in lines[-1] and "samples/s" in lines[-1] and "\x1b[" not in shown.getvalue()


def test_train_into_a_pipe_prints_progress_on_stderr(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from algospeed.cli import main

    assert main(["train", "--workload", "digits", "--budget", "4ba", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("digits seed 0: ")]
    assert lines[0].startswith("digits seed 0: 0%, step 0") and lines[-1].startswith("digits seed 0: 100%, step 4")
    assert "digits seed 0:" not in captured.out and "\x1b[" not in captured.err
