"""A workload: data (and its kind), model, loss, quality metric with its target, and default
hyperparameters, as data plus factories, so that a plugin defines one the way the built-ins are."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from algospeed.core.batch import Batch
from algospeed.core.data_kind import DataKind
from algospeed.core.metrics import ACCURACY, Forward, Metric, cross_entropy, forward_inputs
from algospeed.core.state import LossFn
from algospeed.errors import UsageError
from algospeed.workloads.optimizers import OptimizerFactory


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

    `load(options)` gives the data; `model(options, classes)` builds the network for the loaded data's
    number of classes; `optimizer(params, lr, weight_decay)` builds the default optimizer;
    `forward(model, batch)` and `loss(outputs, targets)` run a step; `data_kind` says what the inputs
    are (methods that cannot act on them are refused), or computes it from the options where they
    decide it; loaders yield `batch_type` batches.
    """

    name: str
    description: str
    load: Callable[[Mapping[str, Any]], Splits | DatasetSplits]
    model: Callable[[Mapping[str, Any], int], nn.Module]
    data_kind: DataKind | Callable[[Mapping[str, Any]], DataKind]
    target: float
    budget: str
    eval_interval: str
    batch_size: int
    optimizer: OptimizerFactory
    lr: float
    weight_decay: float = 0.0
    metric: Metric = ACCURACY
    loss: LossFn = cross_entropy
    forward: Forward = forward_inputs
    batch_type: type[Batch] = Batch
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

    def kind(self, options: Mapping[str, Any] | None = None) -> DataKind:
        """The kind of data this workload loads with `options` (its defaults when None)."""
        if isinstance(self.data_kind, DataKind):
            return self.data_kind
        return self.data_kind(self.resolve_options(options or {}))

    def make_optimizer(
        self,
        lr: float | None = None,
        weight_decay: float | None = None,
        optimizer: OptimizerFactory | None = None,
    ) -> Callable[[list[nn.Parameter]], torch.optim.Optimizer]:
        """`params -> Optimizer`: this workload's optimizer (or `optimizer`) with its defaults overridden."""
        factory = optimizer or self.optimizer
        rate = self.lr if lr is None else lr
        decay = self.weight_decay if weight_decay is None else weight_decay
        return lambda params: factory(params, rate, decay)


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
