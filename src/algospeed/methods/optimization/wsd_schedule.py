"""Warmup-stable-decay: a constant learning rate for most of the budget, decayed only at the end."""

from __future__ import annotations

from algospeed.methods.registry import register
from algospeed.methods.shared.schedules import ScheduleMethod, WarmupStableDecay, schedule_conflicts


@register("wsd_schedule")
class WSDSchedule(ScheduleMethod):
    """Warm up, hold the learning rate constant, then decay it to `final` in the last `decay_fraction`.

    Place: optimization / replace (the learning-rate schedule) / fewer steps / scheduled (the decay
    acts late). `shape` is the decay's form: "linear", "sqrt" (1 - sqrt, best in Hägele et al. 2024)
    or "exp" (MiniCPM's exponential decay, rescaled to reach `final`).

    Helps: runs whose length is not fixed in advance: one long constant-rate run can be branched
    into fully decayed models at several budgets, each needing only its short decay; at a fixed
    budget it matches cosine in the references' language-model experiments.

    Hurts: when the decay phase is too short for the model to settle (the loss drops sharply only
    during the decay), and on small problems where a constant high rate for most of the run
    overfits or oscillates more than a gradual decay would.

    Reference: Hu et al., 2024, "MiniCPM: Unveiling the Potential of Small Language Models with
    Scalable Training Strategies", arXiv 2404.06395; Hägele et al., 2024, "Scaling Laws and
    Compute-Optimal Training Beyond Fixed Training Durations", arXiv 2405.18392.
    """

    conflicts = schedule_conflicts("wsd_schedule")

    def __init__(
        self, warmup: float = 0.02, decay_fraction: float = 0.2, final: float = 0.0, shape: str = "linear"
    ) -> None:
        self.schedule = WarmupStableDecay(warmup=warmup, decay_fraction=decay_fraction, final=final, shape=shape)
