"""The one-cycle policy: ramp the learning rate up to a peak, then anneal it far below the start."""

from __future__ import annotations

from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import OneCycle, ScheduleMethod, schedule_conflicts


@register("one_cycle")
class OneCycleSchedule(ScheduleMethod):
    """Raise the learning rate from `start` to its peak by `peak_at`, then anneal it to `end` by the end.

    Place: optimization / replace (the learning-rate schedule) / fewer steps / scheduled. The peak
    is the run's base learning rate (multiplier 1); to exploit super-convergence, raise that base
    rate (`lr` in the run spec) along with this schedule.

    Helps: "super-convergence": with a large peak learning rate, networks (ResNets on CIFAR in the
    reference) reach a given accuracy in several times fewer epochs; the long ramp doubles as a
    warmup and the large rates regularize.

    Hurts: when the peak learning rate is too high for the model (divergence mid-ramp, worse with
    adaptive optimizers and without batch norm); with a small budget the ramp takes a large share
    of it. Momentum is not cycled here (the reference cycles it inversely to the learning rate).

    Reference: Smith and Topin, 2019, "Super-Convergence: Very Fast Training of Neural Networks
    Using Large Learning Rates", SPIE Defense + Commercial Sensing 2019, arXiv 1708.07120.
    """

    conflicts = schedule_conflicts("one_cycle")

    def __init__(self, peak_at: float = 0.3, start: float = 0.04, end: float = 4e-6, anneal: str = "cos") -> None:
        self.schedule = OneCycle(peak_at=peak_at, start=start, end=end, anneal=anneal)
