"""The default schedule as a method: linear warmup, then linear decay to zero at the end of the budget."""

from __future__ import annotations

from algospeed.core.schedules import WarmupLinearDecay
from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import ScheduleMethod, check_fraction, schedule_conflicts


@register("linear_decay")
class LinearDecaySchedule(ScheduleMethod):
    """Warm up linearly, then decay the learning rate linearly to zero at the end of the budget.

    Place: optimization / replace (the learning-rate schedule) / fewer steps / scheduled. It is the
    trainer's own default, made explicit so that its warmup can be set and so that a study can name
    it as an arm beside the other schedules.

    Helps: budgeted training in general: a run of any length ends fully decayed, which makes a short
    run a fair baseline; linear decay to zero matches or beats step and cosine schedules across
    budgets in the reference below.

    Hurts: when training must go on past the budget (there is no learning rate left at the end), and
    with optimizers that bring their own schedule (schedule-free, with which it conflicts).

    Reference: Li, Yumer and Ramanan, 2020, "Budgeted Training: Rethinking Deep Neural Network
    Training Under Resource Constraints", ICLR 2020, arXiv 1905.04753.
    """

    conflicts = schedule_conflicts("linear_decay")

    def __init__(self, warmup: float = 0.02) -> None:
        check_fraction("warmup", warmup, high_open=True)
        self.schedule = WarmupLinearDecay(warmup=warmup)
