"""Recipe search: greedy forward selection of methods for a workload, every step judged by a study.

Starting from the tuned baseline, each step is one study whose arms are the current recipe and the
current recipe plus each compatible method not yet in it (with its main settings, `Method.search_space`,
tuned alongside the learning rate); every arm is tuned with the same trials. A method
joins only when its arm beats the current recipe significantly (one-sided, at level `alpha`) on the
validation split; of several, the fastest joins. The search stops when nothing helps or the time budget
is spent, then reruns the chosen recipe and the tuned baseline on fresh seeds: that final study alone
gives the recipe's measured speedup at the target, beside the tuned baseline's own final quality. A step whose
current recipe reached the target in fewer than half its seeds can judge nothing (no speedup over it is
defined): the search stops there and says so, rather than reading it as "nothing helps".

Every step is an ordinary study in its own folder, so a killed search resumes where it stopped: a rerun
makes the same choices from the stored results and reruns only what had not finished. The time budget counts
the time of the steps that finished before a restart (kept in `search.json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from algospeed.core.callback import check_composition
from algospeed.core.currency import Currency
from algospeed.core.data_kind import check_data_kind
from algospeed.core.files import write_json_atomic, write_text_atomic
from algospeed.core.units import parse_budget
from algospeed.errors import UsageError
from algospeed.methods.registry import method_class, method_names
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.study.findings import StudyReport, analyse
from algospeed.study.recipe import Measured, Recipe
from algospeed.study.report import speedup_text, write_report
from algospeed.study.runner import run_study
from algospeed.study.spec import StudySpec
from algospeed.workloads.registry import get_workload

BASELINE = "baseline"
FINAL_SEED = 100  # the final verdict trains on seeds 100, 101...: none of them chose the recipe


@dataclass(frozen=True)
class SearchSettings:
    """What a search tries and how hard: every arm gets `trials` tuning trials and `seeds` seeds per budget."""

    workload: str
    options: dict[str, Any] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    budgets: list[str] = field(default_factory=list)  # default: a quarter, half and all of the workload's budget
    seeds: int = 3
    final_seeds: int = 5
    trials: int = 4
    tuning_budget: str | None = None  # default: the middle one of the budgets
    target: float | None = None  # default: the workload's target
    currency: Currency = Currency.REFERENCE
    alpha: float = 0.05
    candidates: list[str] = field(default_factory=list)  # default: every registered method that fits
    lr_range: float = 10.0  # the learning rate is tuned over [lr / lr_range, lr * lr_range] of the workload's
    budget_hours: float = 1.0
    workers: int | None = None


@dataclass(frozen=True)
class Candidate:
    """One arm of one step: its speedup over the current recipe, and whether it was significant."""

    method: str
    speedup: str
    estimate: float | None
    p_faster: float | None
    significant: bool


@dataclass
class Step:
    """One step of the search: the recipe it started from, what it tried, what joined (None: nothing)."""

    index: int
    recipe: list[str]
    folder: str
    candidates: list[Candidate]
    joined: str | None
    seconds: float
    note: str | None = None  # why nothing could be judged, when so


@dataclass(frozen=True)
class Verdict:
    """The final study: the recipe with what was measured, the tuned baseline's own mean final quality at the
    largest budget (validation, and test as reported), and the seconds the study took."""

    recipe: Recipe
    baseline_validation: float | None
    baseline_test: float | None
    seconds: float


def default_budgets(workload: str) -> list[str]:
    full = parse_budget(get_workload(workload).budget)
    return [f"{full.value * share:g}{full.unit.value}" for share in (0.25, 0.5, 1.0)]


def candidates(settings: SearchSettings, recipe: Sequence[str]) -> list[str]:
    """The methods that could join `recipe`: registered (or listed), acting on the workload's data, not
    already in it and composing with it (conflicts and needs)."""
    workload = get_workload(settings.workload)
    kind = workload.kind(settings.options)
    pool = settings.candidates or method_names()
    fitting = []
    for name in pool:
        if name in recipe:
            continue
        try:
            stack = [build_method(MethodSpec(name=n)) for n in [*recipe, name]]
            check_composition(stack)
            check_data_kind(stack, kind, f"workload {settings.workload!r}")
        except UsageError:
            continue
        fitting.append(name)
    return fitting


def _space(settings: SearchSettings, methods: Sequence[str]) -> dict[str, Any]:
    lr = get_workload(settings.workload).lr
    space: dict[str, Any] = {"lr": {"log": [lr / settings.lr_range, lr * settings.lr_range]}}
    for name in methods:
        for key, dimension in getattr(method_class(name), "search_space", {}).items():
            space[f"{name}.{key}"] = dimension
    return space


def step_spec(settings: SearchSettings, index: int, recipe: Sequence[str], tried: Sequence[str]) -> StudySpec:
    """The study of step `index`: the current recipe as its baseline against it plus each of `tried`."""
    arms = {BASELINE: list(recipe), **{f"+{name}": [*recipe, name] for name in tried}}
    budgets = settings.budgets or default_budgets(settings.workload)
    return StudySpec.model_validate(
        {
            "name": f"search-step-{index}",
            "plugins": settings.plugins,
            "workload": settings.workload,
            "options": settings.options,
            "arms": arms,
            "budgets": budgets,
            "seeds": settings.seeds,
            "target": settings.target,
            "currency": settings.currency,
            "eval_interval": "0.1dur",
            "tuning": {
                "trials": settings.trials,
                "budget": settings.tuning_budget or budgets[len(budgets) // 2],
                "space": _space(settings, [*recipe, *tried]),
            },
        }
    )


def unjudgeable(report: StudyReport) -> str | None:
    """Why a step can judge no candidate: its current recipe (the step's baseline) reached the target in fewer
    than half its seeds, so no speedup over it is defined; None when it can."""
    summary = report.summaries.get(BASELINE)
    if summary is None:
        return "the current recipe has no finished runs"
    if 2 * summary.reached < summary.n_seeds:
        return (
            f"the current recipe reached the target {report.target:g} in {summary.reached} of {summary.n_seeds} "
            "seeds, so no speedup over it is defined: lower --target, raise --budgets or give more --trials"
        )
    return None


def _judge(report: StudyReport, tried: Sequence[str], alpha: float) -> tuple[list[Candidate], str | None]:
    judged, best = [], None
    for name in tried:
        result = report.summaries[f"+{name}"].speedup if f"+{name}" in report.summaries else None
        significant = (
            result is not None and not report.blocked(f"+{name}") and result.significant(alpha, one_sided=True)
        )
        judged.append(
            Candidate(
                name,
                speedup_text(result) if result else "did not run",
                result.estimate if result else None,
                result.p_faster if result else None,
                significant,
            )
        )
        if significant and (best is None or result.estimate > best[1]):
            best = (name, result.estimate)
    return judged, best[0] if best else None


def search(settings: SearchSettings, out: str | Path, progress: Callable[[str], None] = lambda line: None) -> Recipe:
    """Run the search into `out` (resuming what a previous call left), write `recipe.yaml`, `search.md` and
    `search.json`, and return the recipe with its measured speedup."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = _previous_seconds(out)
    recipe: list[str] = []
    steps: list[Step] = []
    while True:
        tried = candidates(settings, recipe)
        spent = sum(step.seconds for step in steps)
        estimate = steps[-1].seconds * (len(tried) + 1) / (len(steps[-1].candidates) + 1) if steps else 0.0
        if not tried or spent + estimate > settings.budget_hours * 3600:
            progress("search stops: " + ("nothing left to try" if not tried else "its time budget is spent"))
            break
        index = len(steps)
        folder = out / f"step-{index}"
        progress(f"step {index}: {'+'.join(recipe) or 'baseline'} against {len(tried)} candidates")
        step_started = time.monotonic()
        run_study(step_spec(settings, index, recipe, tried), folder, workers=settings.workers).close()
        write_report(folder)
        report = analyse(folder)
        judged, joined = _judge(report, tried, settings.alpha)
        note = unjudgeable(report)
        seconds = before.get(str(folder), 0.0) + time.monotonic() - step_started
        steps.append(Step(index, list(recipe), str(folder), judged, joined, seconds, note))
        _write_state(out, steps)
        if note is not None:
            progress(f"step {index}: nothing can be judged: {note}; the search stops")
            break
        if joined is None:
            progress(f"step {index}: no candidate is significantly faster; the search stops")
            break
        progress(f"step {index}: {joined} joins")
        recipe.append(joined)
    started = time.monotonic()
    verdict = final_verdict(settings, recipe, out / "final")
    verdict = replace(verdict, seconds=before.get(str(out / "final"), 0.0) + time.monotonic() - started)
    _write_state(out, steps, verdict)
    write_text_atomic(out / "recipe.yaml", verdict.recipe.to_yaml())
    write_text_atomic(out / "search.md", render_search(steps, verdict))
    return verdict.recipe


def final_verdict(settings: SearchSettings, recipe: Sequence[str], folder: Path) -> Verdict:
    """Rerun the recipe and the baseline, both tuned, on fresh seeds: the recipe with what was measured, and the
    baseline's own final quality (`seconds` is left to the caller)."""
    spec = step_spec(settings, len(recipe), [], []).model_dump(mode="json")
    spec.update(
        name="search-final",
        arms={BASELINE: [], "recipe": list(recipe)},
        seeds=list(range(FINAL_SEED, FINAL_SEED + settings.final_seeds)),
    )
    spec["tuning"]["space"] = _space(settings, recipe)
    study = StudySpec.model_validate(spec)
    run_study(study, folder, workers=settings.workers).close()
    write_report(folder)
    report = analyse(folder)
    chosen = report.chosen.get("recipe")
    hyperparameters = chosen.hyperparameters if chosen else study.arms["recipe"].hyperparameters
    result = report.summaries["recipe"].speedup if recipe and "recipe" in report.summaries else None
    measured = None
    if result is not None:
        measured = Measured(
            speedup=result.estimate,
            low=result.low,
            high=result.high,
            currency=report.currency.value,
            quality=report.target,
            metric=report.judging.metric,
            seeds=settings.final_seeds,
            interval=result.method,
            test_quality={arm: report.test_quality.get(arm, {}).get(study.budgets[-1]) for arm in (BASELINE, "recipe")},
            study=str(folder),
            search=str(folder.parent),
        )
    found = Recipe(
        name=f"{settings.workload}-search",
        workload=settings.workload,
        description=f"found by algospeed recipe search on {settings.workload}",
        methods=[MethodSpec(name=name) for name in recipe],
        hyperparameters=hyperparameters,
        measured=measured,
    )
    largest = study.budgets[-1]
    return Verdict(
        found,
        report.validation_quality.get(BASELINE, {}).get(largest),
        report.test_quality.get(BASELINE, {}).get(largest),
        0.0,
    )


def _previous_seconds(out: Path) -> dict[str, float]:
    """The seconds that earlier runs of this search spent on each finished study (its folder -> seconds)."""
    try:
        state = json.loads((out / "search.json").read_text())
    except (OSError, ValueError):
        return {}
    seconds = {step["folder"]: float(step["seconds"]) for step in state.get("steps", [])}
    if state.get("final_seconds") is not None:
        seconds[str(out / "final")] = float(state["final_seconds"])
    return seconds


def _write_state(out: Path, steps: list[Step], verdict: Verdict | None = None) -> None:
    write_json_atomic(
        out / "search.json",
        {
            "steps": [asdict(step) for step in steps],
            "recipe": verdict.recipe.model_dump(mode="json") if verdict else None,
            "final_seconds": verdict.seconds if verdict else None,
        },
    )


def _quality(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_search(steps: list[Step], verdict: Verdict) -> str:
    """The search's path in markdown: each step's candidates with their speedups, what joined, the verdict."""
    lines = ["# Recipe search", ""]
    for step in steps:
        start = " + ".join(step.recipe) or "the tuned baseline"
        lines += [f"## Step {step.index}: from {start} ({step.seconds / 60:.1f} min, `{step.folder}`)", ""]
        lines += ["| candidate | speedup over the current recipe | p (faster) | significant |", "|---|---|---|---|"]
        for c in step.candidates:
            p = "-" if c.p_faster is None else f"{c.p_faster:.3g}"
            lines.append(f"| {c.method} | {c.speedup} | {p} | {'yes' if c.significant else 'no'} |")
        if step.note is not None:
            outcome = f"Nothing could be judged: {step.note}. The search stops."
        else:
            outcome = f"Joined: **{step.joined}**." if step.joined else "Nothing joined: the search stops."
        lines += ["", outcome, ""]
    final, measured = verdict.recipe, verdict.recipe.measured
    lines += [f"## Final verdict (fresh seeds, {verdict.seconds / 60:.1f} min)", ""]
    if measured is None or measured.speedup is None:
        lines.append("No method joined: the recipe is the tuned baseline.")
    else:
        interval = f" [{measured.low:.2f}, {measured.high:.2f}]" if measured.low is not None else ""
        lines.append(
            f"Recipe {' + '.join(str(m) for m in final.methods)}: {measured.speedup:.2f}x{interval} over the tuned "
            f"baseline in {measured.currency} to {measured.metric} {measured.quality:g} on validation, "
            f"{measured.seeds} fresh seeds ({measured.interval}); test quality at the largest budget: "
            + ", ".join(f"{arm} {_quality(value)}" for arm, value in measured.test_quality.items())
            + "."
        )
    lines += [
        "",
        f"The tuned baseline's own final quality at the largest budget (mean over seeds): validation "
        f"{_quality(verdict.baseline_validation)}, test {_quality(verdict.baseline_test)}.",
    ]
    return "\n".join(lines) + "\n"
