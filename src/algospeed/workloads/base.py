"""A workload: data (and its kind), model, loss, quality metric with its target, and default
hyperparameters, as data plus factories, so that a plugin defines one the way the built-ins are."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from algospeed.core.batch import Batch
from algospeed.core.data_kind import DataKind
from algospeed.core.metrics import ACCURACY, Forward, Metric, cross_entropy, forward_inputs
from algospeed.core.state import LossFn
from algospeed.errors import UsageError
from algospeed.workloads.optimizers import OptimizerFactory

VALIDATION_SEED = 0  # the held-out validation split is the same for every run seed


@dataclass(frozen=True)
class Splits:
    """Train, test and (optionally) validation tensors (inputs, targets) of an in-memory workload.

    Targets, tuning and time-to-target read the validation split; the test split is only reported.
    A workload that gives no validation split has one carved from its training data (`Workload.validation`).
    """

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    val_inputs: torch.Tensor | None = None
    val_targets: torch.Tensor | None = None

    def with_validation(self, fraction: float) -> Splits:
        """A fixed, seeded `fraction` of the training samples held out as the validation split."""
        if self.val_inputs is not None or fraction <= 0:
            return self
        size = len(self.train_inputs)
        held, train = _held_out(size, fraction)
        return Splits(
            self.train_inputs[train],
            self.train_targets[train],
            self.test_inputs,
            self.test_targets,
            self.train_inputs[held],
            self.train_targets[held],
        )


@dataclass(frozen=True)
class DatasetSplits:
    """Train, test and (optionally) validation map-style datasets, decoded on access and loaded by workers."""

    train: Dataset
    test: Dataset
    classes: int
    val: Dataset | None = None

    def with_validation(self, fraction: float) -> DatasetSplits:
        """A fixed, seeded `fraction` of the training samples held out as the validation split."""
        if self.val is not None or fraction <= 0:
            return self
        held, train = _held_out(len(self.train), fraction)  # type: ignore[arg-type]
        return DatasetSplits(
            Subset(self.train, train.tolist()), self.test, self.classes, Subset(self.train, held.tolist())
        )


def _held_out(size: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation indices, training indices): a seeded permutation's first `fraction`, both sorted."""
    count = min(size - 1, max(1, round(fraction * size)))
    order = torch.randperm(size, generator=torch.Generator().manual_seed(VALIDATION_SEED))
    return order[:count].sort().values, order[count:].sort().values


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
    decide it; loaders yield `batch_type` batches; `validation` is the fraction of the training data
    held out for validation when `load` gives no validation split. `metric` is what targets and speedups
    judge; `extra_metrics` (bits per character beside a loss in nats) are only reported.
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
    extra_metrics: tuple[Metric, ...] = ()  # reported beside `metric` at every evaluation, never judged on
    loss: LossFn = cross_entropy
    forward: Forward = forward_inputs
    batch_type: type[Batch] = Batch
    validation: float = 0.1
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

    def data(self, options: Mapping[str, Any]) -> Splits | DatasetSplits:
        """The loaded splits, with the validation split carved from the training data where `load` gives none
        (`validation = 0` keeps none: then the test split is all there is to judge on, and studies say so)."""
        return self.load(options).with_validation(self.validation)

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
