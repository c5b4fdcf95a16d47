"""`KEY=VALUE` settings as given on a command line (workload options, method settings)."""

from __future__ import annotations

from collections.abc import Iterable

from algospeed.errors import UsageError


def parse_key_values(pairs: Iterable[str], context: str) -> dict[str, str]:
    """`["a=1", "b=x"]` -> `{"a": "1", "b": "x"}`; anything else is a usage error naming `context`."""
    settings: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{context}: expected KEY=VALUE, got {pair!r}")
        settings[key.strip()] = value.strip()
    return settings
