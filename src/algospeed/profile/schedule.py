"""Which steps the profiler measures: skip the first ones, then cycles of wait, warmup and active steps.

Like `torch.profiler.schedule`: a long run is profiled over a window, not at every step, so the
profiler costs nothing outside it; warmup steps are timed but discarded (they absorb the cost of
switching the instrumentation on, and the first one takes the operator census).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from algospeed.errors import UsageError


class Action(str, Enum):
    """What the profiler does during one step."""

    SKIP = "skip"
    WAIT = "wait"
    WARMUP = "warmup"
    ACTIVE = "active"
    DONE = "done"

    @property
    def timed(self) -> bool:
        return self in (Action.WARMUP, Action.ACTIVE)


@dataclass(frozen=True)
class ProfileSchedule:
    """`skip_first` steps untouched, then `repeat` cycles of `wait`, `warmup` and `active` steps
    (`repeat=0`: cycle until the run ends).

    The defaults skip the first steps (FLOP counting, allocator and cache warm-up), warm up for two
    and measure fifty.
    """

    skip_first: int = 5
    wait: int = 0
    warmup: int = 2
    active: int = 50
    repeat: int = 1

    def __post_init__(self) -> None:
        for name in ("skip_first", "wait", "warmup", "repeat"):
            if getattr(self, name) < 0:
                raise UsageError(f"profile schedule: {name} must be 0 or more, got {getattr(self, name)}")
        if self.active < 1:
            raise UsageError(f"profile schedule: active must be 1 or more, got {self.active}")

    @property
    def cycle(self) -> int:
        return self.wait + self.warmup + self.active

    def action(self, step: int) -> Action:
        """What to do during step `step` (0-based: the number of steps done before it)."""
        if step < self.skip_first:
            return Action.SKIP
        cycle, position = divmod(step - self.skip_first, self.cycle)
        if self.repeat and cycle >= self.repeat:
            return Action.DONE
        if position < self.wait:
            return Action.WAIT
        if position < self.wait + self.warmup:
            return Action.WARMUP
        return Action.ACTIVE

    def active_steps(self, total: int) -> list[int]:
        """The steps (0-based) measured in a run of `total` steps."""
        return [step for step in range(total) if self.action(step) is Action.ACTIVE]
