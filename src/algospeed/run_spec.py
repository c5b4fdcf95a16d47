"""A run spec (workload, budget, seed, methods) and the one path from it to a ready `Trainer`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch.utils.data import Dataset

from algospeed.core.callback import Callback, check_composition
from algospeed.core.data import DatasetLoader, InMemoryLoader, Loader
from algospeed.core.data_kind import check_data_kind
from algospeed.core.device import resolve_device
from algospeed.core.trainer import Trainer
from algospeed.core.units import parse_amount, parse_budget
from algospeed.methods.spec import MethodSpec, build_method, parse_methods
from algospeed.plugins import check_plugins
from algospeed.workloads.base import DatasetSplits, Splits, Workload, class_count
from algospeed.workloads.optimizers import optimizer_factory
from algospeed.workloads.registry import get_workload

EVAL_BATCH = 256
MAX_SEED = 2**62  # seeds are offset and stored as 64-bit integers: keep far from the edge


class RunSpec(BaseModel):
    """One training run: a workload with its options, a budget, a seed, hyperparameters, methods, and the
    plugins (ref -> sha256 of their source) that define any of them; plugins load first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugins: dict[str, str] = Field(default_factory=dict)
    workload: str
    options: dict[str, str | int | float] = Field(default_factory=dict)
    budget: str | None = None
    seed: int = Field(default=0, ge=0, lt=MAX_SEED)
    batch_size: int | None = Field(default=None, gt=0)
    optimizer: str | None = None
    lr: float | None = Field(default=None, gt=0)
    weight_decay: float | None = Field(default=None, ge=0)
    eval_interval: str | None = None
    checkpoint_interval: str | None = None
    device: str | None = None
    methods: list[MethodSpec] = Field(default_factory=list)

    @field_validator("plugins")
    @classmethod
    def _plugins_load(cls, value: dict[str, str]) -> dict[str, str]:
        check_plugins(value)  # before the workload and methods are looked up
        return value

    @field_validator("optimizer")
    @classmethod
    def _optimizer_exists(cls, value: str | None) -> str | None:
        if value is not None:
            optimizer_factory(value)
        return value

    @field_validator("budget")
    @classmethod
    def _budget_parses(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_budget(value))

    @field_validator("eval_interval", "checkpoint_interval")
    @classmethod
    def _interval_parses(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_amount(value, allow_fraction=True))

    @field_validator("methods", mode="before")
    @classmethod
    def _methods_parse(cls, value: Any) -> Any:
        return parse_methods(value) if isinstance(value, str) else value

    @field_validator("methods")
    @classmethod
    def _methods_build(cls, value: list[MethodSpec]) -> list[MethodSpec]:
        check_composition([build_method(spec) for spec in value])  # settings and conflicts, up front
        return value

    @field_validator("device")
    @classmethod
    def _device_exists(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            device = torch.device(value)
        except RuntimeError:
            raise ValueError(f"unknown device {value!r}; use cpu, cuda or cuda:N") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {value!r} asked for, but CUDA is not available on this machine")
        return value

    @model_validator(mode="after")
    def _fits_workload(self) -> RunSpec:
        workload = get_workload(self.workload)
        workload.resolve_options(self.options)
        kind = workload.kind(self.options)
        check_data_kind([build_method(m) for m in self.methods], kind, f"workload {self.workload!r}")
        return self

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed by this spec (the device may change)."""
        return self.model_dump(exclude={"device", "checkpoint_interval"})


def build_trainer(
    spec: RunSpec,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | Path | None = None,
) -> Trainer:
    """Load the workload's data, seed and build its model, and wire up a `Trainer`."""
    workload = get_workload(spec.workload)
    options = workload.resolve_options(spec.options)
    data = workload.data(options)
    device = resolve_device(spec.device)
    batch_size = spec.batch_size or workload.batch_size
    train, val, test = _loaders(workload, data, batch_size, spec.seed, device, int(options.get("workers", 0)))
    torch.manual_seed(spec.seed)
    model = workload.model(options, class_count(data))
    methods = [build_method(method) for method in spec.methods]
    return Trainer(
        model,
        train,
        optimizer=workload.make_optimizer(
            spec.lr, spec.weight_decay, optimizer_factory(spec.optimizer) if spec.optimizer else None
        ),
        budget=spec.budget or workload.budget,
        loss_fn=workload.loss,
        forward=workload.forward,
        data_kind=workload.kind(options),
        eval_data=test if val is None else val,
        test_data=None if val is None else test,
        metrics=[workload.metric, *workload.extra_metrics],
        eval_interval=spec.eval_interval or workload.eval_interval,
        callbacks=[*methods, *callbacks],
        seed=spec.seed,
        device=device,
        checkpoint_dir=checkpoint_dir,
        checkpoint_interval=spec.checkpoint_interval,
        fingerprint=spec.fingerprint(),
    )


def _loaders(
    workload: Workload, data: Splits | DatasetSplits, batch_size: int, seed: int, device: torch.device, workers: int
) -> tuple[Loader, Loader | None, Loader]:
    """(train, validation or None, test). In-memory tensors go to the device whole; datasets are decoded by
    `workers` processes."""
    eval_batch = max(batch_size, EVAL_BATCH)
    if isinstance(data, DatasetSplits):
        pin = device.type == "cuda"
        train = DatasetLoader(data.train, batch_size, seed=seed, num_workers=workers, pin_memory=pin)

        def judged(dataset: Dataset) -> Loader:
            return DatasetLoader(
                dataset, eval_batch, shuffle=False, drop_last=False, num_workers=workers, pin_memory=pin
            )

        return train, None if data.val is None else judged(data.val), judged(data.test)
    kind = workload.batch_type
    train = InMemoryLoader(data.train_inputs, data.train_targets, batch_size, seed=seed, device=device, batch_type=kind)

    def held(inputs: torch.Tensor, targets: torch.Tensor) -> Loader:
        return InMemoryLoader(
            inputs, targets, eval_batch, shuffle=False, drop_last=False, device=device, batch_type=kind
        )

    val = None if data.val_inputs is None or data.val_targets is None else held(data.val_inputs, data.val_targets)
    return train, val, held(data.test_inputs, data.test_targets)
