"""The figures of a study report, each a PNG as a data URI (the page stays one self-contained file), every axis
labelled with what it measures and in which unit."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable
from typing import ParamSpec

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_hex
from matplotlib.ticker import LogFormatter

from algospeed.core.currency import Currency
from algospeed.study.findings import StudyReport, Tradeoff

COST_AXES = {
    Currency.TRAIN_SECONDS: "training time (s)",
    Currency.FLOPS: "training compute (FLOP)",
    Currency.SAMPLES: "training samples (samples)",
    Currency.TOKENS: "training tokens (tokens)",
    Currency.STEPS: "optimizer steps (steps)",
    Currency.REFERENCE: "reference cost (calibrated s)",
    Currency.ENERGY: "training energy (J)",
}
"""What a cost in each currency is, with its unit: axis labels, and the report's names for the currencies."""

Drawn = ParamSpec("Drawn")


def cost_axis(currency: Currency) -> str:
    """`training time (s)`: what a cost in `currency` measures, with its unit."""
    return COST_AXES[currency]


def quality_axis(report: StudyReport) -> str:
    """`validation accuracy (higher is better)`: what was judged, and which way is better."""
    direction = "higher" if report.judging.higher_is_better else "lower"
    return f"validation {report.judging.metric} ({direction} is better)"


def plain_text(draw: Callable[Drawn, str | None]) -> Callable[Drawn, str | None]:
    """Draw with math text off: a user's arm name (`$\\frac{$`) is a label, not a formula that stops the report."""

    @functools.wraps(draw)
    def drawn(*args: Drawn.args, **kwargs: Drawn.kwargs) -> str | None:
        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return drawn


def _figure_data(figure: plt.Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _color(report: StudyReport, arm: str) -> str:
    """One colour per arm across every figure."""
    return f"C{list(report.spec.arms).index(arm) % 10}"


def arm_color(report: StudyReport, arm: str) -> str:
    """The arm's colour in the figures as `#rrggbb`, for the page around them."""
    return to_hex(_color(report, arm))


@plain_text
def tradeoff_figure(report: StudyReport, tradeoff: Tradeoff) -> str:
    """Final quality against cost in one currency per arm (mean, min-max over seeds), with the Pareto frontier."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for arm, curve in tradeoff.curves.items():
        points = [p for p in curve if p.quality_mean is not None]
        if not points:
            continue
        costs = [p.cost for p in points]
        means = np.array([p.quality_mean for p in points])
        spread = [means - [p.quality_min for p in points], [p.quality_max for p in points] - means]
        axis.errorbar(costs, means, yerr=spread, marker="o", capsize=3, label=arm, color=_color(report, arm))
    if tradeoff.frontier:
        axis.plot(
            [p.cost for p in tradeoff.frontier],
            [p.quality for p in tradeoff.frontier],
            "k--",
            lw=1,
            label="Pareto frontier",
        )
    axis.axhline(report.target, color="grey", lw=0.8, ls=":", label=f"target {report.target:g}")
    axis.set_xlabel(cost_axis(tradeoff.currency))
    axis.set_ylabel(quality_axis(report))
    judged = " (the study's currency)" if tradeoff.currency is report.currency else ""
    axis.set_title(f"final quality per budget against {cost_axis(tradeoff.currency)}{judged}", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _figure_data(figure)


@plain_text
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
        axis.scatter([index] * len(reached), reached, color=_color(report, arm), zorder=3)
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
    axis.set_ylabel(f"cost to target: {cost_axis(report.currency)}")
    axis.set_title("time to target per seed (x: never reached; bar: median)", fontsize=9)
    axis.grid(alpha=0.3, axis="y")
    return _figure_data(figure)


@plain_text
def speedup_figure(report: StudyReport) -> str:
    """Speedup against the baseline as a function of the quality matched, with its confidence band (exploratory:
    only the speedup at the target fixed beforehand is a claim)."""
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
    axis.set_xlabel(f"{quality_axis(report)} matched")
    axis.set_ylabel("speedup over the baseline (x)")
    axis.set_title(f"speedup at matched quality, costs as {cost_axis(report.currency)} (exploratory)", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _figure_data(figure)


@plain_text
def tuning_figure(report: StudyReport) -> str | None:
    """Each trial's cost to the target against its learning rate, per arm (trials that never reached it at the
    top), the chosen trial circled; None when the study did not tune the learning rate."""
    rows = [row for rows in report.trials.values() for row in rows if row.params.lr is not None]
    if not rows:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.5))
    reached = [row.cost for row in rows if row.cost is not None]
    ceiling = max(reached) * 1.15 if reached else 1.0
    for arm, arm_rows in report.trials.items():
        shown = [row for row in arm_rows if row.params.lr is not None]
        lrs = [row.params.lr for row in shown]
        costs = [ceiling if row.cost is None else row.cost for row in shown]
        markers = ["x" if row.cost is None else "o" for row in shown]
        for lr, cost, marker in zip(lrs, costs, markers, strict=True):
            axis.scatter([lr], [cost], marker=marker, color=_color(report, arm), zorder=3)
        for row, lr, cost in zip(shown, lrs, costs, strict=True):
            if row.chosen:
                axis.scatter([lr], [cost], s=160, facecolors="none", edgecolors=_color(report, arm), zorder=4)
        axis.plot([], [], "o", color=_color(report, arm), label=arm)
    axis.set_xscale("log")
    # plain-text tick labels: matplotlib's default ones are math text, shown raw with math text off
    axis.xaxis.set_major_formatter(LogFormatter())
    axis.xaxis.set_minor_formatter(LogFormatter(minor_thresholds=(2, 0.4)))
    axis.set_xlabel("learning rate (log scale)")
    axis.set_ylabel(f"cost to target: {cost_axis(report.currency)}")
    axis.set_title("tuning trials (x: never reached the target; circle: chosen)", fontsize=9)
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    return _figure_data(figure)
