"""The study report: `report.html` (one self-contained page, `report_page`), `summary.md` and `runs.csv` beside
it, rebuilt from the store at any time with `algospeed report STUDY_DIR [--currency C]`. The verdict comes
first, then the fairness warnings, then the numbers and the evidence behind them."""

from __future__ import annotations

from pathlib import Path

from algospeed.core.currency import Currency
from algospeed.core.files import write_text_atomic
from algospeed.study.ablation import ablation_markdown
from algospeed.study.findings import StudyReport, analyse
from algospeed.study.report_page import render_html
from algospeed.study.report_tables import (
    QUALITY_NOTE,
    SUMMARY_HEADER,
    TRIAL_HEADER,
    effective_rows,
    plugin_rows,
    quality_header,
    quality_rows,
    seed_advice,
    speedup_text,
    summary_rows,
    trial_rows,
)
from algospeed.study.store import STORE_NAME, StudyStore

__all__ = [
    "SUMMARY_HEADER",
    "analyse",
    "effective_rows",
    "render_html",
    "render_markdown",
    "seed_advice",
    "speedup_text",
    "summary_rows",
    "write_report",
]


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
        f"seeds {len(spec.seeds)}, cost currency `{report.currency}`. Every run: `runs.csv`.",
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
    lines += ["", "## Final quality per arm and budget", "", f"{QUALITY_NOTE}.", ""]
    lines += _markdown_table(quality_header(report), quality_rows(report))
    lines += ablation_markdown(report, speedup_text)
    if report.trials:
        lines += ["", "## Tuning", "", *_markdown_table(TRIAL_HEADER, trial_rows(report))]
    lines += ["", "## What each arm trained with", "", *_markdown_table(["arm", "effective"], effective_rows(report))]
    return "\n".join(lines) + "\n"
