"""The study report: `report.html` (one self-contained file, plots embedded), `summary.md` and `runs.csv`,
rebuilt from the store at any time with `algospeed report STUDY_DIR [--currency C]`. The verdict comes
first, then the fairness warnings, then the numbers and the evidence behind them."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from algospeed.core.currency import Currency
from algospeed.core.files import write_text_atomic
from algospeed.study.analysis import Speedup
from algospeed.study.figures import speedup_figure, time_to_target_figure, tradeoff_figure, tuning_figure
from algospeed.study.findings import StudyReport, analyse
from algospeed.study.store import STORE_NAME, StudyStore

SUMMARY_HEADER = ["arm", "methods", "hyperparameters", "seeds at target", "median cost to target", "speedup at target"]


def write_report(folder: str | Path, currency: Currency | str | None = None) -> list[Path]:
    """Write report.html, summary.md and runs.csv into `folder` (judged in `currency` when given); returns
    their paths."""
    folder = Path(folder)
    report = analyse(folder, currency)
    html_path, markdown_path = folder / "report.html", folder / "summary.md"
    write_text_atomic(html_path, render_html(report))
    write_text_atomic(markdown_path, render_markdown(report))
    store = StudyStore.open_existing(folder / STORE_NAME)
    try:
        csv_path = store.export_csv(folder / "runs.csv")
    finally:
        store.close()
    return [html_path, markdown_path, csv_path]


def _fmt(value: float | None, digits: int = 3) -> str:
    return "never" if value is None else f"{value:.{digits}g}"


def speedup_text(result: Speedup) -> str:
    """`1.42x [1.10, 1.83]`, with why there is no interval where there is none."""
    if result.estimate is None:
        return "n/a (target not reached by most seeds)"
    if result.low is None or result.high is None:
        return f"{result.estimate:.2f}x (no interval: {result.interval_note or 'see the method'})"
    return f"{result.estimate:.2f}x [{result.low:.2f}, {result.high:.2f}]"


def arm_hyperparameters(report: StudyReport, arm: str) -> str:
    """What the arm set or the tuning chose, as the spec says it (the effective values are in the arm cards)."""
    choice = report.chosen.get(arm)
    if choice is not None:
        return f"tuned: {choice.hyperparameters.describe()} (trial {choice.trial})"
    return report.spec.arms[arm].hyperparameters.describe()


def summary_rows(report: StudyReport) -> list[list[str]]:
    """One row per arm: methods, hyperparameters, seeds reaching the target, median cost to target, speedup."""
    rows = []
    for arm, summary in report.summaries.items():
        methods = ", ".join(str(m) for m in report.spec.arms[arm].methods) or "(none)"
        rows.append(
            [
                arm,
                methods,
                arm_hyperparameters(report, arm),
                f"{summary.reached}/{summary.n_seeds}",
                _fmt(summary.median_cost_to_target),
                "1 (the baseline)" if arm == report.spec.baseline else speedup_text(summary.speedup),
            ]
        )
    return rows


def seed_advice(report: StudyReport) -> list[str]:
    """Per arm, the rule of thumb for how many seeds would resolve a small speedup at the noise measured."""
    lines = []
    for arm, summary in report.summaries.items():
        if arm != report.spec.baseline and summary.seeds_needed is not None:
            lines.append(
                f"{arm}: to resolve {summary.resolve_ratio:g}x at this noise (sd of log cost "
                f"{summary.speedup.sd_log:.3f}) you need about {summary.seeds_needed} seeds per arm"
            )
    return lines


def quality_rows(report: StudyReport) -> list[list[str]]:
    """Per arm and budget, the mean final validation quality (what was judged) beside the test quality."""
    rows = []
    for arm in report.spec.arms:
        for budget in report.spec.budgets:
            validation = report.validation_quality.get(arm, {}).get(budget)
            test = report.test_quality.get(arm, {}).get(budget)
            rows.append([arm, budget, _fmt(validation, 4), _fmt(test, 4) if test is not None else "-"])
    return rows


def effective_rows(report: StudyReport) -> list[list[str]]:
    """Per arm, what its runs really trained with (several lines where its runs differ, e.g. per budget)."""
    rows = []
    for arm in report.spec.arms:
        for found in report.hyperparameters.get(arm, []) or [{}]:
            shown = {k: v for k, v in found.items() if k != "trainable_parameters"}
            rows.append([arm, ", ".join(f"{k}={_value(v)}" for k, v in shown.items()) or "(no run finished)"])
    return rows


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(_value(v) for v in value)
    return str(value)


def trial_rows(report: StudyReport) -> list[list[str]]:
    return [
        [
            row.arm,
            str(row.trial),
            row.params.describe(),
            row.status.value,
            _fmt(row.cost),
            _fmt(row.quality, 4),
            "chosen" if row.chosen else "",
        ]
        for rows in report.trials.values()
        for row in rows
    ]


def plugin_rows(report: StudyReport) -> list[list[str]]:
    """The plugins the study loaded, as named, with the sha256 of their source."""
    plugins = (report.manifest or {}).get("plugins") or []
    return [[str(p.get("plugin", p.get("ref"))), str(p.get("sha256"))] for p in plugins if isinstance(p, dict)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_markdown(report: StudyReport) -> str:
    spec = report.spec
    lines = [
        f"# Study {spec.name}",
        "",
        f"**Verdict.** {report.verdict}",
        "",
        f"Workload `{spec.workload}`, target {report.target:g}, budgets {', '.join(spec.budgets)}, "
        f"seeds {len(spec.seeds)}, cost currency `{report.currency}`.",
        "",
    ]
    if plugin_rows(report):
        lines += ["Plugins: " + ", ".join(f"`{name}` (sha256 {sha})" for name, sha in plugin_rows(report)), ""]
    if report.pending:
        lines += [f"**{report.pending} run(s) have not finished; rerun the study to complete it.**", ""]
    lines += ["## Fairness warnings", ""]
    lines += [f"- **{w.rule}**: {w.message}" for w in report.warnings] or ["- none"]
    lines += ["", "## Speedup at the target (validation)", "", *_markdown_table(SUMMARY_HEADER, summary_rows(report))]
    lines += ["", *(f"- {line}" for line in seed_advice(report))]
    lines += ["", "## Quality per budget", "", *_markdown_table(QUALITY_HEADER, quality_rows(report))]
    if report.trials:
        lines += ["", "## Tuning", "", *_markdown_table(TRIAL_HEADER, trial_rows(report))]
    lines += ["", "## What each arm trained with", "", *_markdown_table(["arm", "effective"], effective_rows(report))]
    return "\n".join(lines) + "\n"


QUALITY_HEADER = ["arm", "budget", "validation (judged)", "test (reported)"]
TRIAL_HEADER = ["arm", "trial", "drawn", "status", "cost to target", "final validation quality", ""]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(alt: str, source: str | None) -> str:
    return "" if source is None else f'<img alt="{html.escape(alt)}" src="{source}">'


def render_html(report: StudyReport) -> str:
    """One self-contained page: the verdict, warnings, then results, plots as data URIs, every string escaped."""
    spec = report.spec
    escape = html.escape
    warnings = (
        "".join(f"<li><b>{escape(w.rule)}</b>: {escape(w.message)}</li>" for w in report.warnings) or "<li>none</li>"
    )
    budget_rows = [
        [arm, row.budget, _fmt(row.mean_final_cost), _fmt(row.median_time_to_target), f"{row.reached}/{row.n_seeds}"]
        for arm, summary in report.summaries.items()
        for row in summary.budgets
    ]
    curve_rows = [
        [arm, f"{result.quality:.4g}", speedup_text(result)]
        for arm, results in report.speedup_curves.items()
        for result in results
    ]
    manifest_rows = [[key, str(value)] for key, value in sorted((report.manifest or {}).items()) if key != "plugins"]
    plugins = _table(["plugin", "sha256 of its source"], plugin_rows(report)) if plugin_rows(report) else "<p>none</p>"
    if report.reference is not None:
        manifest_rows.append(
            ["reference cost", f"{report.reference.per_step:.3g} s/step + {report.reference.per_flop:.3g} s/FLOP"]
        )
    pending = (
        f"<p class='pending'>{report.pending} run(s) have not finished; rerun the study to complete it.</p>"
        if report.pending
        else ""
    )
    advice = "".join(f"<li>{escape(line)}</li>" for line in seed_advice(report))
    tuning = (
        f"<h2>Tuning</h2><p>{escape(report.ruleset)}.</p>{_image('tuning trials', tuning_figure(report))}"
        f"{_table(TRIAL_HEADER, trial_rows(report))}"
        if report.trials
        else f"<h2>Tuning</h2><p>{escape(report.ruleset)}.</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Study {escape(spec.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; }}
.verdict {{ font-size: 1.1em; background: #eef5ff; border: 1px solid #7aa7e0; padding: .6em 1em; }}
.warnings {{ background: #fff4e5; border: 1px solid #f0a020; padding: .5em 1em; }}
.pending {{ color: #a00; font-weight: bold; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Study {escape(spec.name)}</h1>
<p class="verdict">{escape(report.verdict)}</p>
<p>Workload <code>{escape(spec.workload)}</code>; target {report.target:g} on the validation split;
budgets {escape(", ".join(spec.budgets))}; seeds {escape(", ".join(map(str, spec.seeds)))};
cost currency <code>{escape(report.currency)}</code>.</p>
{pending}
<div class="warnings"><h2>Fairness warnings</h2><ul>{warnings}</ul></div>
<h2>Speedup at the target</h2>
<p>Judged on the validation split; interval: {escape(report.interval_method)}.</p>
{_table(SUMMARY_HEADER, summary_rows(report))}
<ul>{advice}</ul>
<h2>Quality per budget: validation (judged) and test (reported)</h2>
{_table(QUALITY_HEADER, quality_rows(report))}
<h2>Tradeoff curves and Pareto frontier</h2>
{_image("tradeoff curves", tradeoff_figure(report))}
<h2>Time to target</h2>
{_image("time to target", time_to_target_figure(report))}
{_table(["arm", "budget", "mean final cost", "median time to target", "seeds at target"], budget_rows)}
{tuning}
<h2>What each arm trained with</h2>
<p>Read off each run's optimizer after every method set it up (a method's own rescaling shows here).</p>
{_table(["arm", "effective hyperparameters"], effective_rows(report))}
<h2>Speedup across qualities (exploratory)</h2>
<p>Only the speedup at the target fixed when the study was created is a claim; these are exploratory.</p>
{_image("speedup curves", speedup_figure(report))}
{_table(["arm", "quality", "speedup"], curve_rows)}
<h2>Environment</h2>
{_table(["what", "value"], manifest_rows)}
<h2>Plugins</h2>
{plugins}
</body></html>
"""
