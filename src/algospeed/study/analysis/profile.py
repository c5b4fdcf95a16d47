"""Performance profiles across workloads and the AlgoPerf benchmark score."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from algospeed.errors import UsageError

Times = Mapping[str, Mapping[str, "float | None"]]
"""Per workload, per arm: the time (any currency) to reach the workload's target, None or inf when never reached."""


def performance_ratios(times: Times) -> dict[str, list[float]]:
    """Per arm, per workload (in `times` order): r = t / t_best, the best being the least time of any arm there.

    An arm that never reached a workload's target, or has no entry for it, gets r = inf; so does every arm on a
    workload no arm reached. Where the best time is 0, an arm at 0 gets r = 1 and any other r = inf.
    """
    if not times:
        raise UsageError("a performance profile needs at least one workload")
    arms: list[str] = []
    for per_arm in times.values():
        arms.extend(arm for arm in per_arm if arm not in arms)
    ratios: dict[str, list[float]] = {arm: [] for arm in arms}
    for workload, per_arm in times.items():
        clean: dict[str, float] = {}
        for arm in arms:
            value = per_arm.get(arm)
            value = math.inf if value is None else float(value)
            if math.isnan(value) or value < 0:
                raise UsageError(f"time of arm {arm!r} on workload {workload!r} must be non-negative, got {value!r}")
            clean[arm] = value
        best = min(clean.values(), default=math.inf)
        for arm, value in clean.items():
            if math.isinf(value) or math.isinf(best):
                ratio = math.inf
            elif best == 0:
                ratio = 1.0 if value == 0 else math.inf
            else:
                ratio = value / best
            ratios[arm].append(ratio)
    return ratios


def performance_profile(times: Times, taus: Sequence[float]) -> dict[str, list[float]]:
    """Per arm, rho(tau) for each tau in `taus`: the share of workloads where the arm's ratio r <= tau."""
    ratios = performance_ratios(times)
    count = len(times)
    return {arm: [sum(r <= tau for r in arm_ratios) / count for tau in taus] for arm, arm_ratios in ratios.items()}


def algoperf_score(times: Times, tau_max: float = 4.0, *, only_run: bool = False) -> dict[str, float]:
    """Per arm, the area under rho from tau = 1 to `tau_max`, divided by (tau_max - 1): a number in [0, 1].

    rho is a step function, so the area is exact: a workload with ratio r adds (tau_max - r) / (tau_max - 1) when
    r <= tau_max and nothing otherwise, averaged over workloads. An arm fastest everywhere scores 1; an arm that
    never reaches a target scores 0. With `only_run`, an arm is averaged over the workloads where it has an entry
    (it ran there) instead of counting the others as never reached.
    """
    if not (math.isfinite(tau_max) and tau_max > 1):
        raise UsageError(f"tau_max must be a finite number above 1, got {tau_max!r}")
    ratios = performance_ratios(times)
    scores = {}
    for arm, arm_ratios in ratios.items():
        kept = [r for r, per_arm in zip(arm_ratios, times.values(), strict=True) if not only_run or arm in per_arm]
        scores[arm] = sum(max(0.0, tau_max - r) for r in kept) / (max(len(kept), 1) * (tau_max - 1))
    return scores
