"""The speedup methods, by name, for your own `Trainer`:

    >>> from algospeed import methods
    >>> stack = methods.build_all("progressive_resizing,label_smoothing:smoothing=0.05")
    >>> [method.key for method in stack]
    ['progressive_resizing', 'label_smoothing']
    >>> methods.build("ema", half_life=0.05).half_life
    0.05

and then `Trainer(model, data, optimizer=..., budget="10ep", callbacks=stack)`. Settings are checked
against each method's declared ones (`algospeed methods show NAME`), and an unknown name or setting is
a `UsageError` naming the valid ones.
"""

from __future__ import annotations

from typing import Any

from algospeed.core.callback import Method, check_composition
from algospeed.methods.registry import method_names, register
from algospeed.methods.spec import MethodSpec, SettingValue, build_method, parse_methods

__all__ = ["build", "build_all", "method_names", "register"]


def build(name: str, **settings: SettingValue) -> Method:
    """The registered method `name` with `settings` (converted to their declared types)."""
    return build_method(MethodSpec(name=name, settings=settings))


def build_all(methods: str | list[Any]) -> list[Method]:
    """Methods from `"name:key=value,name2"` (or a list of such names and `Method`s), checked to compose."""
    items = parse_methods(methods) if isinstance(methods, str) else methods
    built = [
        item
        if isinstance(item, Method)
        else build_method(item if isinstance(item, MethodSpec) else parse_methods(str(item))[0])
        for item in items
    ]
    check_composition(built)
    return built
