"""`algospeed study` and `algospeed report`: run a study into a folder, and rebuild its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from algospeed.cli_options import PluginOption
from algospeed.core.settings import parse_key_values
from algospeed.terminal import output_console

console = output_console()


def study_command(
    spec_file: Annotated[Path | None, typer.Argument(help="A YAML study file (see algospeed.study.spec).")] = None,
    preset: Annotated[str | None, typer.Option(help="An embedded study: quick (mnist1d, ~5 min on 2 cores).")] = None,
    workload: Annotated[str | None, typer.Option(help="Workload for a study without a file.")] = None,
    arms: Annotated[
        str | None,
        typer.Option(help="Arms: baseline,label_smoothing,mixup+ema (methods in an arm joined by +)."),
    ] = None,
    budgets: Annotated[str | None, typer.Option(help="Budgets, e.g. 5ep,10ep,20ep.")] = None,
    seeds: Annotated[int | None, typer.Option(help="Number of seeds (0..N-1).")] = None,
    target: Annotated[float | None, typer.Option(help="Target quality (default: the workload's).")] = None,
    currency: Annotated[
        str | None, typer.Option(help="Cost currency: train_seconds, flops, samples, steps, reference.")
    ] = None,
    eval_every: Annotated[str | None, typer.Option(help="Eval interval, e.g. 0.1dur.")] = None,
    option: Annotated[list[str] | None, typer.Option("--option", "-o", help="Workload option KEY=VALUE.")] = None,
    out: Annotated[Path | None, typer.Option(help="Study folder (default: studies/<name>).")] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes (default: cores / 2).")] = None,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    address: Annotated[str | None, typer.Option(help="Ray cluster address (with --executor ray).")] = None,
    plugin: PluginOption = None,
) -> None:
    """Run arms x budgets x seeds, store every run, and write the report. Rerun to continue a killed study."""
    from algospeed.errors import UsageError
    from algospeed.plugins import resolve_ref
    from algospeed.study.presets import preset as preset_spec
    from algospeed.study.report import write_report
    from algospeed.study.runner import run_study
    from algospeed.study.spec import load_study_spec, validate_study_spec

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
    folder = out or Path("studies") / spec.name
    store = run_study(spec, folder, workers=workers, executor=executor, address=address)
    store.close()
    paths = write_report(folder)
    print_summary(folder)
    console.print(f"wrote {', '.join(str(path) for path in paths)}")


def report_command(folder: Annotated[Path, typer.Argument(help="A study folder.")]) -> None:
    """Rebuild report.html, summary.md and runs.csv from a study's store."""
    from algospeed.study.report import write_report

    paths = write_report(folder)
    print_summary(folder)
    console.print(f"wrote {', '.join(str(path) for path in paths)}")


def print_summary(folder: Path) -> None:
    """The speedup table and the fairness warnings, on the terminal."""
    from algospeed.study.report import SUMMARY_HEADER, analyse, summary_rows

    report = analyse(folder)
    table = Table(title=f"study {report.spec.name}: {report.spec.workload}, currency {report.currency}")
    for column in SUMMARY_HEADER:
        table.add_column(column, overflow="fold")
    for row in summary_rows(report):
        table.add_row(*row)
    console.print(table)
    for warning in report.warnings:
        console.print(f"[yellow]fairness warning[/] [bold]{warning.rule}[/]: {warning.message}", highlight=False)


def compare_command(
    folders: Annotated[list[Path], typer.Argument(help="Study folders, one per workload, with the same arm names.")],
) -> None:
    """Score arms across several studies as AlgoPerf does: per workload, each arm's median time to the target
    over the best arm's; the score is the area under the performance profile on [1, 4], divided by 3."""
    from algospeed.study.analysis import algoperf_score, performance_ratios, times_to_target
    from algospeed.study.report import analyse

    times: dict[str, dict[str, float | None]] = {}
    for folder in folders:
        report = analyse(folder)
        label = f"{report.spec.workload} ({folder.name})"
        times[label] = times_to_target(report.records, report.target, report.currency, report.reference)
    ratios, scores = performance_ratios(times), algoperf_score(times)
    table = Table(title="time to target over the best arm's, per study; AlgoPerf score in [0, 1]")
    for column in ("arm", *times, "score"):
        table.add_column(column, overflow="fold")
    for arm, arm_ratios in ratios.items():
        cells = ["never" if ratio == float("inf") else f"{ratio:.2f}" for ratio in arm_ratios]
        table.add_row(arm, *cells, f"{scores[arm]:.3f}")
    console.print(table)
