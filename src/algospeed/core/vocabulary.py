"""The base of every vocabulary (statuses, currencies, data kinds...): a str enum that reads as its value
in messages, reports and JSON."""

from __future__ import annotations

from enum import Enum


class Vocabulary(str, Enum):
    """A closed set of names; `str()` and f-strings give the name itself."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
