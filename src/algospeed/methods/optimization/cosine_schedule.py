"""Cosine annealing over the budget: warmup, then a half cosine down to a final fraction of the peak."""

from __future__ import annotations

from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import Cosine, ScheduleMethod, schedule_conflicts


@register("cosine_schedule")
class CosineSchedule(ScheduleMethod):
    """Warm up linearly, then anneal the learning rate along a half cosine to `final` times the peak.

    Place: optimization / replace (the learning-rate schedule) / fewer steps / scheduled. The
    cosine runs over whatever budget is given (progress from 0 to 1), so it rescales with it.

    Helps: a robust default for image and language training: it keeps the learning rate high for
    longer than linear decay and still ends (near) zero, which often gives a better final model.

    Hurts: when the budget is not known in advance or training must be extended (the cosine is
    tied to the budget's end; warmup-stable-decay is the remedy), and when `final` is set high.

    Reference: Loshchilov and Hutter, 2017, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017, arXiv 1608.03983 (here a single cosine period with no restarts).
    """

    conflicts = schedule_conflicts("cosine_schedule")

    def __init__(self, warmup: float = 0.02, final: float = 0.0) -> None:
        self.schedule = Cosine(warmup=warmup, final=final)
