"""The measured evidence behind a method's suggested settings: the shipped recipes that use it.

A recipe holds the settings the recipe search chose for the method on one workload, and the speedup
that the study measured for the whole stack against the tuned baseline; that speedup belongs to the
stack, so the evidence names the methods it was stacked with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from algospeed.study.recipe import Measured, Recipe, load_recipe, shipped_recipes


@dataclass(frozen=True)
class Evidence:
    """One shipped recipe using the method: the method's settings there, and what the stack measured."""

    recipe: str
    workload: str
    spec: str
    stacked_with: tuple[str, ...]
    measured: str
    study: str


def describe_measured(measured: Measured | None) -> str:
    """`2.10x [1.60, 2.70] (95% bootstrap) in reference to accuracy 0.97, 5 seeds`, or why there is no figure."""
    if measured is None:
        return "not measured"
    if measured.speedup is None:
        return f"no speedup measured to {measured.metric} {measured.quality:g} ({measured.seeds} seeds)"
    interval = ""
    if measured.low is not None and measured.high is not None:
        kind = f" ({measured.interval})" if measured.interval else ""
        interval = f" [{measured.low:.2f}, {measured.high:.2f}]{kind}"
    return (
        f"{measured.speedup:.2f}x{interval} in {measured.currency} to {measured.metric} {measured.quality:g}, "
        f"{measured.seeds} seeds"
    )


def recipe_evidence(recipe: Recipe, method: str) -> Evidence | None:
    """The evidence `recipe` gives for `method`, or None where the recipe does not use it."""
    specs = recipe.hyperparameters.apply(recipe.methods)
    used = [spec for spec in specs if spec.name == method]
    if not used:
        return None
    measured = recipe.measured
    return Evidence(
        recipe=f"{recipe.name} v{recipe.version}",
        workload=recipe.workload,
        spec=str(used[0]),
        stacked_with=tuple(str(spec) for spec in specs if spec.name != method),
        measured=describe_measured(measured),
        study=(measured.study if measured is not None else "") or "",
    )


@cache
def _shipped() -> tuple[Recipe, ...]:
    return tuple(load_recipe(path) for path in shipped_recipes().values())


def shipped_evidence(method: str) -> tuple[Evidence, ...]:
    """The evidence of every shipped recipe that uses `method`, in the recipes' name order."""
    found = (recipe_evidence(recipe, method) for recipe in _shipped())
    return tuple(evidence for evidence in found if evidence is not None)
