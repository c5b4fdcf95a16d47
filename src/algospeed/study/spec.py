"""A study: arms (lists of methods) x budgets x seeds on one workload, validated before anything runs.

A study file is YAML:

    name: label-smoothing-vs-ema
    plugins: [lab/my_methods.py]  # optional: files (relative to this file) or modules registering methods/workloads
    workload: mnist1d
    options: {samples: 10000}
    arms:
      baseline: []
      smooth: [label_smoothing]
      stack: ["label_smoothing:smoothing=0.05", ema]
    budgets: [5ep, 10ep, 20ep]
    seeds: 3                      # or a list: [0, 1, 2]
    currency: train_seconds       # or flops, samples, steps, reference
    tuning: {baseline: 1, smooth: 1, stack: 1}   # declared tuning trials per arm
"""

from __future__ import annotations

import hashlib
import json
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
from algospeed.methods.spec import MethodSpec, build_method, parse_methods
from algospeed.plugins import Plugin, load_plugins, resolve_ref
from algospeed.run_spec import RunSpec
from algospeed.workloads.registry import get_workload

BASELINE = "baseline"
STORED = {"stored": True}
"""Validation context for a spec read back from a study's store: its plugins, workload and methods are
not looked up again (a report needs none of their code), only its shape is checked."""


def _live(info: ValidationInfo) -> bool:
    """Whether registries are consulted (not for a spec read back from a store)."""
    return not (info.context or {}).get("stored", False)


class StudySpec(BaseModel):
    """What to compare, under which budgets and seeds, judged in which cost currency."""

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    plugins: list[str] = Field(default_factory=list)
    name: str = "study"
    workload: str
    options: dict[str, str | int | float] = Field(default_factory=dict)
    arms: dict[str, list[MethodSpec]]
    baseline: str = BASELINE
    budgets: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    target: float | None = None
    eval_interval: str = "0.1dur"
    currency: Currency = Currency.TRAIN_SECONDS
    batch_size: int | None = Field(default=None, gt=0)
    lr: float | None = Field(default=None, gt=0)
    tuning: dict[str, int] = Field(default_factory=dict)
    device: str | None = None

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
        return {name: _parse_arm(methods) for name, methods in value.items()}

    @field_validator("arms")
    @classmethod
    def _arms_build(cls, value: dict[str, list[MethodSpec]], info: ValidationInfo) -> dict[str, list[MethodSpec]]:
        if not _live(info):
            return value
        for name, methods in value.items():
            try:
                check_composition([build_method(method) for method in methods])
            except UsageError as error:
                raise ValueError(f"arm {name!r}: {error}") from None
        return value

    @field_validator("budgets", mode="before")
    @classmethod
    def _budgets_parse(cls, value: Any) -> Any:
        items = value.split(",") if isinstance(value, str) else value
        return [str(parse_budget(item)) for item in items]

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
            raise ValueError(f"seeds must be distinct and non-negative, got {value}")
        return value

    @field_validator("eval_interval")
    @classmethod
    def _interval_parses(cls, value: str) -> str:
        return str(parse_amount(value, allow_fraction=True))

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> StudySpec:
        if self.baseline not in self.arms:
            raise ValueError(f"the baseline arm {self.baseline!r} is not among the arms ({', '.join(self.arms)})")
        unknown = sorted(set(self.tuning) - set(self.arms))
        if unknown:
            raise ValueError(f"tuning names arms that do not exist: {', '.join(unknown)}")
        if any(trials < 1 for trials in self.tuning.values()):
            raise ValueError("tuning trials must be at least 1")
        if _live(info):
            for arm in self.arms:
                self.run_spec(arm, self.budgets[0], self.seeds[0])  # options and data kinds fit every arm
        return self

    @property
    def target_quality(self) -> float:
        return get_workload(self.workload).target if self.target is None else self.target

    @cached_property
    def loaded_plugins(self) -> list[Plugin]:
        """The study's plugins as loaded in this process, with the sha256 of their source."""
        return load_plugins(self.plugins)

    def runs(self) -> list[StudyRun]:
        """Every run of the study, in a stable order: budgets, then seeds, then arms."""
        return [
            StudyRun(arm=arm, budget=budget, seed=seed, spec=self.run_spec(arm, budget, seed))
            for budget in self.budgets
            for seed in self.seeds
            for arm in self.arms
        ]

    def run_spec(self, arm: str, budget: str, seed: int) -> RunSpec:
        return RunSpec(
            plugins={plugin.ref: plugin.sha256 for plugin in self.loaded_plugins},
            workload=self.workload,
            options=self.options,
            budget=budget,
            seed=seed,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_interval=self.eval_interval,
            device=self.device,
            methods=self.arms[arm],
        )


class StudyRun(BaseModel):
    """One cell of the study grid, with a key that stays the same across restarts."""

    model_config = ConfigDict(frozen=True)

    arm: str
    budget: str
    seed: int
    spec: RunSpec

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps(self.spec.fingerprint(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.arm}-{self.budget}-s{self.seed}-{digest}"


def _parse_arm(methods: Any) -> list[MethodSpec]:
    if methods is None:
        return []
    if isinstance(methods, str):
        return parse_methods(methods.replace("+", ","))
    if not isinstance(methods, list):
        raise ValueError(f"an arm is a list of methods, got {methods!r}")
    parsed: list[MethodSpec] = []
    for item in methods:
        parsed.extend(parse_methods(item) if isinstance(item, str) else [MethodSpec.model_validate(item)])
    return parsed


def load_study_spec(path: str | Path) -> StudySpec:
    """Read and validate a YAML study file: every problem is reported, and nothing is written."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"study file {file} does not exist")
    try:
        data = yaml.safe_load(file.read_text())
    except yaml.YAMLError as error:
        raise UsageError(f"study file {file} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise UsageError(f"study file {file} must be a mapping of settings")
    if isinstance(data.get("plugins"), list):  # files are named relative to the study file
        data["plugins"] = [resolve_ref(str(ref), file.parent) for ref in data["plugins"]]
    return validate_study_spec(data, str(file))


def validate_study_spec(data: dict[str, Any], source: str = "study") -> StudySpec:
    try:
        return StudySpec.model_validate(data)
    except ValidationError as error:
        raise usage_error_from_validation(error, source) from None
