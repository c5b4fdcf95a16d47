"""Method specs: `name:key=value:key=value`, validated against the method's constructor.

A method's settings are its constructor's keyword parameters, with their type hints and defaults,
so a setting is declared once, where it is used, and the CLI, the study spec and `algospeed
methods show` all read the same declaration.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from algospeed.core.callback import Method
from algospeed.core.settings import parse_key_values
from algospeed.errors import UsageError
from algospeed.methods.registry import method_class

SettingValue = str | int | float | bool


class MethodSpec(BaseModel):
    """One method of a run and its settings (as given; converted when the method is built)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    settings: dict[str, SettingValue] = Field(default_factory=dict)

    def __str__(self) -> str:
        return ":".join([self.name, *(f"{key}={value}" for key, value in sorted(self.settings.items()))])


def parse_methods(text: str) -> list[MethodSpec]:
    """`"label_smoothing,blurpool:replace_maxpools=false"` -> specs, in order of application."""
    specs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *pairs = item.split(":")
        settings = parse_key_values(pairs, f"method {name.strip()!r} settings (name:KEY=VALUE:KEY=VALUE)")
        specs.append(MethodSpec(name=name.strip(), settings=settings))
    return specs


def method_settings(cls: type) -> dict[str, tuple[Any, Any]]:
    """A method's settings: name -> (type, default)."""
    hints = typing.get_type_hints(cls.__init__)
    parameters = inspect.signature(cls.__init__).parameters
    return {
        name: (hints.get(name, Any), parameter.default)
        for name, parameter in parameters.items()
        if name != "self" and parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
    }


def build_method(spec: MethodSpec) -> Method:
    """Instantiate the method, converting each setting to its declared type; bad settings are usage errors."""
    cls = method_class(spec.name)
    declared = method_settings(cls)
    unknown = sorted(set(spec.settings) - set(declared))
    if unknown:
        valid = ", ".join(f"{name}={default!r}" for name, (_, default) in declared.items()) or "(none)"
        raise UsageError(f"method {spec.name!r} has no setting {', '.join(unknown)}; valid settings: {valid}")
    values = {}
    for key, value in spec.settings.items():
        kind = declared[key][0]
        try:
            values[key] = TypeAdapter(kind).validate_python(value)
        except ValidationError as error:
            reason = error.errors()[0]["msg"]
            raise UsageError(f"method {spec.name!r} setting {key}={value!r}: {reason}") from None
    try:
        return cls(**values)
    except (ValueError, TypeError) as error:
        raise UsageError(f"method {spec.name!r}: {error}") from None
