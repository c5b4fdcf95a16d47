"""Cost currencies: what a study measures a run's cost in. Defined once; every part reads this."""

from __future__ import annotations

from algospeed.core.vocabulary import Vocabulary


class Currency(Vocabulary):
    """A unit of cost in which curves are compared."""

    TRAIN_SECONDS = "train_seconds"  # wall-clock training time, eval and checkpoints excluded
    FLOPS = "flops"  # counted floating-point operations, extra passes and proxy runs included
    SAMPLES = "samples"  # training samples loaded
    TOKENS = "tokens"  # training tokens (token data only)
    STEPS = "steps"  # optimizer steps
    REFERENCE = "reference"  # a calibrated per-step plus per-FLOP cost, immune to machine noise
    ENERGY = "energy_joules"  # measured by RAPL or NVML where the machine allows (`core.energy`); never estimated

    @property
    def sees_extra_work(self) -> bool:
        """Whether a method's extra passes or proxy runs show in this currency."""
        return self in (Currency.TRAIN_SECONDS, Currency.FLOPS, Currency.REFERENCE, Currency.ENERGY)

    @classmethod
    def names(cls) -> str:
        return ", ".join(currency.value for currency in cls)
