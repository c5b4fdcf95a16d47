from __future__ import annotations

import dataclasses
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from algospeed.cli import main
from algospeed.core.status import RunStatus
from algospeed.errors import UsageError
from algospeed.study.fairness import StudyFacts, check_fairness
from algospeed.study.outcome import RunOutcome
from algospeed.study.report import analyse, write_report
from algospeed.study.runner import run_study
from algospeed.study.spec import load_study_spec, validate_study_spec
from algospeed.study.store import STORE_NAME, StudyStore

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "workload": "digits",
    "arms": {"baseline": [], "smooth": ["label_smoothing"]},
    "budgets": ["10ba", "20ba", "30ba"],
    "seeds": 2,
    "eval_interval": "0.25dur",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"workload": "imagenet"}, "workload: unknown workload 'imagenet'"),
        ({"arms": {}}, "arms: arms must map arm names"),
        ({"arms": {"baseline": [], "x": ["warp_drive"]}}, "unknown method 'warp_drive'"),
        ({"arms": {"baseline": [], "x": ["mixup", "cutmix"]}}, "arm 'x': methods 'mixup' and 'cutmix' cannot"),
        ({"arms": {"baseline": [], "x": ["ema:decay=lots"]}}, "method 'ema' setting decay='lots'"),
        ({"arms": {"smooth": ["label_smoothing"]}}, "the baseline arm 'baseline' is not among the arms"),
        ({"budgets": ["ten ep"]}, "budgets: malformed amount 'ten ep'"),
        ({"budgets": ["10ba", "1ep"]}, "all budgets must share one unit"),
        ({"budgets": ["10ba", "10ba"]}, "budgets repeat"),
        ({"budgets": []}, "budgets: List should have at least 1 item"),
        ({"seeds": 0}, "seeds must be a positive count"),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"eval_interval": "often"}, "eval_interval: malformed amount"),
        ({"currency": "dollars"}, "currency: Input should be"),
        ({"tuning": {"baseline": 3}}, "tuning no longer declares trials per arm"),
        ({"tuning": {"trials": 0, "space": {"lr": {"log": [1e-3, 1e-2]}}}}, "tuning.trials: Input should be greater"),
        ({"colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"options": {"colour": "red"}}, "has no option colour"),
        ({"batch_size": 0}, "batch_size: Input should be greater than 0"),
    ],
)
def test_every_bad_spec_field_is_a_clear_usage_error(change: dict, message: str) -> None:
    with pytest.raises(UsageError) as error:
        validate_study_spec({**SMALL, **change})
    assert message in str(error.value)


def test_several_problems_are_reported_together() -> None:
    with pytest.raises(UsageError) as error:
        validate_study_spec({**SMALL, "budgets": ["x"], "seeds": -1, "currency": "euros"})
    text = str(error.value)
    assert "budgets:" in text and "seeds:" in text and "currency:" in text


def test_a_yaml_study_file_loads_and_bad_files_are_clear(tmp_path: Path) -> None:
    file = tmp_path / "study.yaml"
    file.write_text(yaml.safe_dump({**SMALL, "arms": {"baseline": [], "stack": "label_smoothing+ema:decay=0.9"}}))
    spec = load_study_spec(file)
    assert [m.name for m in spec.arms["stack"].methods] == ["label_smoothing", "ema"]
    assert spec.seeds == [0, 1] and spec.target_quality == 0.97
    assert len(spec.grid()) == 3 * 2 * 2 and len({run.key for run in spec.grid()}) == 12
    with pytest.raises(UsageError, match="does not exist"):
        load_study_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("arms: [unclosed")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_study_spec(tmp_path / "bad.yaml")


def test_run_keys_are_stable_and_differ_by_arm_budget_seed_and_settings() -> None:
    first, again = validate_study_spec(SMALL).grid(), validate_study_spec(SMALL).grid()
    assert [r.key for r in first] == [r.key for r in again]
    changed = validate_study_spec({**SMALL, "arms": {"baseline": [], "smooth": ["label_smoothing:smoothing=0.2"]}})
    assert {r.key for r in changed.grid() if r.arm == "smooth"}.isdisjoint(r.key for r in first)


def test_the_store_never_duplicates_runs_and_writes_curves_atomically(tmp_path: Path) -> None:
    from algospeed.core.result import CurvePoint

    store = StudyStore.create(tmp_path / STORE_NAME)
    store.add_runs([("k1", "baseline", "10ba", 0, None, {}), ("k2", "baseline", "10ba", 1, None, {})])
    store.add_runs([("k1", "baseline", "10ba", 0, None, {})])
    point = CurvePoint(10, 0.5, 320, 0, 1.5, 2e9, 1.0, 0.3, {"accuracy": 0.9})
    store.mark_running("k1")
    with pytest.raises(RuntimeError), store.transaction() as db:
        db.execute("UPDATE runs SET status = 'completed' WHERE key = 'k2'")
        raise RuntimeError("crash inside a transaction")
    store.finish(RunOutcome("k1", RunStatus.COMPLETED, (point, point), wall_seconds=3.0))
    assert store.status_counts() == {"completed": 1, "pending": 1}
    assert store.points("k1") == [point, point]
    rows = store.rows()
    assert len(rows) == 2 and rows[0]["metric_accuracy"] == 0.9
    assert store.to_dataframe().shape[0] == 2
    csv_text = store.export_csv(tmp_path / "runs.csv").read_text().splitlines()
    assert len(csv_text) == 3 and "metric_accuracy" in csv_text[0]


def test_a_study_runs_every_cell_and_a_rerun_runs_nothing_again(tmp_path: Path) -> None:
    spec = validate_study_spec({**SMALL, "budgets": ["10ba", "20ba"], "seeds": 1})
    store = run_study(spec, tmp_path, workers=1)
    first = {run.key: run.finished_at for run in store.runs()}
    store.close()
    assert len(first) == 4 and all(first.values())
    store = run_study(spec, tmp_path, workers=1)
    assert {run.key: run.finished_at for run in store.runs()} == first
    assert store.meta("reference_cost")["per_flop"] > 0 and store.meta("manifest")["torch"]
    store.close()
    other = validate_study_spec({**SMALL, "seeds": 3})
    with pytest.raises(UsageError, match="holds another study"):
        run_study(other, tmp_path, workers=1)


def _study_process(folder: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    command = [
        sys.executable,
        "-m",
        "algospeed.cli",
        "study",
        "--workload",
        "digits",
        "--arms",
        "baseline,label_smoothing",
        "--budgets",
        "20ba,40ba,60ba",
        "--seeds",
        "2",
        "--eval-every",
        "0.25dur",
        "--out",
        str(folder),
        *extra,
    ]
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _completed(folder: Path) -> dict[str, float]:
    try:
        with sqlite3.connect(f"file:{folder / STORE_NAME}?mode=ro", uri=True, timeout=30) as db:
            return dict(db.execute("SELECT key, finished_at FROM runs WHERE status = 'completed'").fetchall())
    except sqlite3.OperationalError:
        return {}


def _wait_for(predicate, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_study_killed_with_sigkill_resumes_without_losing_or_duplicating_runs(tmp_path: Path) -> None:
    process = _study_process(tmp_path)
    _wait_for(lambda: len(_completed(tmp_path)) >= 2)
    os.killpg(process.pid, signal.SIGKILL)  # the study and its workers, mid-way
    process.wait(timeout=60)
    before = _completed(tmp_path)
    assert 2 <= len(before) < 12
    rerun = _study_process(tmp_path)
    _, stderr = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, stderr[-2000:]
    after = _completed(tmp_path)
    assert len(after) == 12
    assert all(after[key] == finished for key, finished in before.items())  # finished runs were not rerun
    with sqlite3.connect(tmp_path / STORE_NAME) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 12
        assert db.execute("SELECT count(DISTINCT run_key) FROM points").fetchone()[0] == 12


def test_a_killed_worker_process_is_retried_and_the_study_completes(tmp_path: Path) -> None:
    process = _study_process(tmp_path, "--workers", "1")
    worker: list[int] = []

    def find_worker() -> bool:
        children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
        busy = [pid for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text(errors="ignore")]
        worker.extend(int(pid) for pid in busy[:1])
        return bool(worker) and len(_completed(tmp_path)) >= 1

    _wait_for(find_worker)
    os.kill(worker[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    assert len(_completed(tmp_path)) == 12


def test_the_ray_executor_gives_the_same_results_as_local_processes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    spec = validate_study_spec({**SMALL, "budgets": ["10ba", "20ba"], "seeds": 1})
    local = run_study(spec, tmp_path / "local", workers=2)  # one thread per worker, as each Ray task has
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO / "src")}},
        )
        remote = run_study(spec, tmp_path / "ray", executor="ray")
    finally:
        ray.shutdown()

    def curves(store: StudyStore) -> dict[str, list[tuple]]:
        return {
            run.key: [(p.step, p.samples, p.flops, p.train_loss, p.metrics) for p in store.points(run.key)]
            for run in store.runs()
        }

    assert curves(local) == curves(remote)
    assert all(run.status is RunStatus.COMPLETED for run in remote.runs())


def test_the_report_is_self_contained_escaped_and_flags_an_unfair_study(tmp_path: Path) -> None:
    unfair = {
        "name": "<b>unfair",  # markup, but no path separator (names become folders)
        "workload": "digits",
        "arms": {
            "baseline": [],
            "sharp <i>": {"methods": ["sam"], "lr": 0.02},  # a learning rate picked by hand, untuned
            "flat": ["wsd_schedule:decay_fraction=0.5:final=0.5"],
        },
        "budgets": ["12ba"],
        "seeds": 1,
        "target": 0.999,
        "currency": "steps",
        "tuning": "none",
    }
    run_study(validate_study_spec(unfair), tmp_path, workers=1).close()
    paths = write_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "http://" not in page and "https://" not in page
    report = analyse(tmp_path)
    assert len(report.tradeoffs) == 5  # steps, train_seconds, flops, samples, reference: all but tokens and energy
    assert page.count("data:image/png;base64,") == len(report.tradeoffs) + 2  # and time to target, speedups
    assert "&lt;b&gt;unfair" in page and "<b>unfair" not in page
    assert "sharp &lt;i&gt;" in page and "flat" in page and "baseline" in page
    rules = {w.rule for w in report.warnings}
    assert {"baseline_budgets", "seeds", "schedule_decay", "extra_compute", "target_reached", "tuning_effort"} <= rules
    for rule in rules:
        assert rule in page
    assert (tmp_path / "summary.md").read_text().count("|") > 10 and paths[2].name == "runs.csv"


def test_rules_that_a_single_study_cannot_trigger(tmp_path: Path) -> None:
    spec = validate_study_spec(SMALL)
    run_study(spec, tmp_path, workers=1).close()
    report = analyse(tmp_path)
    store = StudyStore.open_existing(tmp_path / STORE_NAME)
    runs = store.runs()
    runs[0] = dataclasses.replace(runs[0], eval_fingerprint="999:other")
    facts = StudyFacts(
        spec=spec, judging=report.judging, runs=runs, trials=[], manifest=None, summaries=report.summaries
    )
    rules = {w.rule for w in check_fairness(facts)}
    assert {"eval_protocol", "manifest"} <= rules
    manifest = store.meta("manifest")
    fine = StudyFacts(
        spec=spec, judging=report.judging, runs=store.runs(), trials=[], manifest=manifest, summaries=report.summaries
    )
    assert not {"eval_protocol", "manifest", "tuning_effort"} & {w.rule for w in check_fairness(fine)}


def test_study_and_report_commands_fail_cleanly_on_bad_input(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**SMALL, "budgets": ["ten ep"]}))
    assert main(["study", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "malformed amount" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["study", "--preset", "slow"]) == 2
    assert "unknown preset 'slow'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no study store" in capsys.readouterr().err


def test_compare_scores_arms_across_studies_as_algoperf_does(tmp_path: Path, capsys) -> None:
    quick = {**SMALL, "budgets": ["10ba", "30ba"], "seeds": 1, "target": 0.5}
    run_study(validate_study_spec(quick), tmp_path / "digits", workers=1).close()
    synthetic = {**quick, "workload": "synthetic", "target": 0.3}
    run_study(validate_study_spec(synthetic), tmp_path / "synthetic", workers=1).close()
    assert main(["compare", str(tmp_path / "digits"), str(tmp_path / "synthetic")]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.startswith("│ ")}
    assert set(rows) >= {"baseline", "smooth"}
    scores = [float(rows[arm].split("│")[-2]) for arm in ("baseline", "smooth")]
    assert all(0.0 <= score <= 1.0 for score in scores) and max(scores) > 0
    assert main(["compare", str(tmp_path / "missing")]) == 2


def test_a_study_judged_in_the_reference_currency_runs_and_reports(tmp_path: Path) -> None:
    spec = validate_study_spec({**SMALL, "budgets": ["10ba", "20ba"], "seeds": 1, "currency": "reference"})
    run_study(spec, tmp_path, workers=1).close()
    report = analyse(tmp_path)
    assert report.reference is not None and report.reference.per_flop > 0
    final = report.curves["baseline"][-1]
    points = [r.points[-1] for r in report.records if r.arm == "baseline" and r.budget == final.budget]
    expected = report.reference.per_step * points[0].step + report.reference.per_flop * points[0].flops
    assert final.cost == pytest.approx(expected)
