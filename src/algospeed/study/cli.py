"""`algospeed study` and `algospeed report`: run a study into a folder, and rebuild its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from algospeed.cli_options import LoggerOption, PluginOption
from algospeed.core.settings import parse_key_values
from algospeed.terminal import output_console

console = output_console()


def study_command(
    spec_file: Annotated[Path | None, typer.Argument(help="A YAML study file (see algospeed.study.spec).")] = None,
    preset: Annotated[str | None, typer.Option(help="An embedded study: quick, speedup or lm (see README).")] = None,
    workload: Annotated[str | None, typer.Option(help="Workload for a study without a file.")] = None,
    arms: Annotated[
        str | None,
        typer.Option(help="Arms: baseline,label_smoothing,mixup+ema (methods in an arm joined by +)."),
    ] = None,
    budgets: Annotated[str | None, typer.Option(help="Budgets, e.g. 5ep,10ep,20ep.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Number of seeds (0..N-1).")] = None,
    target: Annotated[float | None, typer.Option(help="Target quality (default: the workload's).")] = None,
    currency: Annotated[
        str | None,
        typer.Option(help="Cost currency: train_seconds, flops, samples, tokens, steps, reference, energy_joules."),
    ] = None,
    eval_every: Annotated[str | None, typer.Option(help="Eval interval, e.g. 0.1dur.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="Workload option KEY=VALUE.")] = None,
    out: Annotated[Path | None, typer.Option(help="Study folder (default: studies/<name>).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: cores / 2).")] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray).")] = None,
    plugin: PluginOption = None,
    logger: LoggerOption = None,
) -> None:
    """Run arms x budgets x seeds, store every run, and write the report. Rerun to continue a killed study."""
    from algospeed.core.status import RunStatus
    from algospeed.errors import RunFailure, UsageError
    from algospeed.plugins import resolve_ref
    from algospeed.study.presets import preset as preset_spec
    from algospeed.study.report import write_report
    from algospeed.study.runner import run_study
    from algospeed.study.spec import load_study_spec, slug, validate_study_spec

    if spec_file is not None and preset is not None:
        raise UsageError("give a study file or --preset, not both")
    base: dict[str, Any] = {}
    if spec_file is not None:
        base = load_study_spec(spec_file).model_dump(mode="json")
    elif preset is not None:
        base = dict(preset_spec(preset))
    elif workload is None:
        raise UsageError("give a study file, --preset quick, or --workload with --arms and --budgets")
    overrides = {
        "workload": workload,
        "arms": {arm: [] if arm == "baseline" else arm for arm in arms.split(",")} if arms else None,
        "budgets": budgets,
        "seeds": seeds,
        "target": target,
        "currency": currency,
        "eval_interval": eval_every,
        "options": parse_key_values(option or [], "--option") or None,
    }
    merged = {**base, **{key: value for key, value in overrides.items() if value is not None}}
    if plugin:  # added to the study file's own; relative paths from the current folder
        merged["plugins"] = [*merged.get("plugins", []), *(resolve_ref(ref) for ref in plugin)]
    merged.setdefault("arms", {"baseline": []})
    spec = validate_study_spec(merged, str(spec_file) if spec_file else "study settings")
    folder = out or Path("studies") / slug(spec.name)
    store = run_study(spec, folder, workers=workers, executor=executor, address=address, loggers=logger or ())
    counts = store.status_counts()
    first_error = next((run.error for run in store.runs() if run.error), "")
    store.close()
    paths = write_report(folder)
    print_summary(folder)
    console.print(f"wrote {', '.join(str(path) for path in paths)}")
    failed = counts.get(RunStatus.FAILED, 0) + counts.get(RunStatus.DIVERGED, 0)
    if failed and not counts.get(RunStatus.COMPLETED):
        raise RunFailure(f"every run of the study failed or diverged ({failed}); the first: {first_error}")


def report_command(
    folder: Annotated[Path, typer.Argument(help="A study folder.")],
    currency: Annotated[
        str | None,
        typer.Option(
            help="Judge in another recorded currency: train_seconds, flops, samples, tokens, steps, reference."
        ),
    ] = None,
) -> None:
    """Rebuild report.html, summary.md and runs.csv from a study's store (re-judged in --currency if given)."""
    from algospeed.study.report import write_report

    paths = write_report(folder, currency)
    print_summary(folder, currency)
    console.print(f"wrote {', '.join(str(path) for path in paths)}")


def print_summary(folder: Path, currency: str | None = None) -> None:
    """The verdict, the speedup table and the fairness warnings, on the terminal."""
    from algospeed.study.findings import analyse
    from algospeed.study.report import SUMMARY_HEADER, seed_advice, summary_rows

    report = analyse(folder, currency)
    table = Table(title=f"study {escape(report.spec.name)}: {escape(report.spec.workload)}, currency {report.currency}")
    for column in SUMMARY_HEADER:
        table.add_column(column, overflow="fold")
    for row in summary_rows(report):
        table.add_row(*map(escape, row))
    console.print(table)
    console.print(f"[bold]verdict[/]: {escape(report.verdict)}", highlight=False)
    for line in seed_advice(report):
        console.print(f"  {escape(line)}", highlight=False)
    for warning in report.warnings:
        console.print(
            f"[yellow]fairness warning[/] [bold]{warning.rule}[/]: {escape(warning.message)}", highlight=False
        )


def compare_command(
    folders: Annotated[list[Path], typer.Argument(help="Study folders, one per workload, with the same arm names.")],
) -> None:
    """Score arms across several studies as AlgoPerf does: per workload, each arm's median time to the target
    over the best arm's; the score is the area under the performance profile on [1, 4], divided by 3. Studies
    of one workload must agree on their validation data and target; an arm a study did not run is not scored
    there ("not run", never "never")."""
    from algospeed.errors import UsageError
    from algospeed.study.analysis import algoperf_score, performance_ratios, times_to_target
    from algospeed.study.findings import analyse

    reports = [(str(folder), analyse(folder)) for folder in folders]
    by_workload: dict[str, list[tuple[str, Any]]] = {}
    for label, report in reports:
        by_workload.setdefault(report.spec.workload, []).append((label, report))
    for workload, group in by_workload.items():
        if len({(r.target, r.judging.metric, r.eval_fingerprints) for _, r in group}) > 1:
            detail = "; ".join(
                f"{label}: target {r.target:g}, eval {sorted(r.eval_fingerprints)}" for label, r in group
            )
            raise UsageError(f"studies of workload {workload!r} were judged on different data or targets ({detail})")
    times = {
        f"{report.spec.workload} ({label})": times_to_target(
            report.records, report.target, report.currency, report.reference
        )
        for label, report in reports
        if report.records
    }
    if not times:
        raise UsageError("none of these studies has a finished run to compare")
    ratios, scores = performance_ratios(times), algoperf_score(times, only_run=True)
    table = Table(title="time to target over the best arm's, per study; AlgoPerf score in [0, 1] over the studies run")
    for column in ("arm", *times, "score"):
        table.add_column(escape(column), overflow="fold")
    for arm, arm_ratios in ratios.items():
        ran = [arm in per_arm for per_arm in times.values()]
        cells = [
            "not run" if not present else "never" if ratio == float("inf") else f"{ratio:.2f}"
            for ratio, present in zip(arm_ratios, ran, strict=True)
        ]
        count = "" if all(ran) else f" ({sum(ran)} of {len(ran)} studies)"
        table.add_row(escape(arm), *cells, f"{scores[arm]:.3f}{count}")
    console.print(table)


def recipes_command(
    name: Annotated[str | None, typer.Argument(help="A recipe to show in full (name or file).")] = None,
) -> None:
    """List the shipped recipes with the speedup measured for each, or show one."""
    from algospeed.study.recipe import load_recipe, shipped_recipes

    if name is not None:
        console.print(load_recipe(name).to_yaml(), markup=False, highlight=False)
        return
    table = Table(title="recipes (algospeed train --recipe NAME; arms: {fast: {recipe: NAME}})")
    for column in ("name", "workload", "methods", "hyperparameters", "measured"):
        table.add_column(column, overflow="fold")
    for recipe in map(load_recipe, shipped_recipes()):
        measured = recipe.measured
        evidence = "not measured"
        if measured is not None and measured.speedup is not None:
            interval = f" [{measured.low:.2f}, {measured.high:.2f}]" if measured.low is not None else ""
            evidence = (
                f"{measured.speedup:.2f}x{interval} in {measured.currency} to {measured.metric} "
                f"{measured.quality:g}, {measured.seeds} seeds"
            )
        methods = ", ".join(str(m) for m in recipe.methods) or "(none)"
        table.add_row(*map(escape, (f"{recipe.name} v{recipe.version}", recipe.workload, methods,
                                     recipe.hyperparameters.describe(), evidence)))  # fmt: skip
    console.print(table)


def recipe_search_command(
    workload: Annotated[str, typer.Option(help="The workload to find a recipe for.")],
    budget_hours: Annotated[float, typer.Option(help="Stop adding methods once this much time is spent.")] = 1.0,
    out: Annotated[Path | None, typer.Option(help="Search folder (default: studies/search-<workload>).")] = None,
    budgets: Annotated[str | None, typer.Option(help="Budgets of every step (default: 1/4, 1/2, 1 x default).")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per arm and budget in each step.")] = 3,
    final_seeds: Annotated[int, typer.Option(help="Fresh seeds of the final verdict.")] = 5,
    trials: Annotated[int, typer.Option(help="Tuning trials per arm in each step.")] = 4,
    tuning_budget: Annotated[
        str | None, typer.Option(help="Budget of each tuning trial (default: the middle one).")
    ] = None,
    target: Annotated[float | None, typer.Option(help="Target quality (default: the workload's).")] = None,
    currency: Annotated[str, typer.Option(help="Cost currency of the judgement.")] = "reference",
    alpha: Annotated[float, typer.Option(help="A method joins when it is faster at this significance level.")] = 0.05,
    candidates: Annotated[
        str | None, typer.Option(help="Methods to try, comma-separated (default: all that fit).")
    ] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="Workload option KEY=VALUE.")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: cores / 2).")] = None,
    plugin: PluginOption = None,
) -> None:
    """Find a recipe for a workload: greedy forward selection over the methods that fit, each step a tuned
    study judged on validation; a method joins only when it is significantly faster. Rerun to resume."""
    from algospeed.cli_options import load_cli_plugins
    from algospeed.errors import UsageError
    from algospeed.study.analysis import as_currency
    from algospeed.study.search import SearchSettings, search
    from algospeed.study.spec import slug

    plugins = list(load_cli_plugins(plugin))
    if budget_hours <= 0 or seeds < 3 or final_seeds < 3 or trials < 1 or not 0 < alpha < 1:
        raise UsageError("recipe search needs --budget-hours > 0, --seeds and --final-seeds >= 3, --trials >= 1 and "
                         "0 < --alpha < 1")  # fmt: skip
    settings = SearchSettings(
        workload=workload,
        options=parse_key_values(option or [], "--option"),
        plugins=plugins,
        budgets=budgets.split(",") if budgets else [],
        seeds=seeds,
        final_seeds=final_seeds,
        trials=trials,
        tuning_budget=tuning_budget,
        target=target,
        currency=as_currency(currency),
        alpha=alpha,
        candidates=candidates.split(",") if candidates else [],
        budget_hours=budget_hours,
        workers=workers,
    )
    folder = out or Path("studies") / slug(f"search-{workload}")
    recipe = search(settings, folder, progress=lambda line: console.print(escape(line), highlight=False))
    console.print(recipe.to_yaml(), markup=False, highlight=False)
    console.print(f"wrote {folder / 'recipe.yaml'}, {folder / 'search.md'}")
