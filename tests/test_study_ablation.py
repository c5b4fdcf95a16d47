"""The ablation view: each method of a study's stack alone against the baseline, and its marginal worth as
the stack's speedup over the stack without it, read from a planted study store."""

from __future__ import annotations

from pathlib import Path

import pytest

from algospeed.core.result import CurvePoint
from algospeed.core.status import RunStatus
from algospeed.study.ablation import ablation, ablation_markdown
from algospeed.study.analysis import speedup
from algospeed.study.judging import Judging
from algospeed.study.outcome import RunOutcome
from algospeed.study.report import analyse, write_report
from algospeed.study.spec import validate_study_spec
from algospeed.study.store import STORE_NAME, StudyStore

ARMS = {"baseline": [], "smooth": ["label_smoothing"], "average": ["ema"], "both": ["label_smoothing", "ema"]}
# Steps each arm's seeds take to reach the target: smoothing halves them, EMA saves a fifth, both save 60%.
STEPS = {"baseline": [100, 120, 80], "smooth": [50, 60, 40], "average": [80, 96, 64], "both": [40, 48, 32]}


def plant(folder: Path, arms: dict[str, list[str]]) -> Path:
    """A finished study of `arms` whose seeds reach accuracy 0.5 exactly at their planted step."""
    spec = validate_study_spec(
        {"workload": "digits", "arms": arms, "budgets": ["200ba"], "seeds": 3, "target": 0.5, "currency": "steps"}
        | {"tuning": "none"}
    )
    store = StudyStore.create(folder / STORE_NAME)
    store.set_meta("spec", spec.model_dump(mode="json"))
    store.set_meta("judging", Judging.of(spec).to_dict())
    keys = []
    for arm in arms:
        for seed, steps in enumerate(STEPS[arm]):
            key = f"{arm}-{seed}"
            keys.append(key)
            store.add_runs([(key, arm, "200ba", seed, None, {})])
            points = tuple(
                CurvePoint(
                    step=step,
                    epoch=0.0,
                    samples=step,
                    tokens=0,
                    train_seconds=step,
                    flops=step,
                    progress=step / 200,
                    train_loss=1.0,
                    metrics={"accuracy": quality},
                )
                for step, quality in ((steps, 0.5), (200, 0.6))
            )
            store.finish(RunOutcome(key, RunStatus.COMPLETED, points, wall_seconds=1.0, schedule_end=0.0))
    store.set_meta("grid", keys)
    store.close()
    return folder


def test_each_method_of_the_stack_is_compared_alone_and_left_out(tmp_path: Path) -> None:
    report = analyse(plant(tmp_path, ARMS))
    result = ablation(report)
    assert result is not None and result.stack == "both"
    rows = {row.method: row for row in result.rows}
    assert (rows["label_smoothing"].alone_arm, rows["label_smoothing"].without_arm) == ("smooth", "average")
    assert (rows["ema"].alone_arm, rows["ema"].without_arm) == ("average", "smooth")
    assert rows["label_smoothing"].alone.estimate == pytest.approx(2.0)
    assert rows["ema"].alone.estimate == pytest.approx(1.25)
    assert rows["ema"].marginal.estimate == pytest.approx(1.25)  # the stack over the stack without EMA
    assert rows["label_smoothing"].marginal.estimate == pytest.approx(2.0)
    assert result.speedup.estimate == pytest.approx(2.5)

    def arm(name: str) -> list:
        return [r for r in report.records if r.arm == name]

    assert rows["ema"].marginal == speedup(arm("smooth"), arm("both"), 0.5, report.currency, report.reference)


def test_the_table_names_what_was_not_run(tmp_path: Path) -> None:
    report = analyse(plant(tmp_path, {key: ARMS[key] for key in ("baseline", "smooth", "both")}))
    lines = ablation_markdown(report, lambda result: f"{result.estimate:.2f}x")
    assert "| all of both | 2.50x | both |  |  |" in lines
    assert "| label_smoothing | 2.00x | smooth | not run |  |" in lines
    assert "| ema | not run |  | 1.25x | smooth |" in lines


def test_a_study_without_a_stack_has_no_ablation(tmp_path: Path) -> None:
    report = analyse(plant(tmp_path, {key: ARMS[key] for key in ("baseline", "smooth")}))
    assert ablation(report) is None and ablation_markdown(report, str) == []


def test_the_report_shows_the_ablation(tmp_path: Path) -> None:
    folder = plant(tmp_path, ARMS)
    write_report(folder)
    assert "| ema | 1.25x [" in (folder / "summary.md").read_text()
    assert "<h2 id='ablation'>Ablation</h2>" in (folder / "report.html").read_text()
