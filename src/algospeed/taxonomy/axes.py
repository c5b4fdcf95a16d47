"""The four axes of the taxonomy (see DESIGN.md): where a method acts, what it does, how and when it pays off.

Both the catalogue of published methods and the implemented `Method` plug-ins place themselves
with these values, so that one vocabulary links what the literature knows to what algospeed runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Where(str, Enum):
    """The component a method changes."""

    DATA = "data"
    MODEL = "model"
    OPTIMIZATION = "optimization"


class What(str, Enum):
    """The action a method takes on that component."""

    REMOVE = "remove"
    SHRINK = "shrink"
    REUSE = "reuse"
    REORDER = "reorder"
    ADD = "add"
    REPLACE = "replace"


class How(str, Enum):
    """How the method pays off: cheaper steps, fewer steps, or both."""

    CHEAPER_STEPS = "cheaper_steps"
    FEWER_STEPS = "fewer_steps"
    BOTH = "both"


class When(str, Enum):
    """When in training the method acts."""

    THROUGHOUT = "throughout"
    SCHEDULED = "scheduled"
    BEFORE = "before"
    LATE = "late"


@dataclass(frozen=True)
class Place:
    """A method's place in the taxonomy; an axis may hold several values where a method acts twice."""

    where: tuple[Where, ...]
    what: tuple[What, ...]
    how: How
    when: tuple[When, ...]

    def __post_init__(self) -> None:
        if not (self.where and self.what and self.when):
            raise ValueError("a taxonomy place needs at least one value on every axis")
