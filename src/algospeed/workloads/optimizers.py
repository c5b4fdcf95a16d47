"""Optimizer factories: how a workload (or an arm) builds its optimizer from the parameters, a learning
rate and a weight decay. Named, so that a study can choose one per arm and a report can say which."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from algospeed.errors import UsageError

Build = Callable[[Sequence[nn.Parameter], float, float], torch.optim.Optimizer]


@dataclass(frozen=True)
class OptimizerFactory:
    """`factory(params, lr, weight_decay)` builds the optimizer; `name` is how studies and reports refer to it."""

    name: str
    build: Build

    def __call__(self, params: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return self.build(list(params), lr, weight_decay)


def _sgd(params: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _adamw(params: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


SGD_NESTEROV = OptimizerFactory("sgd", _sgd)
ADAMW = OptimizerFactory("adamw", _adamw)
OPTIMIZERS = {factory.name: factory for factory in (SGD_NESTEROV, ADAMW)}


def optimizer_factory(name: str) -> OptimizerFactory:
    """The factory called `name`; an unknown one is a usage error listing the valid ones."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise UsageError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(OPTIMIZERS)}") from None
