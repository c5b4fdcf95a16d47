"""Run a study into its folder: register the grid in the store, run what is not finished, keep a
live view, and leave the store ready for analysis. A killed study restarts where it stopped."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from algospeed.core.currency import Currency
from algospeed.core.device import resolve_device
from algospeed.core.status import RunStatus
from algospeed.errors import UsageError
from algospeed.integrations.loggers import logger_from_spec, run_logger_spec
from algospeed.run_directory import environment
from algospeed.study.analysis import speedup
from algospeed.study.calibration import calibrate_reference_cost
from algospeed.study.executors import LocalExecutor, RayExecutor, RunTask
from algospeed.study.judging import Judging
from algospeed.study.live_view import StudyProgress, StudyView
from algospeed.study.lock import study_lock
from algospeed.study.outcome import RunOutcome
from algospeed.study.records import RunRecord
from algospeed.study.spec import StudyRun, StudySpec, slug
from algospeed.study.store import STORE_NAME, StudyStore
from algospeed.study.tuning import Choice, choose

CHECKPOINT_EVERY = "0.25dur"


def open_study(spec: StudySpec, folder: Path) -> StudyStore:
    """Create the study's store, or reopen it when it holds the same study (a restart).

    The store keeps the spec, how runs are judged (fixed at creation) and the manifest, whose plugin list
    is brought up to date at every start; `run_study` adds the keys of the current trials and grid (a
    changed plugin changes them: the old runs stay stored but no longer count) and the tuning's choices.
    """
    store_path = folder / STORE_NAME
    if not StudyStore.is_empty(store_path):
        store = StudyStore.open_existing(store_path)
        saved = store.meta("spec")
        if saved is not None and saved != spec.model_dump(mode="json"):
            store.close()
            raise UsageError(f"{folder} holds another study; choose another --out or rerun the same spec to continue")
    else:
        folder.mkdir(parents=True, exist_ok=True)
        store = StudyStore.create(store_path)
    store.set_meta("spec", spec.model_dump(mode="json"))
    if store.meta("judging") is None:
        store.set_meta("judging", Judging.of(spec).to_dict())
    store.set_meta("manifest", {**(store.meta("manifest") or manifest()), "plugins": plugin_manifest(spec)})
    return store


def plugin_manifest(spec: StudySpec) -> list[dict[str, str]]:
    """Each plugin the study loads: as the user names it, its full reference and the sha256 of its source."""
    return [{"plugin": plugin.display, "ref": plugin.ref, "sha256": plugin.sha256} for plugin in spec.loaded_plugins]


def run_study(
    spec: StudySpec,
    folder: str | Path,
    *,
    workers: int | None = None,
    executor: str = "local",
    address: str | None = None,
    console: Console | None = None,
    loggers: Sequence[str] = (),
) -> StudyStore:
    """Run every unfinished run of `spec` into `folder` and return the store: first the tuning trials,
    then, with each arm's chosen hyperparameters, the grid of budgets x seeds. Each of `loggers` (e.g.
    `tensorboard:runs/tb`) records every run, in a place of its own (see `run_logger_spec`)."""
    folder = Path(folder)
    chosen = _executor(executor, workers, address)  # a bad executor is refused before anything is written
    for text in loggers:
        logger_from_spec(text)  # a bad logger too
    preflight(spec)
    with study_lock(folder):
        return _run_study(spec, folder, chosen, console, tuple(loggers))


def _run_study(
    spec: StudySpec,
    folder: Path,
    chosen: LocalExecutor | RayExecutor,
    console: Console | None,
    loggers: tuple[str, ...] = (),
) -> StudyStore:
    """The study's two phases, with the folder's lock held: the trials, then the grid with the choices."""
    store = open_study(spec, folder)
    if store.reference_cost() is None:
        device = torch.device(spec.device) if spec.device else None
        store.set_reference_cost(calibrate_reference_cost(chosen.threads, device))
    store.release_unfinished()
    trials = spec.trials()
    store.set_meta("trials", [run.key for run in trials])
    grid_size = len(spec.budgets) * len(spec.seeds) * len(spec.arms)
    workers = chosen.workers if isinstance(chosen, LocalExecutor) else None
    progress = StudyProgress(total=len(trials) + grid_size, workers=workers, started=time.monotonic())
    with StudyView(progress, console or Console(stderr=True)) as view:
        tuning = f"tuning ({len(trials)} trials)" if trials else "-"
        _run_all(store, trials, folder, chosen, view, lambda: tuning, loggers)
        choices = choose_hyperparameters(store, spec, trials)
        store.set_meta("chosen", {arm: choice.to_dict() for arm, choice in choices.items()})
        grid = spec.grid({arm: choice.hyperparameters for arm, choice in choices.items()})
        store.set_meta("grid", [run.key for run in grid])
        _run_all(store, grid, folder, chosen, view, lambda: best_speedup(store, spec), loggers)
    return store


def _run_all(
    store: StudyStore,
    runs: list[StudyRun],
    folder: Path,
    executor: LocalExecutor | RayExecutor,
    view: StudyView,
    best: Callable[[], str],
    loggers: tuple[str, ...] = (),
) -> None:
    """Run those of `runs` that have not finished, keeping the store and the live view up to date."""
    progress = view.progress
    store.add_runs([(run.key, run.arm, run.budget, run.seed, run.trial, run.params.model_dump()) for run in runs])
    statuses = {row.key: row.status for row in store.runs()}
    todo = [run for run in runs if not statuses[run.key].final]
    progress.done += len(runs) - len(todo)
    progress.best = best()
    tasks = [
        RunTask(
            key=run.key,
            spec=run.spec.model_copy(update={"checkpoint_interval": CHECKPOINT_EVERY}).model_dump(mode="json"),
            checkpoint_dir=str(folder / "checkpoints" / slug(run.key)),
            threads=executor.threads,
            loggers=tuple(run_logger_spec(text, slug(run.key)) for text in loggers),
        )
        for run in todo
    ]

    def started(key: str) -> None:
        store.mark_running(key)
        progress.in_flight += 1
        view.update()

    def finished(outcome: RunOutcome) -> None:
        progress.in_flight -= 1
        if outcome.status is RunStatus.INTERRUPTED:
            return  # stays `running`; released to `pending` on the next start
        store.finish(outcome)
        progress.done += 1
        progress.finished_here += 1
        progress.failed += outcome.status is RunStatus.FAILED
        progress.best = best()
        view.update(finished=True)

    view.update()
    executor.run(tasks, started, finished)


def preflight(spec: StudySpec) -> None:
    """Build (not train) each arm's first run, and its trials of other batch sizes, on the CPU here, so that
    what only the loaded data can tell (a batch larger than the data, a model that does not fit it) is a usage
    error before anything is written."""
    from algospeed.core.energy import EnergyMeter
    from algospeed.run_spec import build_trainer

    if spec.currency is Currency.ENERGY:
        meter = EnergyMeter.for_device(resolve_device(spec.device))
        if not meter.available:
            raise UsageError(f"the study's currency is energy, but this machine cannot measure it: {meter.reason}")
    seen: set[tuple[str, int | None]] = set()
    for run in [*spec.grid()[: len(spec.arms)], *spec.trials()]:
        if (run.arm, run.spec.batch_size) not in seen:
            seen.add((run.arm, run.spec.batch_size))
            build_trainer(run.spec.model_copy(update={"device": "cpu"}))


def choose_hyperparameters(store: StudyStore, spec: StudySpec, trials: list[StudyRun]) -> dict[str, Choice]:
    """Each tuned arm's chosen trial: the fastest to the target on the validation split (see `tuning.choose`)."""
    if not trials:
        return {}
    judging = Judging.from_dict(store.meta("judging"))
    records = store.records_by_key(judging.metric, judging.higher_is_better, keys={run.key for run in trials})
    choices = {}
    for arm in spec.arms:
        arm_trials = [run for run in trials if run.arm == arm]
        choice = choose(
            [(run.params, records.get(run.key)) for run in arm_trials],
            judging.target,
            spec.currency,
            store.reference_cost(),
        )
        if choice is not None:
            choices[arm] = choice
    return choices


def current_records(store: StudyStore) -> list[RunRecord]:
    """The runs of the study's current grid that ended, as analysis records."""
    judging = Judging.from_dict(store.meta("judging"))
    return store.records(judging.metric, judging.higher_is_better, keys=set(store.meta("grid") or ()))


def best_speedup(store: StudyStore, spec: StudySpec) -> str:
    """The best speedup at the target among the arms so far (point estimates, for the live view)."""
    records = current_records(store)
    target = Judging.from_dict(store.meta("judging")).target
    reference = store.reference_cost()
    baseline = [r for r in records if r.arm == spec.baseline]
    best: tuple[float, str] | None = None
    for arm in spec.arms:
        runs = [r for r in records if r.arm == arm]
        if arm == spec.baseline or not runs or not baseline:
            continue
        result = speedup(baseline, runs, target, spec.currency, reference)
        if result.estimate is not None and (best is None or result.estimate > best[0]):
            best = (result.estimate, arm)
    return "-" if best is None else f"{best[0]:.2f}x ({best[1]})"


def _executor(name: str, workers: int | None, address: str | None) -> LocalExecutor | RayExecutor:
    if name == "local":
        return LocalExecutor(workers)
    if name == "ray":
        return RayExecutor(address)
    raise UsageError(f"unknown executor {name!r}; valid executors: local, ray")


def manifest() -> dict[str, Any]:
    """The hardware, software and code version a study ran with."""
    return {**environment(), "git": _git_state()}


def _git_state() -> dict[str, Any] | None:
    """The commit and whether the tree had changes, when algospeed runs from a git checkout."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=source, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(dirty)}
