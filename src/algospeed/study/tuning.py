"""Tuning run by the harness, equal for every arm (AlgoPerf's external-tuning ruleset).

    tuning:
      trials: 8
      budget: 8ep                         # default: the study's largest budget
      space:
        lr: {log: [1.0e-4, 1.0e-2]}
        weight_decay: {linear: [0.0, 0.1]}
        batch_size: {choice: [64, 128]}
        ema.decay: {linear: [0.9, 0.999]}  # only for the arms that use ema

Every arm gets exactly `trials` points of a scrambled Halton sequence (scipy's quasi-random search,
as AlgoPerf's baselines draw theirs): the run-level dimensions come from one sequence shared by every
arm, so all arms try the same learning rates, weight decays and batch sizes; an arm's own method
settings come from a second sequence of its own. A draw depends only on the space, the seed and its
index, never on earlier results, so trials run in parallel and a killed study redraws exactly what it
had. Each arm's chosen trial is its fastest to the target on the validation split, in the study's
currency; `tuning: none` is the self-tuning ruleset (defaults only).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from scipy.stats import qmc

from algospeed.core.currency import Currency
from algospeed.core.units import parse_budget
from algospeed.methods.spec import SettingValue
from algospeed.study.analysis import final_quality, time_to_target
from algospeed.study.hyperparameters import HYPERPARAMETERS, Arm, Hyperparameters
from algospeed.study.records import ReferenceCost, RunRecord

TRIAL_SEED = 10_000
"""Trials train with seeds 10000, 10001...: never the seeds of the study's grid, so that a choice made on
some seeds is not judged on the same ones."""


class Range(BaseModel):
    """One dimension of a search space: `log: [low, high]`, `linear: [low, high]` or `choice: [...]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    log: tuple[float, float] | None = None
    linear: tuple[float, float] | None = None
    choice: list[SettingValue] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self) -> Range:
        given = [kind for kind in ("log", "linear", "choice") if getattr(self, kind) is not None]
        if len(given) != 1:
            raise ValueError("a range is exactly one of log: [low, high], linear: [low, high] or choice: [...]")
        bounds = self.log or self.linear
        if bounds is not None:
            low, high = bounds
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"a range needs finite low < high, got {list(bounds)}")
            if self.log is not None and low <= 0:
                raise ValueError(f"a log range needs low > 0, got {list(bounds)}")
        return self

    def value(self, unit: float) -> SettingValue:
        """The point at `unit` in [0, 1)."""
        if self.choice is not None:
            return self.choice[min(int(unit * len(self.choice)), len(self.choice) - 1)]
        if self.log is not None:
            low, high = self.log
            return float(math.exp(math.log(low) + unit * (math.log(high) - math.log(low))))
        low, high = self.linear  # type: ignore[misc]
        return float(low + unit * (high - low))


class Tuning(BaseModel):
    """`trials` draws per arm from `space`, each trained for `budget` (default: the largest study budget)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int = Field(ge=1, le=1000)
    budget: str | None = None
    space: dict[str, Range] = Field(min_length=1)
    seed: int = Field(default=0, ge=0, lt=2**32)

    @field_validator("budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_budget(value))

    @field_validator("space")
    @classmethod
    def _dimensions_known(cls, value: dict[str, Range]) -> dict[str, Range]:
        for key, dimension in value.items():
            method, dot, setting = key.partition(".")
            if not dot and key not in HYPERPARAMETERS:
                valid = ", ".join(HYPERPARAMETERS)
                raise ValueError(f"tuning dimension {key!r} is neither one of {valid} nor a method.setting")
            if dot and not (method and setting):
                raise ValueError(f"a method setting is named method.setting, got {key!r}")
            if key in ("optimizer", "batch_size") and dimension.choice is None:
                raise ValueError(f"tuning dimension {key!r} takes choice: [...]")
        return value

    @property
    def shared(self) -> list[str]:
        """The run-level dimensions, drawn alike for every arm."""
        return [key for key in self.space if "." not in key]

    def own(self, arm: Arm) -> list[str]:
        """The method-setting dimensions of the methods `arm` uses."""
        names = {method.name for method in arm.methods}
        return [key for key in self.space if "." in key and key.partition(".")[0] in names]

    def draws(self, arm_name: str, arm: Arm) -> list[Hyperparameters]:
        """The arm's `trials` draws, in order (the same run-level values for every arm)."""
        shared = _halton(len(self.shared), self.trials, self.seed)
        own_keys = self.own(arm)
        own = _halton(len(own_keys), self.trials, _arm_seed(self.seed, arm_name))
        draws = []
        for index in range(self.trials):
            values: dict[str, Any] = {
                key: self.space[key].value(unit) for key, unit in zip(self.shared, shared[index], strict=True)
            }
            settings = {key: self.space[key].value(unit) for key, unit in zip(own_keys, own[index], strict=True)}
            draws.append(Hyperparameters(**values, settings=settings))
        return draws


def _halton(dimensions: int, count: int, seed: int) -> list[list[float]]:
    """`count` points of a scrambled Halton sequence in [0, 1)^dimensions (none when no dimension)."""
    if dimensions == 0:
        return [[] for _ in range(count)]
    return qmc.Halton(d=dimensions, scramble=True, seed=seed).random(count).tolist()


def _arm_seed(seed: int, arm: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{arm}".encode()).digest()[:4], "little")


@dataclass(frozen=True)
class Choice:
    """An arm's chosen trial: its index, hyperparameters, cost to the target (None: no trial reached it, and
    the one with the best final validation quality was taken) and how many trials ran."""

    trial: int
    hyperparameters: Hyperparameters
    cost: float | None
    trials: int

    @property
    def reached(self) -> bool:
        return self.cost is not None

    def to_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "hyperparameters": self.hyperparameters.model_dump(), "cost": self.cost,
                "trials": self.trials}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        return cls(data["trial"], Hyperparameters.model_validate(data["hyperparameters"]), data["cost"], data["trials"])


def choose(
    trials: Sequence[tuple[Hyperparameters, RunRecord | None]],
    target: float,
    currency: Currency,
    reference: ReferenceCost | None = None,
) -> Choice | None:
    """The fastest trial to `target` (ties: the earlier trial); when none reached it, the trial with the best
    final quality; None when no trial ended with a curve. A trial without a record (failed) never reaches."""
    timed: list[tuple[float, int]] = []
    finals: list[tuple[float, int]] = []
    for index, (_, record) in enumerate(trials):
        if record is None or not record.completed:
            continue
        cost = time_to_target(record, target, currency, reference).cost
        if cost is not None:
            timed.append((cost, index))
        quality = final_quality(record)
        if quality is not None:
            finals.append((-quality if record.higher_is_better else quality, index))
    if timed:
        cost, index = min(timed)
        return Choice(index, trials[index][0], cost, len(trials))
    if finals:
        _, index = min(finals)
        return Choice(index, trials[index][0], None, len(trials))
    return None
