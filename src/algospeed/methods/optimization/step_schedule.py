"""Step decay: multiply the learning rate by `gamma` at fixed fractions of the budget."""

from __future__ import annotations

from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import (
    ScheduleMethod,
    StepDecay,
    parse_milestones,
    schedule_conflicts,
)


@register("step_schedule")
class StepSchedule(ScheduleMethod):
    """Warm up, then multiply the learning rate by `gamma` at each milestone ("0.5/0.75": halfway, three quarters).

    Place: optimization / replace (the learning-rate schedule) / fewer steps / scheduled. The
    milestones are fractions of the budget, so the steps move with it.

    Helps: the classic ResNet recipe (divide by 10 at fixed epochs); a long high-rate phase makes
    fast early progress and each drop gives a sharp gain.

    Hurts: at short budgets the final rate is not small enough (it never reaches zero), so it is
    usually beaten by linear or cosine decay; the milestones and gamma need tuning together.

    Reference: He, Zhang, Ren and Sun, 2016, "Deep Residual Learning for Image Recognition", CVPR
    2016, arXiv 1512.03385 (the step schedule they train with; step decay itself is older practice).
    """

    conflicts = schedule_conflicts("step_schedule")

    def __init__(self, milestones: str = "0.5/0.75", gamma: float = 0.1, warmup: float = 0.02) -> None:
        self.schedule = StepDecay(milestones=parse_milestones(milestones), gamma=gamma, warmup=warmup)
