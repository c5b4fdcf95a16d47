"""Fairness checks: named rules that a study is held to before its numbers are believed.

Each rule reads the study (its spec, runs, manifest and analysis) and returns warnings; the report
puts them at the top. The rules follow evaluation best practice: several budgets with fully decayed
schedules (Budgeted Training, ICLR 2020), several seeds, the same eval protocol, extra compute
charged, a reachable target, intervals that exclude 1, a recorded environment, equal tuning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from algospeed.core.currency import Currency
from algospeed.core.status import RunStatus
from algospeed.study.analysis import MIN_INTERVAL_SEEDS, ArmSummary
from algospeed.study.judging import Judging
from algospeed.study.spec import StudySpec
from algospeed.study.store import StoredRun

MIN_BUDGETS = 3
MIN_SEEDS = 3
DECAYED = 0.05  # an LR multiplier at the end of the budget above this is not "fully decayed"
LOADED = 1.25  # load average per core above which wall-clock timings are not trusted


@dataclass(frozen=True)
class StudyFacts:
    """Everything the rules read (none of it needs the workload's, the methods' or the plugins' code)."""

    spec: StudySpec
    judging: Judging
    runs: list[StoredRun]  # the current grid
    trials: list[StoredRun]  # the current tuning trials
    manifest: dict[str, Any] | None
    summaries: dict[str, ArmSummary]


@dataclass(frozen=True)
class FairnessWarning:
    """A rule's finding; `arm` names the arm it concerns (None: the study as a whole)."""

    rule: str
    message: str
    arm: str | None = None


def baseline_budgets(facts: StudyFacts) -> list[str]:
    budgets = {run.budget for run in facts.runs if run.arm == facts.spec.baseline}
    if len(budgets) < MIN_BUDGETS:
        return [
            f"the baseline ran at {len(budgets)} budget(s); run it at {MIN_BUDGETS} or more, each fully decayed, "
            "so that a method is compared with the baseline's whole tradeoff curve, not one point of it"
        ]
    return []


def seeds(facts: StudyFacts) -> list[str]:
    if len(facts.spec.seeds) < MIN_SEEDS:
        return [f"{len(facts.spec.seeds)} seed(s) per cell; use {MIN_SEEDS} or more for a confidence interval"]
    return []


def schedule_decay(facts: StudyFacts) -> list[tuple[str, str]]:
    """Every budget must be a fully decayed run, except for arms whose method evaluates an average of the
    weights that makes every point of the run a finished one (schedule-free training: `Method.anytime`)."""
    anytime = set(facts.judging.anytime)
    ends: dict[str, float] = {}
    for run in facts.runs:
        if run.schedule_end is not None:
            ends[run.arm] = max(ends.get(run.arm, 0.0), run.schedule_end)
    return [
        (
            arm,
            f"arm {arm!r} ends its budget at {end:.2f}x its peak learning rate: its schedule does not decay by the "
            "end of the budget, so its shorter budgets are not fair (fully decayed) runs",
        )
        for arm, end in ends.items()
        if end > DECAYED and not anytime & {m.name for m in facts.spec.arms[arm].methods}
    ]


def eval_protocol(facts: StudyFacts) -> list[str]:
    by_arm: dict[str, set[str]] = {}
    for run in facts.runs:
        if run.eval_fingerprint is not None:
            by_arm.setdefault(run.arm, set()).add(run.eval_fingerprint)
    protocols = {fingerprint for fingerprints in by_arm.values() for fingerprint in fingerprints}
    if len(protocols) > 1:
        detail = "; ".join(f"{arm}: {', '.join(sorted(prints))}" for arm, prints in sorted(by_arm.items()))
        return [f"arms were evaluated on different data or eval protocols ({detail})"]
    return []


def extra_compute(facts: StudyFacts) -> list[str]:
    currency = facts.spec.currency
    if currency.sees_extra_work:
        return []
    return [
        f"arm {arm!r} uses {method.name}, which does extra work (extra passes or a proxy run) that the "
        f"{currency.value} currency does not charge; judge it in train_seconds, flops or reference"
        for arm, spec in facts.spec.arms.items()
        for method in spec.methods
        if method.name in facts.judging.extra_compute
    ]


def target_reached(facts: StudyFacts) -> list[str]:
    baseline = facts.summaries.get(facts.spec.baseline)
    if baseline is not None and baseline.reached == 0:
        return [
            f"the baseline never reached the target {facts.judging.target:g}; speedups at the target are "
            "undefined: lower the target or raise the budgets"
        ]
    return []


def significance(facts: StudyFacts) -> list[str]:
    warnings = []
    for arm, summary in facts.summaries.items():
        result = summary.speedup
        if arm == facts.spec.baseline or result.estimate is None:
            continue
        if result.low is None or result.high is None:
            few = min(result.n_baseline, result.n_arm) < MIN_INTERVAL_SEEDS
            reason = f"fewer than {MIN_INTERVAL_SEEDS} seeds" if few else result.interval_note
            warnings.append(f"arm {arm!r}: speedup {result.estimate:.2f}x: no speedup can be claimed: {reason}")
        elif result.low <= 1.0 <= result.high:
            warnings.append(
                f"arm {arm!r}: speedup {result.estimate:.2f}x has a confidence interval "
                f"[{result.low:.2f}, {result.high:.2f}] that includes 1: no speedup can be claimed"
            )
    return warnings


def manifest(facts: StudyFacts) -> list[str]:
    required = ("torch", "python", "platform", "processor")
    if not facts.manifest or any(not facts.manifest.get(key) for key in required):
        return ["the hardware/software manifest is missing or incomplete; results cannot be reproduced or compared"]
    return []


def tuning_effort(facts: StudyFacts) -> list[str]:
    """Reads what ran: every arm must have completed the same number of tuning trials; without tuning, no
    arm may set hyperparameters by hand that the others leave at their defaults."""
    tuning = facts.spec.tuning
    if tuning is None:
        hand = {name: arm.hyperparameters.describe() for name, arm in facts.spec.arms.items()}
        tuned = {name: text for name, text in hand.items() if text != "defaults"}
        if tuned and len(set(hand.values())) > 1:
            detail = "; ".join(f"{name}: {text}" for name, text in tuned.items())
            return [
                f"no tuning ran (self-tuning ruleset) but arms set hyperparameters by hand ({detail}): "
                "hand-picked values are unequal tuning; let the harness tune every arm (tuning: {trials: N, ...})"
            ]
        return []
    completed: dict[str, int] = dict.fromkeys(facts.spec.arms, 0)
    for run in facts.trials:
        completed[run.arm] = completed.get(run.arm, 0) + (run.status is RunStatus.COMPLETED)
    if len(set(completed.values())) > 1 or any(count < tuning.trials for count in completed.values()):
        detail = ", ".join(f"{arm}: {count}" for arm, count in completed.items())
        return [
            f"arms completed different numbers of their {tuning.trials} tuning trials ({detail}): "
            "the better-tuned arm is favoured"
        ]
    return []


def _tuned_value(params: dict[str, Any], key: str) -> float | None:
    """A tuned dimension's value in a run's params (a run-level hyperparameter or a `method.setting`)."""
    value = params.get("settings", {}).get(key) if "." in key else params.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _edges(facts: StudyFacts) -> list[tuple[str, str]]:
    """(arm, finding) for each continuous dimension whose chosen value is the largest or smallest of the arm's
    completed trials (3 or more distinct values), where the range could extend past it: its best value may lie
    outside what was searched. A linear range's low end at 0 is a natural bound (no weight decay), not an edge."""
    tuning = facts.spec.tuning
    if tuning is None:
        return []
    found = []
    for arm in facts.spec.arms:
        chosen = next((run.params for run in facts.runs if run.arm == arm), None)
        trials = [run for run in facts.trials if run.arm == arm and run.status is RunStatus.COMPLETED]
        for key, dimension in tuning.space.items():
            tried = sorted({v for run in trials if (v := _tuned_value(run.params, key)) is not None})
            picked = None if chosen is None else _tuned_value(chosen, key)
            if dimension.choice is not None or picked is None or len(tried) < 3 or tried[0] < picked < tried[-1]:
                continue
            low, high = dimension.log or dimension.linear or (0.0, 0.0)
            if picked == tried[0] and dimension.linear is not None and low == 0:
                continue
            side = "largest" if picked == tried[-1] else "smallest"
            found.append((arm, f"{arm}'s chosen {key} {picked:.3g} is the {side} of its {len(tried)} trials "
                               f"({tried[0]:.3g} to {tried[-1]:.3g}, range [{low:g}, {high:g}])"))  # fmt: skip
    return found


def baseline_tuning_edge(facts: StudyFacts) -> list[str]:
    """A baseline tuned to the edge of its search may do better outside it: every speedup is then inflated
    (the pitfall behind a 2x that became 1.35x once the baseline's learning rate was tuned)."""
    return [
        f"{finding}: the baseline's best may lie outside the range searched, which inflates every speedup; "
        "widen the range and rerun the tuning"
        for arm, finding in _edges(facts)
        if arm == facts.spec.baseline
    ]


def tuning_edge(facts: StudyFacts) -> list[tuple[str, str]]:
    """An arm (not the baseline) tuned to the edge of its search may do better outside it: its speedup is
    then understated, not overstated, so the claim stands as a lower bound."""
    return [
        (arm, f"{finding}: its best may lie outside the range searched; its speedup may be understated")
        for arm, finding in _edges(facts)
        if arm != facts.spec.baseline
    ]


def machine_load(facts: StudyFacts) -> list[str]:
    """Wall-clock costs taken on a machine busier than the study's own workers are inflated and noisy."""
    if facts.spec.currency is not Currency.TRAIN_SECONDS:
        return []
    loads = sorted(run.load for run in facts.runs if run.load is not None)
    if not loads:
        return []
    median = loads[len(loads) // 2]
    if median <= LOADED:
        return []
    return [
        f"runs were timed on a loaded machine (median load {median:.2f} per core; the study's own workers account "
        f"for about 1): wall-clock costs are inflated and noisy; judge in the reference currency "
        "(algospeed report --currency reference)"
    ]


def test_selection(facts: StudyFacts) -> list[str]:
    """Targets, time-to-target and tuning must read a validation split, never the test split."""
    on_test = sorted(
        {run.arm for run in [*facts.runs, *facts.trials] if (run.eval_fingerprint or "").startswith("test:")}
    )
    if on_test:
        return [
            f"arms {', '.join(on_test)} were judged on the test split (their workload has no validation split): "
            "targets, tuning and speedups selected on test data overstate what a method gives"
        ]
    return []


RULES: dict[str, Callable[[StudyFacts], list[Any]]] = {
    "baseline_budgets": baseline_budgets,
    "seeds": seeds,
    "schedule_decay": schedule_decay,
    "eval_protocol": eval_protocol,
    "extra_compute": extra_compute,
    "target_reached": target_reached,
    "significance": significance,
    "manifest": manifest,
    "tuning_effort": tuning_effort,
    "baseline_tuning_edge": baseline_tuning_edge,
    "tuning_edge": tuning_edge,
    "machine_load": machine_load,
    "test_selection": test_selection,
}


def check_fairness(facts: StudyFacts) -> list[FairnessWarning]:
    """Every rule's warnings, in rule order."""
    found = []
    for rule, check in RULES.items():
        for item in check(facts):
            arm, message = item if isinstance(item, tuple) else (None, item)
            found.append(FairnessWarning(rule, message, arm))
    return found
