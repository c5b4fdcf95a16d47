"""Amounts with units (`20ep`, `500ba`, `3e4sp`, `1e6tok`, `90s`, `2.5e12flop`) and budgets.

Every budget, interval and schedule length in algospeed is one `Amount`, so that a schedule written
once rescales with any budget, a wall-clock one included.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import Enum

from algospeed.errors import UsageError


class Unit(str, Enum):
    """What an amount counts."""

    EPOCH = "ep"
    BATCH = "ba"
    SAMPLE = "sp"
    TOKEN = "tok"
    SECOND = "s"
    FLOP = "flop"
    DURATION = "dur"  # a fraction of the run's budget; only for intervals


ACCEPTED_FORMS = (
    "a positive number followed by a unit: ep (epochs), ba (batches), sp (samples), "
    "tok (tokens), s (training seconds) or flop, e.g. 20ep, 500ba, 3e4sp, 90s, 2.5e12flop"
)
_AMOUNT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ep|ba|sp|tok|s|flop|dur)\s*$")
# Units whose amounts are whole counts.
_INTEGRAL = {Unit.BATCH, Unit.SAMPLE, Unit.TOKEN}


@dataclass(frozen=True)
class Amount:
    """A positive quantity in one unit."""

    value: float
    unit: Unit

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value > 0):
            raise UsageError(f"amount must be positive and finite, got {self.value!r}; {ACCEPTED_FORMS}")

    def __str__(self) -> str:
        return f"{self.value:g}{self.unit.value}"


def parse_amount(text: str | Amount, *, allow_fraction: bool = False) -> Amount:
    """Parse `text` such as `20ep`; `dur` (fraction of the budget) only where `allow_fraction`."""
    if isinstance(text, Amount):
        amount = text
    else:
        match = _AMOUNT.match(str(text))
        if match is None:
            raise UsageError(f"malformed amount {text!r}: expected {ACCEPTED_FORMS}")
        amount = Amount(float(match.group(1)), Unit(match.group(2)))
    if amount.unit is Unit.DURATION and not allow_fraction:
        raise UsageError(f"{text!r}: 'dur' is only allowed for intervals; {ACCEPTED_FORMS}")
    if amount.unit is Unit.DURATION and amount.value > 1:
        raise UsageError(f"{text!r}: a fraction of the budget must be at most 1dur")
    if amount.unit in _INTEGRAL and not float(amount.value).is_integer():
        raise UsageError(f"{text!r}: {amount.unit.value} counts must be whole numbers")
    return amount


def parse_budget(text: str | Amount) -> Amount:
    """Parse a training budget: any unit but `dur`."""
    return parse_amount(text, allow_fraction=False)
