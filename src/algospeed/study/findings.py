"""What a study found, read from its store: per-arm summaries and speedups, tuning trials and choices, the
hyperparameters each arm really trained with, test quality, fairness warnings, and the one-sentence verdict.
`report` renders it; nothing here needs the workload's, the methods' or the plugins' code."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from algospeed.core.currency import Currency
from algospeed.core.status import RunStatus
from algospeed.errors import UsageError
from algospeed.study.analysis import (
    ArmSummary,
    FrontierPoint,
    ReferenceCost,
    RunRecord,
    Speedup,
    TradeoffPoint,
    arm_summary,
    as_currency,
    final_quality,
    frontier_by_arm,
    speedup_curve,
    time_to_target,
    tradeoff_curves,
)
from algospeed.study.fairness import FairnessWarning, StudyFacts, check_fairness
from algospeed.study.hyperparameters import Hyperparameters
from algospeed.study.judging import Judging
from algospeed.study.spec import STORED, StudySpec
from algospeed.study.store import STORE_NAME, StoredRun, StudyStore
from algospeed.study.tuning import Choice

CURVE_QUALITIES = 8  # speedups are also shown at this many qualities up to the target (exploratory)
BLOCKING_RULES = (
    "target_reached",
    "test_selection",
    "tuning_effort",
    "baseline_tuning_edge",
    "eval_protocol",
    "schedule_decay",
)
"""Fairness rules whose warning makes every speedup of the study unclaimable (a warning of the others
qualifies the numbers without voiding them)."""


@dataclass(frozen=True)
class TrialRow:
    """One tuning trial of an arm: what it drew, how it ended, its cost to the target and final quality."""

    arm: str
    trial: int
    params: Hyperparameters
    status: RunStatus
    cost: float | None
    quality: float | None
    chosen: bool


@dataclass(frozen=True)
class Tradeoff:
    """The tradeoff curves and their Pareto frontier in one cost currency: every run records its cost in all of
    them, they disagree, and a reader of the report switches between them."""

    currency: Currency
    curves: dict[str, list[TradeoffPoint]]
    frontier: list[FrontierPoint]


@dataclass(frozen=True)
class Unrecorded:
    """A currency the runs did not record, and why (the report says so rather than drawing zeros)."""

    currency: Currency
    reason: str


@dataclass
class StudyReport:
    """The analysed study, as the report shows it."""

    spec: StudySpec
    judging: Judging
    currency: Currency
    manifest: dict[str, Any] | None
    reference: ReferenceCost | None
    records: list[RunRecord]
    summaries: dict[str, ArmSummary]
    tradeoffs: list[Tradeoff]  # the judged currency first, then every other recorded one
    unrecorded: list[Unrecorded]
    speedup_curves: dict[str, list[Speedup]]
    warnings: list[FairnessWarning]
    pending: int
    trials: dict[str, list[TrialRow]]
    chosen: dict[str, Choice]
    hyperparameters: dict[str, list[dict[str, Any]]]
    test_quality: dict[str, dict[str, float | None]]
    validation_quality: dict[str, dict[str, float | None]]
    eval_fingerprints: frozenset[str]

    @property
    def curves(self) -> dict[str, list[TradeoffPoint]]:
        """Each arm's tradeoff curve in the judged currency."""
        return self.tradeoffs[0].curves if self.tradeoffs else {}

    @property
    def target(self) -> float:
        return self.judging.target

    @property
    def ruleset(self) -> str:
        tuning = self.spec.tuning
        if tuning is None:
            return "self-tuning ruleset: no tuning, every arm on its defaults"
        return (
            f"external-tuning ruleset: {tuning.trials} quasi-random trials per arm at {self.spec.tuning_budget}, "
            "each arm's fastest to the target on validation chosen"
        )

    @property
    def interval_method(self) -> str:
        methods = [s.speedup.method for arm, s in self.summaries.items() if arm != self.spec.baseline]
        return methods[0] if methods else "no interval (no arm besides the baseline)"

    @property
    def blocking(self) -> list[str]:
        """The blocking rules that fire for the study as a whole."""
        return self.blocked(None)

    def blocked(self, arm: str | None) -> list[str]:
        """The blocking rules that void `arm`'s claim: the study-wide ones and the arm's own."""
        return sorted({w.rule for w in self.warnings if w.rule in BLOCKING_RULES and w.arm in (None, arm)})

    @property
    def verdict(self) -> str:
        """The study in one sentence: ruleset, target, split, seeds, interval method, and what can be claimed."""
        setting = (
            f"{self.ruleset}; {self.judging.metric} target {self.target:g} on the validation split (fixed when the "
            f"study was created), {len(self.spec.seeds)} seed(s) per arm, costs in {self.currency}, "
            f"{self.interval_method}"
        )
        faster, slower, voided = [], [], []
        for arm, summary in self.summaries.items():
            result = summary.speedup
            if arm == self.spec.baseline or result.estimate is None or result.low is None or result.high is None:
                continue
            text = f"{arm} {result.estimate:.2f}x [{result.low:.2f}, {result.high:.2f}]"
            if self.blocked(arm):
                voided.append(f"{text}, failing {', '.join(self.blocked(arm))}")
            elif result.low > 1:
                faster.append(text)
            elif result.high < 1:
                slower.append(text)
        if self.blocking:
            return f"{setting}: no speedup can be claimed, the comparison itself fails {', '.join(self.blocking)}."
        claims = f"faster than the baseline: {'; '.join(faster)}" if faster else "no arm gives a claimable speedup"
        if slower:
            claims += f"; slower: {'; '.join(slower)}"
        if voided:
            claims += f"; not claimable: {'; '.join(voided)}"
        return f"{setting}: {claims}."


def analyse(folder: str | Path, currency: Currency | str | None = None) -> StudyReport:
    """Read the store in `folder` and analyse it, judged in the study's currency or in `currency` (any
    recorded one: every run stores its cost in all of them)."""
    store = StudyStore.open_existing(Path(folder) / STORE_NAME)
    try:
        spec = StudySpec.model_validate(store.meta("spec"), context=STORED)
        judging = Judging.from_dict(store.meta("judging"))
        reference = store.reference_cost()
        grid_keys, trial_keys = set(store.meta("grid") or ()), set(store.meta("trials") or ())
        records = store.records(judging.metric, judging.higher_is_better, keys=grid_keys)
        runs, trial_runs = store.runs(keys=grid_keys), store.runs(keys=trial_keys)
        trial_records = store.records_by_key(judging.metric, judging.higher_is_better, keys=trial_keys)
        chosen = {arm: Choice.from_dict(data) for arm, data in (store.meta("chosen") or {}).items()}
        manifest = store.meta("manifest")
    finally:
        store.close()
    judged_in = as_currency(currency or spec.currency)
    target = judging.target
    has_baseline = any(r.arm == spec.baseline for r in records)
    summaries = arm_summary(records, spec.baseline, target, judged_in, reference) if has_baseline else {}
    tradeoffs, unrecorded = _tradeoffs(records, judged_in, reference)
    baseline = [r for r in records if r.arm == spec.baseline]
    qualities = _qualities(records, target)
    speedups = {
        arm: speedup_curve(baseline, [r for r in records if r.arm == arm], qualities, judged_in, reference)
        for arm in spec.arms
        if arm != spec.baseline and baseline and any(r.arm == arm for r in records)
    }
    finals = {(r.arm, r.budget, r.seed): final_quality(r) for r in records if r.completed}
    facts = StudyFacts(spec=spec, judging=judging, runs=runs, trials=trial_runs, manifest=manifest, summaries=summaries)
    return StudyReport(
        spec=spec,
        judging=judging,
        currency=judged_in,
        manifest=manifest,
        reference=reference,
        records=records,
        summaries=summaries,
        tradeoffs=tradeoffs,
        unrecorded=unrecorded,
        speedup_curves=speedups,
        warnings=check_fairness(facts),
        pending=sum(not run.status.ended for run in [*runs, *trial_runs]),
        trials=_trial_rows(trial_runs, trial_records, chosen, target, judged_in, reference),
        chosen=chosen,
        hyperparameters=_effective(runs),
        test_quality=_mean_by_budget(runs, lambda run: run.test_metrics.get(judging.metric)),
        validation_quality=_mean_by_budget(runs, lambda run: finals.get((run.arm, run.budget, run.seed))),
        eval_fingerprints=frozenset(run.eval_fingerprint for run in runs if run.eval_fingerprint),
    )


def _tradeoffs(
    records: list[RunRecord], judged: Currency, reference: ReferenceCost | None
) -> tuple[list[Tradeoff], list[Unrecorded]]:
    """The tradeoff in the judged currency (an error there stops the report), then in each other currency the
    runs recorded: one they could not (energy where nothing measured it, reference without a calibration) or
    where no run spent any (tokens on data without tokens) is listed with why instead."""
    if not records:
        return [], []
    found, missing = [], []
    for currency in [judged, *(other for other in Currency if other is not judged)]:
        try:
            curves = tradeoff_curves(records, currency, reference)
        except UsageError as error:
            if currency is judged:
                raise
            missing.append(Unrecorded(currency, str(error)))
            continue
        if currency is not judged and not any(point.cost > 0 for curve in curves.values() for point in curve):
            missing.append(Unrecorded(currency, "no run spent any"))
            continue
        found.append(Tradeoff(currency, curves, frontier_by_arm(curves)))
    return found, missing


def _qualities(records: list[RunRecord], target: float) -> list[float]:
    """Qualities from the first evaluations up to the target, for the (exploratory) speedup curve."""
    firsts = [r.quality(r.points[0]) for r in records if r.points]
    known = [q for q in firsts if q is not None]
    start = min(known) if known else target
    return [float(q) for q in np.linspace(min(start, target), target, CURVE_QUALITIES)]


def _trial_rows(
    runs: list[StoredRun],
    records: dict[str, RunRecord],
    chosen: dict[str, Choice],
    target: float,
    currency: Currency,
    reference: ReferenceCost | None,
) -> dict[str, list[TrialRow]]:
    rows: dict[str, list[TrialRow]] = {}
    for run in sorted(runs, key=lambda run: (run.arm, run.trial or 0)):
        record = records.get(run.key)
        cost = time_to_target(record, target, currency, reference).cost if record is not None else None
        choice = chosen.get(run.arm)
        rows.setdefault(run.arm, []).append(
            TrialRow(
                arm=run.arm,
                trial=run.trial or 0,
                params=Hyperparameters.model_validate(run.params),
                status=run.status,
                cost=cost,
                quality=final_quality(record) if record is not None else None,
                chosen=choice is not None and choice.trial == run.trial,
            )
        )
    return rows


def _effective(runs: list[StoredRun]) -> dict[str, list[dict[str, Any]]]:
    """Per arm, the distinct sets of hyperparameters its runs really trained with (one, when all agree)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if run.hyperparameters and run.hyperparameters not in found.setdefault(run.arm, []):
            found[run.arm].append(run.hyperparameters)
    return found


def _mean_by_budget(runs: list[StoredRun], value: Any) -> dict[str, dict[str, float | None]]:
    """Per arm and budget, the mean over completed seeds of `value(run)` (None where no run has one)."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        if run.status is not RunStatus.COMPLETED:
            continue
        quality = value(run)
        bucket = grouped.setdefault(run.arm, {}).setdefault(run.budget, [])
        if quality is not None and math.isfinite(quality):
            bucket.append(float(quality))
    return {
        arm: {budget: (sum(values) / len(values) if values else None) for budget, values in budgets.items()}
        for arm, budgets in grouped.items()
    }
