"""Budget-aware learning-rate schedules: multipliers of the base learning rate as functions of progress.

Every schedule here maps progress in [0, 1] (the fraction of the budget spent, in any unit) to a
multiplier, so one schedule fits every budget. The default warmup-then-linear-decay lives in
`algospeed.core.schedules.WarmupLinearDecay`; these are the alternatives the schedule methods set
as `state.schedule`, each usable on its own as `multiplier = schedule(progress)`.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from algospeed.core.callback import Method
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.core.state import Schedule, State
from algospeed.taxonomy.axes import How, Place, What, When, Where

# The schedule methods all set `state.schedule`, so any two of them (or schedule-free training,
# which brings its own) cannot be combined.
SCHEDULE_METHODS = frozenset({"linear_decay", "cosine_schedule", "one_cycle", "wsd_schedule", "step_schedule"})

SCHEDULE_PLACE = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.SCHEDULED,))

__all__ = [
    "SCHEDULE_METHODS",
    "Cosine",
    "OneCycle",
    "ScheduleMethod",
    "StepDecay",
    "WarmupConstant",
    "WarmupLinearDecay",
    "WarmupStableDecay",
    "parse_milestones",
    "schedule_conflicts",
]


def warmup_multiplier(progress: float, warmup: float) -> float:
    """The linear warmup ramp of `WarmupLinearDecay` (never exactly zero), 1 once warmup is over."""
    if progress < warmup:
        return (progress + 1e-3) / (warmup + 1e-3)
    return 1.0


def check_fraction(name: str, value: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ValueError unless `value` lies in [0, 1] (with the open ends asked for)."""
    low_ok = value > 0 if low_open else value >= 0
    high_ok = value < 1 if high_open else value <= 1
    if not (low_ok and high_ok and math.isfinite(value)):
        bounds = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a fraction of the budget in {bounds}, got {value}")


@dataclass(frozen=True)
class WarmupConstant:
    """Linear warmup over the first `warmup` of progress, then a constant 1 (no decay)."""

    warmup: float = 0.02

    def __post_init__(self) -> None:
        check_fraction("warmup", self.warmup, high_open=True)

    def __call__(self, progress: float) -> float:
        return warmup_multiplier(progress, self.warmup)


@dataclass(frozen=True)
class Cosine:
    """Linear warmup, then a half cosine from 1 down to `final` at the end of the budget
    (Loshchilov and Hutter, SGDR, arXiv 1608.03983, without restarts)."""

    warmup: float = 0.02
    final: float = 0.0

    def __post_init__(self) -> None:
        check_fraction("warmup", self.warmup, high_open=True)
        check_fraction("final", self.final)

    def __call__(self, progress: float) -> float:
        if progress < self.warmup:
            return warmup_multiplier(progress, self.warmup)
        t = min(1.0, (progress - self.warmup) / (1.0 - self.warmup))
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass(frozen=True)
class OneCycle:
    """One cycle (Smith and Topin): from `start` up to the peak 1 at `peak_at`, then annealed
    down to `end`, far below the start, by the end of the budget (`anneal` "cos" or "linear")."""

    peak_at: float = 0.3
    start: float = 0.04
    end: float = 4e-6
    anneal: str = "cos"

    def __post_init__(self) -> None:
        check_fraction("peak_at", self.peak_at, high_open=True)
        check_fraction("start", self.start)
        check_fraction("end", self.end)
        if self.anneal not in ("cos", "linear"):
            raise ValueError(f"anneal must be 'cos' or 'linear', got {self.anneal!r}")

    def __call__(self, progress: float) -> float:
        if progress < self.peak_at:
            return _interpolate(self.start, 1.0, progress / self.peak_at, self.anneal)
        t = min(1.0, (progress - self.peak_at) / (1.0 - self.peak_at))
        return _interpolate(1.0, self.end, t, self.anneal)


@dataclass(frozen=True)
class WarmupStableDecay:
    """Warmup, a long constant phase, then a decay to `final` over the last `decay_fraction` of the
    budget (`shape` "linear", "sqrt" for 1 - sqrt of the decay's progress, or "exp" for MiniCPM's
    halving every tenth of the decay phase, rescaled to end exactly at `final`)."""

    warmup: float = 0.02
    decay_fraction: float = 0.2
    final: float = 0.0
    shape: str = "linear"

    def __post_init__(self) -> None:
        check_fraction("warmup", self.warmup, high_open=True)
        check_fraction("decay_fraction", self.decay_fraction, low_open=True)
        check_fraction("final", self.final)
        if self.warmup + self.decay_fraction > 1.0 + 1e-12:
            raise ValueError(
                f"warmup ({self.warmup}) and decay_fraction ({self.decay_fraction}) together exceed the budget"
            )
        if self.shape not in ("linear", "sqrt", "exp"):
            raise ValueError(f"shape must be 'linear', 'sqrt' or 'exp', got {self.shape!r}")

    def __call__(self, progress: float) -> float:
        decay_start = 1.0 - self.decay_fraction
        if progress < decay_start:
            return warmup_multiplier(progress, self.warmup)
        t = min(1.0, (progress - decay_start) / self.decay_fraction)
        if self.shape == "linear":
            fraction_left = 1.0 - t
        elif self.shape == "sqrt":
            fraction_left = 1.0 - math.sqrt(t)
        else:
            floor = 0.5**10
            fraction_left = (0.5 ** (10 * t) - floor) / (1.0 - floor)
        return self.final + (1.0 - self.final) * fraction_left


@dataclass(frozen=True)
class StepDecay:
    """Warmup, then the multiplier times `gamma` at each milestone (fractions of the budget)."""

    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    warmup: float = 0.02

    def __post_init__(self) -> None:
        check_fraction("warmup", self.warmup, high_open=True)
        if not (0.0 < self.gamma <= 1.0):
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma}")
        check_milestones(self.milestones)
        if self.milestones[0] <= self.warmup:
            raise ValueError(f"the first milestone ({self.milestones[0]}) must come after the warmup ({self.warmup})")

    def __call__(self, progress: float) -> float:
        passed = sum(1 for milestone in self.milestones if progress >= milestone)
        return warmup_multiplier(progress, self.warmup) * self.gamma**passed


def check_milestones(milestones: tuple[float, ...]) -> tuple[float, ...]:
    """At least one milestone, each a fraction of progress in (0, 1), increasing."""
    if not milestones:
        raise ValueError("at least one milestone is needed")
    for milestone in milestones:
        check_fraction("each milestone", milestone, low_open=True, high_open=True)
    if any(b <= a for a, b in itertools.pairwise(milestones)):
        raise ValueError(f"milestones must increase, got {'/'.join(map(str, milestones))}")
    return milestones


def parse_milestones(text: str) -> tuple[float, ...]:
    """`"0.5/0.75"` -> (0.5, 0.75): milestones as one scalar setting (commas separate methods), checked."""
    try:
        milestones = tuple(float(part) for part in str(text).replace(";", "/").split("/") if part.strip())
    except ValueError:
        raise ValueError(
            f"milestones are fractions of the budget separated by '/', e.g. 0.5/0.75, got {text!r}"
        ) from None
    return check_milestones(milestones)


def _interpolate(a: float, b: float, t: float, shape: str) -> float:
    """From `a` at t=0 to `b` at t=1, along a half cosine or a straight line."""
    if shape == "cos":
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))
    return a + (b - a) * t


def schedule_conflicts(name: str) -> frozenset[str]:
    """What the schedule method `name` cannot be combined with: the other schedules and schedule-free."""
    return (SCHEDULE_METHODS - {name}) | {"schedule_free"}


class ScheduleMethod(Method):
    """Sets `state.schedule` to `self.schedule` at init (shared by the schedule methods)."""

    place = SCHEDULE_PLACE
    schedule: Schedule

    def on_init(self, state: State) -> None:
        state.schedule = self.schedule
