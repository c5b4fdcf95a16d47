"""The report's tables as rows of text, shared by report.html, summary.md and the terminal summary: so that the
three always show the same numbers."""

from __future__ import annotations

from typing import Any

from algospeed.study.analysis import Speedup
from algospeed.study.figures import cost_axis
from algospeed.study.findings import StudyReport

SUMMARY_HEADER = ["arm", "methods", "hyperparameters", "seeds at target", "median cost to target", "speedup at target"]
TRIAL_HEADER = ["arm", "trial", "drawn", "status", "cost to target", "final validation quality", ""]
QUALITY_NOTE = "validation (judged) / test (reported): the mean final quality over each budget's completed seeds"


def fmt(value: float | None, digits: int = 3) -> str:
    """A cost or a quality in `digits` significant figures; `never` for a target not reached."""
    return "never" if value is None else f"{value:.{digits}g}"


def speedup_text(result: Speedup) -> str:
    """`1.42x [1.10, 1.83]`, with why there is no interval where there is none."""
    if result.estimate is None:
        return "n/a (target not reached by most seeds)"
    if result.low is None or result.high is None:
        return f"{result.estimate:.2f}x (no interval: {result.interval_note or 'see the method'})"
    return f"{result.estimate:.2f}x [{result.low:.2f}, {result.high:.2f}]"


def arm_speedup(report: StudyReport, arm: str) -> str:
    """The arm's speedup at the target, or that it is the baseline."""
    if arm == report.spec.baseline:
        return "1 (the baseline)"
    summary = report.summaries.get(arm)
    return "no run finished" if summary is None else speedup_text(summary.speedup)


def arm_methods(report: StudyReport, arm: str) -> str:
    """The arm's methods with their settings, in order."""
    return ", ".join(str(m) for m in report.spec.arms[arm].methods) or "(none)"


def arm_hyperparameters(report: StudyReport, arm: str) -> str:
    """What the arm set or the tuning chose, as the spec says it (the effective values are in the arm cards)."""
    choice = report.chosen.get(arm)
    if choice is not None:
        return f"tuned: {choice.hyperparameters.describe()} (trial {choice.trial})"
    return report.spec.arms[arm].hyperparameters.describe()


def summary_rows(report: StudyReport) -> list[list[str]]:
    """One row per arm: methods, hyperparameters, seeds reaching the target, median cost to target, speedup."""
    return [
        [
            arm,
            arm_methods(report, arm),
            arm_hyperparameters(report, arm),
            f"{summary.reached}/{summary.n_seeds}",
            fmt(summary.median_cost_to_target),
            arm_speedup(report, arm),
        ]
        for arm, summary in report.summaries.items()
    ]


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


def quality_header(report: StudyReport) -> list[str]:
    """`arm` and the budgets in budget order (the spec keeps them sorted by amount: 8ep before 16ep)."""
    return ["arm", *report.spec.budgets]


def quality_rows(report: StudyReport) -> list[list[str]]:
    """Per arm, one cell per budget: the mean final validation quality (what was judged) / the test quality."""
    rows = []
    for arm in report.spec.arms:
        cells = [arm]
        for budget in report.spec.budgets:
            validation = report.validation_quality.get(arm, {}).get(budget)
            test = report.test_quality.get(arm, {}).get(budget)
            cells.append(f"{_quality(validation)} / {_quality(test)}")
        rows.append(cells)
    return rows


def _quality(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def budget_header(report: StudyReport) -> list[str]:
    axis = cost_axis(report.currency)
    return ["arm", "budget", f"mean final cost: {axis}", f"median time to target: {axis}", "seeds at target"]


def budget_rows(report: StudyReport) -> list[list[str]]:
    """Per arm and budget (in budget order): mean final cost, median time to target, seeds reaching it."""
    order = {budget: index for index, budget in enumerate(report.spec.budgets)}
    return [
        [arm, row.budget, fmt(row.mean_final_cost), fmt(row.median_time_to_target), f"{row.reached}/{row.n_seeds}"]
        for arm, summary in report.summaries.items()
        for row in sorted(summary.budgets, key=lambda row: order.get(row.budget, len(order)))
    ]


def effective_lines(report: StudyReport, arm: str) -> list[str]:
    """What the arm's runs really trained with: one line per distinct set (e.g. per budget)."""
    return [
        ", ".join(f"{k}={_value(v)}" for k, v in found.items() if k != "trainable_parameters") or "(no run finished)"
        for found in report.hyperparameters.get(arm, []) or [{}]
    ]


def effective_rows(report: StudyReport) -> list[list[str]]:
    """Per arm, what its runs really trained with (several lines where its runs differ, e.g. per budget)."""
    return [[arm, line] for arm in report.spec.arms for line in effective_lines(report, arm)]


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
            fmt(row.cost),
            fmt(row.quality, 4),
            "chosen" if row.chosen else "",
        ]
        for rows in report.trials.values()
        for row in rows
    ]


def curve_rows(report: StudyReport) -> list[list[str]]:
    """The exploratory speedups at qualities below the target, per arm."""
    return [
        [arm, f"{result.quality:.4g}", speedup_text(result)]
        for arm, results in report.speedup_curves.items()
        for result in results
    ]


def manifest_rows(report: StudyReport) -> list[list[str]]:
    """The environment the study ran in, and the reference cost it was calibrated to."""
    rows = [[key, str(value)] for key, value in sorted((report.manifest or {}).items()) if key != "plugins"]
    reference = report.reference
    if reference is not None:
        rows.append(["reference cost", f"{reference.per_step:.3g} s/step + {reference.per_flop:.3g} s/FLOP"])
    return rows


def plugin_rows(report: StudyReport) -> list[list[str]]:
    """The plugins the study loaded, as named, with the sha256 of their source."""
    plugins = (report.manifest or {}).get("plugins") or []
    return [[str(p.get("plugin", p.get("ref"))), str(p.get("sha256"))] for p in plugins if isinstance(p, dict)]
