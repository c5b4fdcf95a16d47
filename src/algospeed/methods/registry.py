"""The registry of implemented speedup methods, by name.

Each method module registers its `Method` class here with `@register(name)`, so that the CLI, the
study spec and the taxonomy's `implemented_by` links all resolve names the same way. Plugins register
their own methods with the same decorator (see `algospeed.plugins`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from algospeed.registry import Registry

MethodClass = TypeVar("MethodClass", bound=type)


def _load_builtin_methods() -> None:
    """Import the built-in method modules so that they register themselves."""
    import algospeed.methods.builtin  # noqa: F401


METHODS: Registry[type] = Registry("method", _load_builtin_methods)


def register(name: str) -> Callable[[MethodClass], MethodClass]:
    """Class decorator: register a method class under `name` (unique; a plugin may not shadow a built-in)."""

    def decorate(cls: MethodClass) -> MethodClass:
        METHODS.add(name, cls, cls.__module__)
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def method_names() -> list[str]:
    """Names of every registered method, sorted."""
    return METHODS.names()


def method_class(name: str) -> type:
    """The class registered under `name`; an unknown name is a usage error listing the valid ones."""
    return METHODS.get(name)
