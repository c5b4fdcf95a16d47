"""The run's counters in every unit, and progress in [0, 1] against a budget.

Progress is continuous inside an epoch (an epoch budget advances with every sample, not once per
epoch), so that schedules driven by it move smoothly whatever the budget's unit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from algospeed.core.units import Amount, Unit


@dataclass
class Clock:
    """What a run has spent so far. Samples, steps and tokens are exact; seconds exclude eval;
    `extra_steps` are the passes methods ran beside the training steps (charged to the reference cost);
    `energy_joules` is measured like the seconds, and None (absent, not zero) where it cannot be measured."""

    epoch: int = 0
    sample_in_epoch: int = 0
    samples_per_epoch: int = 0
    steps: int = 0
    samples: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    flops: float = 0.0
    extra_steps: int = 0
    energy_joules: float | None = None

    @property
    def epochs(self) -> float:
        """Epochs done, fractional within the current one."""
        if self.samples_per_epoch <= 0:
            return float(self.epoch)
        return self.epoch + self.sample_in_epoch / self.samples_per_epoch

    def amount(self, unit: Unit) -> float:
        """How much of `unit` has been spent."""
        return {
            Unit.EPOCH: self.epochs,
            Unit.BATCH: float(self.steps),
            Unit.SAMPLE: float(self.samples),
            Unit.TOKEN: float(self.tokens),
            Unit.SECOND: self.train_seconds,
            Unit.FLOP: self.flops,
        }[unit]

    def progress(self, budget: Amount) -> float:
        """Fraction of `budget` spent, clipped to [0, 1]."""
        return min(1.0, max(0.0, self.amount(budget.unit) / budget.value))

    def add_energy(self, joules: float | None) -> None:
        """Charge measured joules; one unmeasured interval leaves the run without an energy figure for
        good, since a partial one would understate its cost."""
        self.energy_joules = None if joules is None or self.energy_joules is None else self.energy_joules + joules

    def state_dict(self) -> dict[str, float | int | None]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, float | int | None]) -> None:
        for key, value in state.items():
            if key == "energy_joules":
                self.energy_joules = None if value is None else float(value)
            else:
                setattr(self, key, type(getattr(self, key))(value))


def interval_reached(clock: Clock, last: float, interval: Amount, budget: Amount) -> bool:
    """Whether `interval` has elapsed since `last` (measured in the interval's unit)."""
    return position(clock, interval, budget) - last >= interval.value - 1e-12


def position(clock: Clock, interval: Amount, budget: Amount) -> float:
    """Where the clock stands in the unit that `interval` is measured in."""
    if interval.unit is Unit.DURATION:
        return clock.progress(budget)
    return clock.amount(interval.unit)
