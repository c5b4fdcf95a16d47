"""Recipes: a named, versioned stack of methods with their settings and hyperparameters, with the workload it
was found on and the speedup measured for it (its interval, currency and study), as a YAML file.

    name: mnist1d-fast
    version: 1
    workload: mnist1d
    methods: ["ema:half_life=0.05"]
    hyperparameters: {lr: 0.004, weight_decay: 0.02}
    measured: {speedup: 1.4, low: 1.1, high: 1.8, currency: reference, quality: 0.95, seeds: 5, study: ...}

`algospeed train --recipe NAME|FILE`, `arms: {fast: {recipe: NAME}}` in a study, `algospeed recipes` lists the
shipped ones (in `algospeed/recipes/`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from algospeed.errors import UsageError, usage_error_from_validation
from algospeed.methods.spec import MethodSpec
from algospeed.study.hyperparameters import Hyperparameters, parse_arm_methods

SHIPPED = Path(__file__).resolve().parents[1] / "recipes"
MAX_RECIPE_BYTES = 1 << 20


class Measured(BaseModel):
    """The evidence behind a recipe: its speedup over the tuned baseline at `quality`, with its interval."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    speedup: float | None
    low: float | None = None
    high: float | None = None
    currency: str
    quality: float
    metric: str
    seeds: int
    interval: str = ""
    test_quality: dict[str, float | None] = Field(default_factory=dict)
    study: str = ""
    search: str = ""


class Recipe(BaseModel):
    """A stack of methods (in order, with settings) and the hyperparameters it trains with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(default=1, ge=1)
    description: str = ""
    workload: str
    methods: list[MethodSpec] = Field(default_factory=list)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    measured: Measured | None = None

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_parse(cls, value: Any) -> Any:
        return parse_arm_methods(value)

    def arm(self) -> dict[str, Any]:
        """The recipe as a study arm (a mapping an `Arm` validates)."""
        return {"methods": self.methods, **self.hyperparameters.model_dump(exclude_none=True)}

    def to_yaml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        data["methods"] = [str(method) for method in self.methods]
        return yaml.safe_dump(data, sort_keys=False)


def shipped_recipes() -> dict[str, Path]:
    """The recipes that ship with algospeed, by name."""
    return {path.stem: path for path in sorted(SHIPPED.glob("*.yaml"))}


def load_recipe(name_or_file: str | Path) -> Recipe:
    """A shipped recipe by name, or a recipe file by path; anything wrong is one `UsageError` line."""
    text = str(name_or_file)
    shipped = shipped_recipes()
    path = shipped.get(text) or Path(text).expanduser()
    if not path.is_file():
        valid = ", ".join(shipped) or "(none)"
        raise UsageError(f"no recipe {text!r}: give a recipe file or one of the shipped recipes: {valid}")
    if path.stat().st_size > MAX_RECIPE_BYTES:
        raise UsageError(f"recipe {path} is larger than {MAX_RECIPE_BYTES} bytes")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first = " ".join(str(error).split())[:200]
        raise UsageError(f"recipe {path} is not valid YAML: {first}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping (name, workload, methods, hyperparameters)")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as error:
        raise usage_error_from_validation(error, f"recipe {path}") from None
    check_recipe(recipe, str(path))
    return recipe


def check_recipe(recipe: Recipe, source: str) -> None:
    """Every method and setting of the recipe exists and composes (one line naming the recipe otherwise)."""
    from algospeed.core.callback import check_composition
    from algospeed.methods.spec import build_method

    try:
        check_composition([build_method(method) for method in recipe.hyperparameters.apply(recipe.methods)])
    except (UsageError, ValueError) as error:
        raise UsageError(f"recipe {source}: {error}") from None
