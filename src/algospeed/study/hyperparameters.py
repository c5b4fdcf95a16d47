"""The hyperparameters an arm or a tuning trial sets, and an arm: its methods with their hyperparameters.

In a study file an arm is a list of methods, or a mapping:

    lion: {methods: [lion], lr: 3.0e-4, weight_decay: 0.1, settings: {lion.lr_scale: 1.0}}

What is left unset falls back to the study's value, then to the workload's default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from algospeed.methods.spec import MethodSpec, SettingValue, parse_methods
from algospeed.workloads.optimizers import optimizer_factory

HYPERPARAMETERS = ("optimizer", "lr", "weight_decay", "batch_size")
"""The run-level hyperparameters an arm or a tuning space may set (method settings are `method.setting`)."""


class Hyperparameters(BaseModel):
    """Run-level hyperparameters and method settings (`method.setting` -> value); None keeps the default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    optimizer: str | None = None
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    batch_size: int | None = Field(default=None, gt=0)
    settings: dict[str, SettingValue] = Field(default_factory=dict)

    @field_validator("optimizer")
    @classmethod
    def _optimizer_exists(cls, value: str | None) -> str | None:
        if value is not None:
            optimizer_factory(value)
        return value

    @field_validator("settings")
    @classmethod
    def _settings_named(cls, value: dict[str, SettingValue]) -> dict[str, SettingValue]:
        for key in value:
            method, _, setting = key.partition(".")
            if not method or not setting:
                raise ValueError(f"a method setting is named method.setting, got {key!r}")
        return value

    def over(self, base: Hyperparameters) -> Hyperparameters:
        """These values where set, `base`'s elsewhere (settings merged, these winning)."""
        fields = {name: getattr(self, name) if getattr(self, name) is not None else getattr(base, name)
                  for name in HYPERPARAMETERS}  # fmt: skip
        return Hyperparameters(**fields, settings={**base.settings, **self.settings})

    def run_fields(self) -> dict[str, Any]:
        """The run-level values that are set, as `RunSpec` fields."""
        return {name: getattr(self, name) for name in HYPERPARAMETERS if getattr(self, name) is not None}

    def apply(self, methods: list[MethodSpec]) -> list[MethodSpec]:
        """`methods` with these method settings merged in; a setting of a method not listed is an error."""
        names = {method.name for method in methods}
        for key in self.settings:
            if key.partition(".")[0] not in names:
                raise ValueError(f"setting {key!r} names a method the arm does not use ({', '.join(names) or 'none'})")
        return [
            MethodSpec(
                name=method.name,
                settings={
                    **method.settings,
                    **{k.partition(".")[2]: v for k, v in self.settings.items() if k.partition(".")[0] == method.name},
                },
            )
            for method in methods
        ]

    def describe(self) -> str:
        """`lr=0.003, weight_decay=0.01, ema.decay=0.99` (what is set), or `defaults`."""
        parts = [f"{name}={value:g}" if isinstance(value, float) else f"{name}={value}"
                 for name, value in {**self.run_fields(), **self.settings}.items()]  # fmt: skip
        return ", ".join(parts) or "defaults"


class Arm(Hyperparameters):
    """One arm of a study: its methods, in order, and the hyperparameters it sets itself; `recipe` names the
    recipe (and its version) it was expanded from, if any."""

    methods: list[MethodSpec] = Field(default_factory=list)
    recipe: str | None = None

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_parse(cls, value: Any) -> Any:
        return parse_arm_methods(value)

    @property
    def hyperparameters(self) -> Hyperparameters:
        return Hyperparameters(**self.run_fields(), settings=self.settings)


def parse_arm_methods(methods: Any) -> list[MethodSpec]:
    """`[label_smoothing, "ema:decay=0.9"]`, `"mixup+ema"` or None -> method specs in order."""
    if methods is None:
        return []
    if isinstance(methods, str):
        return parse_methods(methods.replace("+", ","))
    if not isinstance(methods, list):
        raise ValueError(f"an arm is a list of methods or a mapping with methods, got {methods!r}")
    parsed: list[MethodSpec] = []
    for item in methods:
        parsed.extend(parse_methods(item) if isinstance(item, str) else [MethodSpec.model_validate(item)])
    return parsed
