"""A workload: data, model, loss, quality metric with its target, and default hyperparameters."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from algospeed.core.metrics import ACCURACY, Metric
from algospeed.errors import UsageError


@dataclass(frozen=True)
class Splits:
    """Train and test tensors (inputs, targets) of an in-memory workload."""

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor


@dataclass(frozen=True)
class DatasetSplits:
    """Train and test map-style datasets, decoded on access and loaded by workers."""

    train: Dataset
    test: Dataset
    classes: int


def class_count(data: Splits | DatasetSplits) -> int:
    """How many classes the model must output."""
    if isinstance(data, DatasetSplits):
        return data.classes
    return int(max(data.train_targets.max(), data.test_targets.max())) + 1


@dataclass(frozen=True)
class Workload:
    """Everything needed to train and judge one task; `options` are its settings with defaults.

    `model(options, classes)` builds the network for the loaded data's number of classes.
    """

    name: str
    description: str
    load: Callable[[Mapping[str, Any]], Splits | DatasetSplits]
    model: Callable[[Mapping[str, Any], int], nn.Module]
    target: float
    budget: str
    eval_interval: str
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float = 0.0
    metric: Metric = ACCURACY
    options: Mapping[str, Any] = field(default_factory=dict)

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults overridden by `given`, each converted to its default's type."""
        unknown = sorted(set(given) - set(self.options))
        if unknown:
            valid = ", ".join(sorted(self.options)) or "(none)"
            raise UsageError(f"workload {self.name!r} has no option {', '.join(unknown)}; valid options: {valid}")
        resolved = dict(self.options)
        for key, value in given.items():
            resolved[key] = _convert(self.name, key, value, type(self.options[key]))
        return resolved

    def make_optimizer(self, lr: float | None = None) -> Callable[[list[nn.Parameter]], torch.optim.Optimizer]:
        """A factory for this workload's default optimizer."""
        rate = self.lr if lr is None else lr
        if self.optimizer == "sgd":
            return lambda params: torch.optim.SGD(
                params, lr=rate, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
            )
        if self.optimizer == "adamw":
            return lambda params: torch.optim.AdamW(params, lr=rate, weight_decay=self.weight_decay)
        raise ValueError(f"unknown optimizer {self.optimizer!r}")


def _convert(workload: str, key: str, value: Any, kind: type) -> Any:
    """Convert an option given as text (`samples=2e4`) to its default's type."""
    try:
        if kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            return int(number)
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"workload {workload!r} option {key}={value!r} must be a {kind.__name__}") from None
