"""The registry of implemented speedup methods, by name.

Each method module registers its `Method` class here, so that the CLI, the study spec and the
taxonomy's `implemented_by` links all resolve names the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from algospeed.errors import UsageError

_REGISTRY: dict[str, type] = {}
MethodClass = TypeVar("MethodClass", bound=type)


def register(name: str) -> Callable[[MethodClass], MethodClass]:
    """Class decorator: register a method class under `name` (unique)."""

    def decorate(cls: MethodClass) -> MethodClass:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = cls
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def method_names() -> list[str]:
    """Names of every registered method, sorted."""
    _load_builtin_methods()
    return sorted(_REGISTRY)


def method_class(name: str) -> type:
    """The class registered under `name`; an unknown name is a usage error listing the valid ones."""
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(sorted(_REGISTRY)) or "(none yet)"
        raise UsageError(f"unknown method {name!r}; valid methods: {valid}") from None


def _load_builtin_methods() -> None:
    """Import the built-in method modules so that they register themselves."""
    import algospeed.methods.builtin  # noqa: F401
