"""The ablation view of a study: for each method of its stack (the arm with the most methods), the speedup of
that method alone against the baseline and, where the study ran the stack without it, its marginal worth
inside the stack (the stack's speedup over the stack without it). Read from the analysed study; both are the
same statistic as the headline (ratio of geometric-mean seed costs to the target, Welch interval)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from algospeed.study.analysis import RunRecord, Speedup, speedup
from algospeed.study.findings import StudyReport

HEADER = ["method", "alone vs baseline", "arm", "marginal in the stack", "stack without it"]


@dataclass(frozen=True)
class AblationRow:
    """One method of the stack: its arm alone and that arm's speedup over the baseline; the arm with every
    other method of the stack and the stack's speedup over it (above 1: the method is worth keeping)."""

    method: str
    alone_arm: str | None
    alone: Speedup | None
    without_arm: str | None
    marginal: Speedup | None


@dataclass(frozen=True)
class Ablation:
    """The stack arm, its own speedup over the baseline, and one row per method in it."""

    stack: str
    speedup: Speedup | None
    rows: list[AblationRow]


def _methods(report: StudyReport, arm: str) -> frozenset[str]:
    return frozenset(method.name for method in report.spec.arms[arm].methods)


def _arm_with(report: StudyReport, methods: frozenset[str]) -> str | None:
    ran = {record.arm for record in report.records}
    return next((arm for arm in report.spec.arms if arm in ran and _methods(report, arm) == methods), None)


def ablation(report: StudyReport) -> Ablation | None:
    """The study's ablation, or None without a stack of two or more methods that ran beside the baseline."""
    ran = {record.arm for record in report.records}
    stacks = [arm for arm in report.spec.arms if arm in ran and len(_methods(report, arm)) >= 2]
    baseline = report.spec.baseline
    if not stacks or baseline not in ran:
        return None
    stack = max(stacks, key=lambda arm: len(_methods(report, arm)))  # the first of the largest
    methods = _methods(report, stack)

    def records(arm: str) -> list[RunRecord]:
        return [record for record in report.records if record.arm == arm]

    def compare(slower: str | None, faster: str | None) -> Speedup | None:
        if slower is None or faster is None:
            return None
        return speedup(records(slower), records(faster), report.target, report.currency, report.reference)

    rows = []
    for method in (m.name for m in report.spec.arms[stack].methods):
        alone = _arm_with(report, frozenset({method}))
        without = _arm_with(report, methods - {method})
        rows.append(AblationRow(method, alone, compare(baseline, alone), without, compare(without, stack)))
    return Ablation(stack, compare(baseline, stack), rows)


def ablation_rows(result: Ablation, text: Callable[[Speedup], str]) -> list[list[str]]:
    """The table's rows, the stack itself first; `text` words a speedup as the report's headline does."""

    def cell(value: Speedup | None) -> str:
        return "not run" if value is None else text(value)

    rows = [[f"all of {result.stack}", cell(result.speedup), result.stack, "", ""]]
    for row in result.rows:
        rows.append([row.method, cell(row.alone), row.alone_arm or "", cell(row.marginal), row.without_arm or ""])
    return rows


def ablation_markdown(report: StudyReport, text: Callable[[Speedup], str]) -> list[str]:
    """The ablation section of summary.md (nothing for a study without a stack)."""
    result = ablation(report)
    if result is None:
        return []
    lines = ["", "## Ablation (each method of the stack: alone, and its marginal worth in the stack)", ""]
    lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return lines + ["| " + " | ".join(row) + " |" for row in ablation_rows(result, text)]


def ablation_html(report: StudyReport, text: Callable[[Speedup], str]) -> str:
    """The ablation section of report.html (empty for a study without a stack)."""
    result = ablation(report)
    if result is None:
        return ""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in HEADER)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in ablation_rows(result, text)
    )
    return (
        "<h2 id='ablation'>Ablation</h2>"
        f"<p>Each method of the stack <code>{html.escape(result.stack)}</code>: its speedup alone "
        "against the baseline, and the stack's speedup over the stack without it (its marginal worth), at the "
        f"target in <code>{html.escape(report.currency.value)}</code>.</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )
