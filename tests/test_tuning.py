"""Tuning run by the harness (equal, reproducible draws; choice on validation; resumable), per-arm and
effective hyperparameters, the new fairness rules, and `compare`'s refusals."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from algospeed.cli import main
from algospeed.core.currency import Currency
from algospeed.errors import UsageError
from algospeed.plugins import unload_plugin
from algospeed.study.fairness import StudyFacts, check_fairness
from algospeed.study.findings import analyse
from algospeed.study.report import effective_rows
from algospeed.study.runner import run_study
from algospeed.study.spec import validate_study_spec
from algospeed.study.store import STORE_NAME, StudyStore

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "workload": "digits",
    "arms": {"baseline": [], "ema": ["ema"]},
    "budgets": ["12ba", "24ba", "36ba"],
    "seeds": 2,
    "eval_interval": "0.25dur",
    "currency": "steps",
    "tuning": {"trials": 3, "space": {"lr": {"log": [0.01, 0.2]}, "ema.decay": {"linear": [0.9, 0.99]}}},
}


def test_every_arm_gets_the_same_draws_of_the_shared_space_reproducibly() -> None:
    spec = validate_study_spec({**TINY, "arms": {"baseline": [], "ema": ["ema"], "smooth": ["label_smoothing"]}})
    trials = spec.trials()
    by_arm = {arm: [run for run in trials if run.arm == arm] for arm in spec.arms}
    assert all(len(runs) == 3 for runs in by_arm.values())
    lrs = {arm: [run.params.lr for run in runs] for arm, runs in by_arm.items()}
    assert lrs["baseline"] == lrs["ema"] == lrs["smooth"] and len(set(lrs["baseline"])) == 3
    assert all(0.01 <= lr <= 0.2 for lr in lrs["baseline"])
    decays = [run.params.settings["ema.decay"] for run in by_arm["ema"]]
    assert all(0.9 <= d <= 0.99 for d in decays) and not by_arm["baseline"][0].params.settings
    assert [run.spec.methods[0].settings["decay"] for run in by_arm["ema"]] == decays  # the setting reaches the run
    assert [run.key for run in validate_study_spec(TINY).trials()] == [r.key for r in trials if r.arm != "smooth"]
    reseeded = validate_study_spec({**TINY, "tuning": {**TINY["tuning"], "seed": 7}})
    assert [run.params.lr for run in reseeded.trials()][:3] != lrs["baseline"]
    assert {run.seed for run in trials}.isdisjoint(spec.seeds)  # trials never train on the grid's seeds


@pytest.mark.parametrize(
    ("tuning", "message"),
    [
        ({"trials": 2, "space": {"momentum": {"linear": [0.8, 0.9]}}}, "neither one of optimizer, lr"),
        ({"trials": 2, "space": {"lr": {"log": [0.0, 0.1]}}}, "a log range needs low > 0"),
        ({"trials": 2, "space": {"lr": {"linear": [0.2, 0.1]}}}, "finite low < high"),
        ({"trials": 2, "space": {"lr": {"log": [0.1, 0.2], "linear": [0.1, 0.2]}}}, "exactly one of"),
        ({"trials": 2, "space": {"batch_size": {"linear": [16, 64]}}}, "'batch_size' takes choice"),
        ({"trials": 2, "space": {"swa.start": {"linear": [0.5, 0.8]}}}, "settings of methods no arm uses: swa.start"),
        ({"trials": 2, "space": {"ema.colour": {"choice": ["red"]}}}, "method 'ema' has no setting colour"),
        ({"trials": 2, "space": {}}, "tuning.space: Dictionary should have at least 1 item"),
        ({"trials": 2, "budget": "1ep", "space": {"lr": {"log": [0.01, 0.1]}}}, "not in the budgets' unit"),
        ({"trials": 2, "space": {"optimizer": {"choice": ["adamw", "rmsprop"]}}}, "unknown optimizer 'rmsprop'"),
        ({"baseline": 2, "ema": 2}, "tuning no longer declares trials per arm"),
    ],
)
def test_bad_tuning_is_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys, tuning, message: str) -> None:
    file, out = tmp_path / "study.yaml", tmp_path / "out"
    file.write_text(yaml.safe_dump({**TINY, "tuning": tuning}))
    assert main(["study", str(file), "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error
    assert not out.exists()


@pytest.mark.parametrize(
    ("arm", "message"),
    [
        ({"methods": ["ema"], "lr": -1.0}, "lr: Input should be greater than 0"),
        ({"methods": ["ema"], "optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"methods": ["ema"], "settings": {"lion.lr_scale": 0.5}}, "names a method the arm does not use"),
        ({"methods": ["ema"], "settings": {"decay": 0.5}}, "a method setting is named method.setting"),
        ({"methods": ["ema"], "colour": "red"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_arm_mappings_are_clear(arm: dict, message: str) -> None:
    with pytest.raises(UsageError, match="invalid study") as error:
        validate_study_spec({**TINY, "tuning": "none", "arms": {"baseline": [], "x": arm}})
    assert message in str(error.value)


def test_an_arm_mapping_sets_its_own_hyperparameters_over_the_studys() -> None:
    spec = validate_study_spec(
        {
            **TINY,
            "tuning": "none",
            "lr": 0.02,
            "arms": {
                "baseline": [],
                "x": {"methods": ["ema"], "lr": 0.05, "weight_decay": 0.0, "settings": {"ema.decay": 0.95}},
            },
        }
    )
    runs = {run.arm: run.spec for run in spec.grid()[:2]}
    assert (runs["baseline"].lr, runs["x"].lr, runs["x"].weight_decay) == (0.02, 0.05, 0.0)
    assert runs["x"].methods[0].settings == {"decay": 0.95}


MIRROR = textwrap.dedent(
    '''
    """A workload whose test labels are the mirror image of its validation labels."""
    import torch
    from torch import nn

    from algospeed.workloads import ADAMW, DataKind, Splits, Workload, register_workload


    def load(options):
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(1400, 8, generator=generator)
        targets = (inputs[:, 0] + 0.5 * inputs[:, 1] > 0).long()
        return Splits(inputs[:1000], targets[:1000], inputs[1200:], 1 - targets[1200:], inputs[1000:1200],
                      targets[1000:1200])


    register_workload(Workload(name="mirror", description="test labels flipped", load=load,
        model=lambda options, classes: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, classes)),
        data_kind=DataKind.TABULAR, target=0.85, budget="2ep", eval_interval="0.25dur", batch_size=50,
        optimizer=ADAMW, lr=1e-3, validation=0.0))
    '''
)


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "mirror.py"
    path.write_text(MIRROR)
    yield path
    unload_plugin(str(path))


def test_the_chosen_trial_is_the_fastest_on_validation_never_the_best_on_test(mirror: Path, tmp_path: Path) -> None:
    spec = validate_study_spec(
        {
            "plugins": [str(mirror)],
            "workload": "mirror",
            "arms": {"baseline": []},
            "budgets": ["20ba", "40ba"],
            "seeds": 1,
            "eval_interval": "0.1dur",
            "currency": "steps",
            "tuning": {"trials": 4, "space": {"lr": {"log": [3e-4, 3e-2]}}},
        }
    )
    run_study(spec, tmp_path / "study", workers=1).close()
    report = analyse(tmp_path / "study")
    rows = report.trials["baseline"]
    reached = [row for row in rows if row.cost is not None]
    assert reached, "some trial must reach the target on validation"
    chosen = next(row for row in rows if row.chosen)
    assert chosen.cost == min(row.cost for row in reached)
    store = StudyStore.open_existing(tmp_path / "study" / STORE_NAME)
    tested = {run.trial: run.test_metrics["accuracy"] for run in store.runs(set(store.meta("trials")))}
    store.close()
    assert tested[chosen.trial] == min(tested.values())  # the mirrored test split disagrees: it was not looked at
    assert max(tested.values()) > tested[chosen.trial]
    assert report.chosen["baseline"].hyperparameters.lr == chosen.params.lr
    grid_lrs = {record.arm for record in report.records}
    assert grid_lrs == {"baseline"} and report.hyperparameters["baseline"][0]["lr"] == pytest.approx(chosen.params.lr)


def test_a_method_that_rescales_the_learning_rate_shows_it(tmp_path: Path) -> None:
    spec = validate_study_spec(
        {
            **TINY,
            "workload": "mnist1d",
            "options": {"samples": 2000},
            "arms": {"baseline": [], "lion": ["lion"]},
            "budgets": ["8ba"],
            "seeds": 1,
            "tuning": "none",
        }
    )
    run_study(spec, tmp_path, workers=1).close()
    report = analyse(tmp_path)
    base, lion = report.hyperparameters["baseline"][0], report.hyperparameters["lion"][0]
    assert (base["optimizer"], lion["optimizer"]) == ("AdamW", "Lion")
    assert lion["lr"] == pytest.approx(base["lr"] * 0.3)  # lion's default lr_scale, invisible in the spec
    rows = dict(effective_rows(report))
    assert "optimizer=Lion" in rows["lion"] and "lr=0.0009" in rows["lion"]


def test_the_new_rules_fire_on_planted_cases(tmp_path: Path) -> None:
    spec = validate_study_spec({**TINY, "budgets": ["12ba"], "seeds": 1, "tuning": "none", "currency": "train_seconds"})
    run_study(spec, tmp_path, workers=1).close()
    report = analyse(tmp_path)
    store = StudyStore.open_existing(tmp_path / STORE_NAME)
    runs = [dataclasses.replace(run, load=0.5) for run in store.runs()]  # planted: a quiet machine
    store.close()
    facts = StudyFacts(spec=spec, judging=report.judging, runs=runs, trials=[], manifest=report.manifest,
                       summaries=report.summaries)  # fmt: skip
    assert not {"machine_load", "test_selection"} & {w.rule for w in check_fairness(facts)}
    loaded = [dataclasses.replace(run, load=3.0) for run in runs]
    on_test = [dataclasses.replace(run, eval_fingerprint="test:360:x") for run in runs]
    assert "machine_load" in {w.rule for w in check_fairness(dataclasses.replace(facts, runs=loaded))}
    assert "test_selection" in {w.rule for w in check_fairness(dataclasses.replace(facts, runs=on_test))}
    steps = dataclasses.replace(facts, spec=spec.model_copy(update={"currency": Currency.REFERENCE}), runs=loaded)
    assert "machine_load" not in {w.rule for w in check_fairness(steps)}  # the reference currency is immune


def test_a_workload_without_validation_is_flagged_for_judging_on_test(mirror: Path, tmp_path: Path) -> None:
    spec = validate_study_spec({"plugins": [str(mirror)], "workload": "mirror", "arms": {"baseline": []},
                                "budgets": ["10ba"], "seeds": 1, "currency": "steps"})  # fmt: skip
    # mirror gives its own validation split: carve none and it is judged on validation
    run_study(spec, tmp_path / "a", workers=1).close()
    assert "test_selection" not in {w.rule for w in analyse(tmp_path / "a").warnings}
    mirror.write_text(MIRROR.replace("targets[1000:1200])", "None)").replace("inputs[1000:1200],", "None,"))
    spec = validate_study_spec({**spec.model_dump(mode="json"), "plugins": [str(mirror)]})
    run_study(spec, tmp_path / "b", workers=1).close()
    assert "test_selection" in {w.rule for w in analyse(tmp_path / "b").warnings}


def test_compare_refuses_studies_of_one_workload_with_different_targets(tmp_path: Path, capsys) -> None:
    base = {**TINY, "budgets": ["12ba"], "seeds": 1, "tuning": "none"}
    run_study(validate_study_spec(base), tmp_path / "a", workers=1).close()
    run_study(validate_study_spec({**base, "target": 0.5}), tmp_path / "b", workers=1).close()
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "judged on different data or targets" in error
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 0


def test_report_rejudges_in_another_currency(tmp_path: Path, capsys) -> None:
    run_study(validate_study_spec({**TINY, "budgets": ["12ba", "24ba"], "seeds": 1, "tuning": "none"}), tmp_path,
              workers=1).close()  # fmt: skip
    assert main(["report", str(tmp_path), "--currency", "flops"]) == 0
    assert (
        "currency flops" in capsys.readouterr().out
        and "cost currency <code>flops</code>" in (tmp_path / "report.html").read_text()
    )
    assert main(["report", str(tmp_path), "--currency", "joules"]) == 2
    assert "unknown cost currency 'joules'" in capsys.readouterr().err


def _finished(folder: Path) -> dict[str, float]:
    try:
        with sqlite3.connect(f"file:{folder / STORE_NAME}?mode=ro", uri=True, timeout=30) as db:
            rows = db.execute("SELECT key, finished_at, trial FROM runs WHERE status = 'completed'").fetchall()
    except sqlite3.OperationalError:
        return {}
    return {key: finished for key, finished, trial in rows if trial is not None}


@pytest.mark.slow
def test_a_tuning_killed_with_sigkill_resumes_without_rerunning_finished_trials(tmp_path: Path) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**TINY, "tuning": {**TINY["tuning"], "trials": 4}}))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [
        sys.executable,
        "-m",
        "algospeed.cli",
        "study",
        str(study),
        "--workers",
        "1",
        "--out",
        str(tmp_path / "o"),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while len(_finished(tmp_path / "o")) < 2:
        assert time.monotonic() < deadline and process.poll() is None, "the tuning did not start"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    before = _finished(tmp_path / "o")
    assert 2 <= len(before) < 8
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = _finished(tmp_path / "o")
    assert len(after) == 8 and all(after[key] == finished for key, finished in before.items())
    report = analyse(tmp_path / "o")
    assert set(report.chosen) == {"baseline", "ema"} and len(report.records) == 12
    assert all(not math.isnan(row.params.lr) for rows in report.trials.values() for row in rows)


def test_a_baseline_tuned_to_the_edge_of_its_range_voids_the_claim_and_another_arm_is_told(tmp_path: Path) -> None:
    spec = validate_study_spec({**TINY, "budgets": ["12ba"], "seeds": 1})
    run_study(spec, tmp_path, workers=1).close()
    report = analyse(tmp_path)
    store = StudyStore.open_existing(tmp_path / STORE_NAME)
    runs = [run for run in store.runs() if run.trial is None]
    trials = [run for run in store.runs() if run.trial is not None]
    store.close()
    lrs = sorted({trial.params["lr"] for trial in trials if trial.arm == "baseline"})
    decays = sorted(trial.params["settings"]["ema.decay"] for trial in trials if trial.arm == "ema")
    assert len(lrs) == 3 and len(decays) == 3

    def rules(baseline_lr: float, ema_lr: float) -> dict[str, Any]:
        """The rules that fire when the grid runs with these chosen learning rates (and ema's middle decay)."""
        chosen = {"baseline": baseline_lr, "ema": ema_lr}
        settings = {"baseline": {}, "ema": {"ema.decay": decays[1]}}
        planted = [
            dataclasses.replace(run, params={**run.params, "lr": chosen[run.arm], "settings": settings[run.arm]})
            for run in runs
        ]
        facts = StudyFacts(spec=spec, judging=report.judging, runs=planted, trials=trials, manifest=report.manifest,
                           summaries=report.summaries)  # fmt: skip
        return {warning.rule: warning for warning in check_fairness(facts)}

    assert not {"baseline_tuning_edge", "tuning_edge"} & set(rules(lrs[1], lrs[1]))
    edge = rules(lrs[-1], lrs[1])
    warning = edge["baseline_tuning_edge"]
    assert warning.arm is None and "largest of its 3 trials" in warning.message
    assert "tuning_edge" not in edge
    other = rules(lrs[1], lrs[0])
    assert other["tuning_edge"].arm == "ema" and "smallest" in other["tuning_edge"].message
    assert "baseline_tuning_edge" not in other
