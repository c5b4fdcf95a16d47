"""A study: arms x budgets x seeds on one workload, tuned by the harness, validated before anything runs.

A study file is YAML:

    name: label-smoothing-vs-ema
    plugins: [lab/my_methods.py]  # optional: files (relative to this file) or modules registering methods/workloads
    workload: mnist1d
    options: {samples: 10000}
    arms:
      baseline: []
      smooth: [label_smoothing]
      stack: {methods: ["label_smoothing:smoothing=0.05", ema], lr: 0.002}
    budgets: [5ep, 10ep, 20ep]
    seeds: 3                      # or a list: [0, 1, 2]
    currency: reference           # or train_seconds, flops, samples, tokens, steps
    tuning:                       # or none (defaults only: the self-tuning ruleset)
      trials: 4
      budget: 10ep
      space: {lr: {log: [1.0e-3, 1.0e-2]}}
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from algospeed.core.callback import check_composition
from algospeed.core.currency import Currency
from algospeed.core.units import parse_amount, parse_budget
from algospeed.errors import UsageError, usage_error_from_validation
from algospeed.methods.spec import build_method
from algospeed.plugins import Plugin, load_plugins, resolve_ref
from algospeed.run_spec import MAX_SEED, RunSpec
from algospeed.study.hyperparameters import Arm, Hyperparameters, parse_arm_methods
from algospeed.study.recipe import load_recipe
from algospeed.study.tuning import TRIAL_SEED, Tuning
from algospeed.workloads.registry import get_workload

BASELINE = "baseline"
STORED = {"stored": True}
"""Validation context for a spec read back from a study's store: its plugins, workload and methods are
not looked up again (a report needs none of their code), only its shape is checked."""


MAX_NAME = 100
MAX_SEEDS = 1000
_UNSAFE = re.compile(r"[/\x00-\x1f\x7f]")
_SLUG = re.compile(r"[^A-Za-z0-9._+-]")


def slug(name: str) -> str:
    """`name` as one safe path component on any system (letters, digits, `._+-`; a short hash where anything
    else was replaced, so that two names never share a folder)."""
    cleaned = _SLUG.sub("_", name)
    if cleaned == name:
        return name
    return f"{cleaned[:60]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def safe_name(value: str, what: str) -> str:
    """A study or arm name (`what`, e.g. "an arm name"): printable, no `/`, not `.` or `..`, no surrounding
    spaces, at most `MAX_NAME` characters. Where it becomes a path it goes through `slug`."""
    if not 1 <= len(value) <= MAX_NAME:
        raise ValueError(f"{what} has 1 to {MAX_NAME} characters, got {len(value)}")
    if _UNSAFE.search(value) or value.strip() in (".", "..") or value != value.strip():
        raise ValueError(f"{what} may not hold path separators or control characters, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters (an echoed value stays short whatever the input)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _live(info: ValidationInfo) -> bool:
    """Whether registries are consulted (not for a spec read back from a store)."""
    return not (info.context or {}).get("stored", False)


class StudySpec(BaseModel):
    """What to compare, under which budgets and seeds, tuned how, judged in which cost currency.

    `batch_size`, `optimizer`, `lr` and `weight_decay` are the study's defaults for every arm; an arm's own
    values come next, and a tuning trial's drawn values override both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    plugins: list[str] = Field(default_factory=list)
    name: str = Field(default="study", min_length=1, max_length=MAX_NAME)
    workload: str
    options: dict[str, str | int | float] = Field(default_factory=dict)
    arms: dict[str, Arm]
    baseline: str = BASELINE
    budgets: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    target: float | None = Field(default=None, allow_inf_nan=False)
    eval_interval: str = "0.1dur"
    currency: Currency = Currency.REFERENCE
    batch_size: int | None = Field(default=None, gt=0)
    optimizer: str | None = None
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    tuning: Tuning | None = None
    device: str | None = None

    @field_validator("name")
    @classmethod
    def _name_safe(cls, value: str) -> str:
        return safe_name(value, "a study name")

    @field_validator("plugins")
    @classmethod
    def _plugins_load(cls, value: list[str], info: ValidationInfo) -> list[str]:
        refs = list(dict.fromkeys(resolve_ref(ref) for ref in value))
        if _live(info):
            load_plugins(refs)  # before the workload and the arms' methods are looked up
        return refs

    @field_validator("workload")
    @classmethod
    def _workload_exists(cls, value: str, info: ValidationInfo) -> str:
        if _live(info):
            get_workload(value)
        return value

    @field_validator("arms", mode="before")
    @classmethod
    def _arms_parse(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not value:
            raise ValueError("arms must map arm names to lists of methods (the baseline arm has none)")
        return {safe_name(str(name), "an arm name"): _arm(arm) for name, arm in value.items()}

    @field_validator("arms")
    @classmethod
    def _arms_build(cls, value: dict[str, Arm], info: ValidationInfo) -> dict[str, Arm]:
        if not _live(info):
            return value
        for name, arm in value.items():
            try:
                check_composition([build_method(method) for method in arm.hyperparameters.apply(arm.methods)])
            except (UsageError, ValueError) as error:
                raise ValueError(f"arm {name!r}: {error}") from None
        return value

    @field_validator("tuning", mode="before")
    @classmethod
    def _tuning_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        if isinstance(value, dict) and value and all(isinstance(v, int) for v in value.values()):
            raise ValueError(
                "tuning no longer declares trials per arm: the harness tunes, e.g. "
                "tuning: {trials: 8, space: {lr: {log: [1.0e-4, 1.0e-2]}}}, or tuning: none"
            )
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets_parse(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ValueError(f"budgets are a list of amounts like [5ep, 10ep, 20ep], got {_short(value)}")
        return [str(parse_budget(str(item))) for item in items]

    @field_validator("budgets")
    @classmethod
    def _budgets_distinct(cls, value: list[str]) -> list[str]:
        units = {parse_budget(budget).unit for budget in value}
        if len(units) > 1:
            raise ValueError(f"all budgets must share one unit, got {', '.join(value)}")
        if len(set(value)) != len(value):
            raise ValueError(f"budgets repeat: {', '.join(value)}")
        return sorted(value, key=lambda budget: parse_budget(budget).value)

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds_count(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError("seeds must be a positive count or a list of seeds")
            return list(range(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _seeds_distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value) or min(value) < 0:
            raise ValueError(f"seeds must be distinct and non-negative, got {_short(value)}")
        if max(value) >= MAX_SEED or len(value) > MAX_SEEDS:
            raise ValueError(f"seeds must be below {MAX_SEED} and at most {MAX_SEEDS} of them")
        return value

    @field_validator("eval_interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        return str(parse_amount(value, allow_fraction=True))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> StudySpec:
        if self.baseline not in self.arms:
            raise ValueError(f"the baseline arm {self.baseline!r} is not among the arms ({', '.join(self.arms)})")
        if self.tuning is not None:
            if (
                self.tuning.budget is not None
                and parse_budget(self.tuning.budget).unit != parse_budget(self.budgets[0]).unit
            ):
                raise ValueError(f"the tuning budget {self.tuning.budget} is not in the budgets' unit")
            used = {method.name for arm in self.arms.values() for method in arm.methods}
            unused = sorted(key for key in self.tuning.space if "." in key and key.partition(".")[0] not in used)
            if unused:
                raise ValueError(f"tuning space names settings of methods no arm uses: {', '.join(unused)}")
        if _live(info):
            self.trials()  # every draw of every arm builds a valid run (settings, data kinds, options)
            self.grid()  # and so does every arm with its own hyperparameters
        return self

    @property
    def target_quality(self) -> float:
        return get_workload(self.workload).target if self.target is None else self.target

    @property
    def defaults(self) -> Hyperparameters:
        """The study-wide hyperparameters (None: the workload's default)."""
        return Hyperparameters(optimizer=self.optimizer, lr=self.lr, weight_decay=self.weight_decay,
                               batch_size=self.batch_size)  # fmt: skip

    @property
    def tuning_budget(self) -> str:
        return (self.tuning.budget if self.tuning else None) or self.budgets[-1]

    @cached_property
    def loaded_plugins(self) -> list[Plugin]:
        """The study's plugins as loaded in this process, with the sha256 of their source."""
        return load_plugins(self.plugins)

    def trials(self) -> list[StudyRun]:
        """Every tuning trial (none under `tuning: none`): per arm, its draws in order."""
        if self.tuning is None:
            return []
        return [
            StudyRun(
                arm=name,
                budget=self.tuning_budget,
                seed=TRIAL_SEED + index,
                trial=index,
                params=draw,
                spec=self.run_spec(name, self.tuning_budget, TRIAL_SEED + index, draw),
            )
            for name, arm in self.arms.items()
            for index, draw in enumerate(self.tuning.draws(name, arm))
        ]

    def grid(self, chosen: dict[str, Hyperparameters] | None = None) -> list[StudyRun]:
        """Every run of the study's grid with each arm's `chosen` hyperparameters (none: its own), in a stable
        order: budgets, then seeds, then arms."""
        chosen = chosen or {}
        return [
            StudyRun(
                arm=arm,
                budget=budget,
                seed=seed,
                params=chosen.get(arm, Hyperparameters()),
                spec=self.run_spec(arm, budget, seed, chosen.get(arm)),
            )
            for budget in self.budgets
            for seed in self.seeds
            for arm in self.arms
        ]

    def hyperparameters(self, arm: str, drawn: Hyperparameters | None = None) -> Hyperparameters:
        """What a run of `arm` sets: the drawn values, then the arm's own, then the study's."""
        own = self.arms[arm].hyperparameters.over(self.defaults)
        return own if drawn is None else drawn.over(own)

    def run_spec(self, arm: str, budget: str, seed: int, drawn: Hyperparameters | None = None) -> RunSpec:
        values = self.hyperparameters(arm, drawn)
        return RunSpec(
            plugins={plugin.ref: plugin.sha256 for plugin in self.loaded_plugins},
            workload=self.workload,
            options=self.options,
            budget=budget,
            seed=seed,
            eval_interval=self.eval_interval,
            device=self.device,
            methods=values.apply(self.arms[arm].methods),
            **values.run_fields(),
        )


class StudyRun(BaseModel):
    """One cell of the study grid, with a key that stays the same across restarts."""

    model_config = ConfigDict(frozen=True)

    arm: str
    budget: str
    seed: int
    spec: RunSpec
    trial: int | None = None  # a tuning trial's index; None for a run of the grid
    params: Hyperparameters = Field(default_factory=Hyperparameters)  # drawn or chosen by tuning

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.spec.fingerprint(), sort_keys=True).encode()).hexdigest()[:12]
        if self.trial is not None:
            return f"{self.arm}-trial{self.trial}-{self.budget}-{digest}"
        return f"{self.arm}-{self.budget}-s{self.seed}-{digest}"


def _arm(value: Any) -> Arm:
    """An arm from a study file: a list (or `a+b` string) of methods, or a mapping with `methods` and its own
    hyperparameters, or with `recipe: NAME|FILE` (expanded here; keys given beside it override the recipe's)."""
    if isinstance(value, Arm):
        return value
    if not isinstance(value, dict):
        return Arm(methods=parse_arm_methods(value))
    if "recipe" in value and "methods" not in value:
        recipe = load_recipe(str(value["recipe"]))
        rest = {key: item for key, item in value.items() if key != "recipe"}
        return Arm.model_validate({**recipe.arm(), **rest, "recipe": f"{recipe.name}@v{recipe.version}"})
    return Arm.model_validate(value)


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML study file: every problem is reported, and nothing is written."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"study file {file} does not exist")
    if file.stat().st_size > MAX_FILE_BYTES:
        raise UsageError(f"study file {file} is larger than {MAX_FILE_BYTES} bytes")
    try:
        data = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UsageError(f"study file {file} is not valid YAML: {_short(str(error), 300)}") from None
    if not isinstance(data, dict):
        raise UsageError(f"study file {file} must be a mapping of settings")
    bounded(data, str(file))
    if isinstance(data.get("plugins"), list):  # files are named relative to the study file
        data["plugins"] = [resolve_ref(str(ref), file.parent) for ref in data["plugins"]]
    return validate_study_spec(data, str(file))


MAX_FILE_BYTES = 1 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 32


def bounded(data: Any, source: str) -> None:
    """Refuse a study whose values, expanded (YAML aliases can nest exponentially in a few bytes), number more
    than `MAX_VALUES` or nest deeper than `MAX_DEPTH`; the walk stops at the bound, so it is cheap."""
    count, stack = 0, [(data, 0)]
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES or depth > MAX_DEPTH:
            raise UsageError(
                f"{source} expands to more than {MAX_VALUES} values or {MAX_DEPTH} levels (YAML aliases?); "
                "write it out plainly"
            )
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple)):
            stack.extend((item, depth + 1) for item in value)


def validate_study_spec(data: dict[str, Any], source: str = "study") -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise usage_error_from_validation(error, source) from None
