"""The study report: `report.html` (one self-contained file, plots embedded), `summary.md` and
`runs.csv`, rebuilt from the store at any time with `algospeed report STUDY_DIR`."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from algospeed.core.files import write_text_atomic
from algospeed.study.analysis import (
    ArmSummary,
    FrontierPoint,
    ReferenceCost,
    RunRecord,
    Speedup,
    TradeoffPoint,
    arm_summary,
    frontier_by_arm,
    speedup_curve,
    tradeoff_curves,
)
from algospeed.study.fairness import FairnessWarning, StudyFacts, check_fairness
from algospeed.study.judging import Judging
from algospeed.study.runner import current_records
from algospeed.study.spec import STORED, StudySpec
from algospeed.study.store import STORE_NAME, StudyStore

CURVE_QUALITIES = 8  # speedup is reported at this many qualities up to the target


@dataclass
class StudyReport:
    """The analysed study, as the report shows it."""

    spec: StudySpec
    judging: Judging
    manifest: dict[str, Any] | None
    reference: ReferenceCost | None
    records: list[RunRecord]
    summaries: dict[str, ArmSummary]
    curves: dict[str, list[TradeoffPoint]]
    frontier: list[FrontierPoint]
    speedup_curves: dict[str, list[Speedup]]
    warnings: list[FairnessWarning]
    pending: int

    @property
    def currency(self) -> str:
        return self.spec.currency

    @property
    def target(self) -> float:
        return self.judging.target


def analyse(folder: str | Path) -> StudyReport:
    """Read the store in `folder` and analyse it."""
    store = StudyStore.open_existing(Path(folder) / STORE_NAME)
    try:
        spec = StudySpec.model_validate(store.meta("spec"), context=STORED)
        judging = Judging.from_dict(store.meta("judging"))
        reference = store.reference_cost()
        records = current_records(store)
        runs = store.runs(keys=set(store.meta("grid") or ()))
        trials = store.runs(keys=set(store.meta("trials") or ()))
        manifest = store.meta("manifest")
    finally:
        store.close()
    currency, target = spec.currency, judging.target
    summaries = arm_summary(records, spec.baseline, target, currency, reference)
    curves = tradeoff_curves(records, currency, reference)
    baseline = [r for r in records if r.arm == spec.baseline]
    qualities = _qualities(records, target)
    speedups = {
        arm: speedup_curve(baseline, [r for r in records if r.arm == arm], qualities, currency, reference)
        for arm in spec.arms
        if arm != spec.baseline
    }
    facts = StudyFacts(spec=spec, judging=judging, runs=runs, trials=trials, manifest=manifest, summaries=summaries)
    return StudyReport(
        spec=spec,
        judging=judging,
        manifest=manifest,
        reference=reference,
        records=records,
        summaries=summaries,
        curves=curves,
        frontier=frontier_by_arm(curves),
        speedup_curves=speedups,
        warnings=check_fairness(facts),
        pending=sum(not run.status.ended for run in runs),
    )


def _qualities(records: list[RunRecord], target: float) -> list[float]:
    """Qualities from the baseline's first evaluation up to the target, for the speedup curve."""
    finals = [p.metrics.get(r.metric) for r in records for p in r.points[:1] if p.metrics.get(r.metric) is not None]
    start = min(finals) if finals else target
    return [float(q) for q in np.linspace(min(start, target), target, CURVE_QUALITIES)]


# ------------------------------------------------------------------------------------------ files
def write_report(folder: str | Path) -> list[Path]:
    """Write report.html, summary.md and runs.csv into `folder`; returns their paths."""
    folder = Path(folder)
    report = analyse(folder)
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


def _speedup_text(result: Speedup) -> str:
    if result.estimate is None:
        return "n/a (target not reached by most seeds)"
    interval = f" [{result.low:.2f}, {result.high:.2f}]" if result.low is not None and result.high is not None else ""
    return f"{result.estimate:.2f}x{interval}"


def summary_rows(report: StudyReport) -> list[list[str]]:
    """One row per arm: methods, seeds reaching the target, median cost to target, speedup with CI."""
    rows = []
    for arm, summary in report.summaries.items():
        methods = ", ".join(str(m) for m in report.spec.arms[arm].methods) or "(none)"
        rows.append(
            [
                arm,
                methods,
                f"{summary.reached}/{summary.n_seeds}",
                _fmt(summary.median_cost_to_target),
                "1 (reference)" if arm == report.spec.baseline else _speedup_text(summary.speedup),
            ]
        )
    return rows


SUMMARY_HEADER = ["arm", "methods", "seeds at target", "median cost to target", "speedup at target [95% CI]"]


def plugin_rows(report: StudyReport) -> list[list[str]]:
    """The plugins the study loaded, as named, with the sha256 of their source."""
    plugins = (report.manifest or {}).get("plugins") or []
    return [[str(p.get("plugin", p.get("ref"))), str(p.get("sha256"))] for p in plugins if isinstance(p, dict)]


def render_markdown(report: StudyReport) -> str:
    spec = report.spec
    lines = [
        f"# Study {spec.name}",
        "",
        f"Workload `{spec.workload}`, target {report.target:g}, budgets {', '.join(spec.budgets)}, "
        f"seeds {len(spec.seeds)}, cost currency `{spec.currency}`.",
        "",
    ]
    if plugin_rows(report):
        lines += ["Plugins: " + ", ".join(f"`{name}` (sha256 {sha})" for name, sha in plugin_rows(report)), ""]
    if report.pending:
        lines += [f"**{report.pending} run(s) have not finished; rerun the study to complete it.**", ""]
    lines += ["## Fairness warnings", ""]
    lines += [f"- **{w.rule}**: {w.message}" for w in report.warnings] or ["- none"]
    lines += [
        "",
        "## Speedup at the target",
        "",
        "| " + " | ".join(SUMMARY_HEADER) + " |",
        "|" + "---|" * len(SUMMARY_HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(report)]
    return "\n".join(lines) + "\n"


def _figure_data(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _color(report: StudyReport, arm: str) -> str:
    """One colour per arm across every figure."""
    return f"C{list(report.spec.arms).index(arm) % 10}"


def tradeoff_figure(report: StudyReport) -> str:
    """Final quality against cost per arm (mean, min-max over seeds), with the Pareto frontier."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for arm, curve in report.curves.items():
        points = [p for p in curve if p.quality_mean is not None]
        if not points:
            continue
        costs = [p.cost for p in points]
        means = np.array([p.quality_mean for p in points])
        spread = [means - [p.quality_min for p in points], [p.quality_max for p in points] - means]
        axis.errorbar(costs, means, yerr=spread, marker="o", capsize=3, label=arm, color=_color(report, arm))
    if report.frontier:
        axis.plot(
            [p.cost for p in report.frontier],
            [p.quality for p in report.frontier],
            "k--",
            lw=1,
            label="Pareto frontier",
        )
    axis.axhline(report.target, color="grey", lw=0.8, ls=":", label=f"target {report.target:g}")
    axis.set_xlabel(f"cost ({report.currency})")
    axis.set_ylabel(report.records[0].metric if report.records else "quality")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _figure_data(figure)


def time_to_target_figure(report: StudyReport) -> str:
    """Each seed's cost to reach the target per arm (never-reached seeds marked at the top), with the median."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    seed_costs = {arm: summary.seed_costs for arm, summary in report.summaries.items()}
    arms = list(seed_costs)
    reached_all = [c for costs in seed_costs.values() for c in costs if c is not None]
    ceiling = max(reached_all) * 1.15 if reached_all else 1.0
    for index, arm in enumerate(arms):
        costs = seed_costs[arm]
        reached = [c for c in costs if c is not None]
        axis.scatter([index] * len(reached), reached, color="C0", zorder=3)
        if len(reached) < len(costs):
            axis.scatter(
                [index] * (len(costs) - len(reached)),
                [ceiling] * (len(costs) - len(reached)),
                marker="x",
                color="C3",
                zorder=3,
            )
        median = report.summaries[arm].median_cost_to_target
        if median is not None:
            axis.hlines(median, index - 0.3, index + 0.3, color="k")
    axis.set_xticks(range(len(arms)), arms, rotation=20)
    axis.set_ylabel(f"cost to target ({report.currency})")
    axis.set_title("time to target per seed (x: never reached; bar: median)", fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    return _figure_data(figure)


def speedup_figure(report: StudyReport) -> str:
    """Speedup against the baseline as a function of the quality matched, with its bootstrap band."""
    figure, axis = plt.subplots(figsize=(7, 3.5))
    for arm, results in report.speedup_curves.items():
        known = [r for r in results if r.estimate is not None]
        if not known:
            continue
        qualities = [r.quality for r in known]
        axis.plot(qualities, [r.estimate for r in known], marker="o", label=arm, color=_color(report, arm))
        if all(r.low is not None and r.high is not None for r in known):
            axis.fill_between(
                qualities, [r.low for r in known], [r.high for r in known], alpha=0.2, color=_color(report, arm)
            )
    axis.axhline(1.0, color="grey", lw=0.8)
    axis.set_xlabel("quality matched")
    axis.set_ylabel("speedup over baseline")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _figure_data(figure)


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: StudyReport) -> str:
    """One self-contained page: warnings first, then results, plots as data URIs, every string escaped."""
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
        [arm, result_quality, _speedup_text(result)]
        for arm, results in report.speedup_curves.items()
        for result, result_quality in ((r, f"{r.quality:.4g}") for r in results)
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
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Study {escape(spec.name)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: .3em .6em; }}
.warnings {{ background: #fff4e5; border: 1px solid #f0a020; padding: .5em 1em; }}
.pending {{ color: #a00; font-weight: bold; }} img {{ max-width: 100%; }}
</style></head><body>
<h1>Study {escape(spec.name)}</h1>
<p>Workload <code>{escape(spec.workload)}</code>; target {report.target:g};
budgets {escape(", ".join(spec.budgets))}; seeds {escape(", ".join(map(str, spec.seeds)))};
cost currency <code>{escape(spec.currency)}</code>.</p>
{pending}
<div class="warnings"><h2>Fairness warnings</h2><ul>{warnings}</ul></div>
<h2>Speedup at the target</h2>
{_table(SUMMARY_HEADER, summary_rows(report))}
<h2>Tradeoff curves and Pareto frontier</h2>
<img alt="tradeoff curves" src="{tradeoff_figure(report)}">
<h2>Time to target</h2>
<img alt="time to target" src="{time_to_target_figure(report)}">
{_table(["arm", "budget", "mean final cost", "median time to target", "seeds at target"], budget_rows)}
<h2>Speedup across qualities</h2>
<img alt="speedup curves" src="{speedup_figure(report)}">
{_table(["arm", "quality", "speedup [95% CI]"], curve_rows)}
<h2>Environment</h2>
{_table(["what", "value"], manifest_rows)}
<h2>Plugins</h2>
{plugins}
</body></html>
"""
