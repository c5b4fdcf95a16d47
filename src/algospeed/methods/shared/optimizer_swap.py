"""What the optimizer-replacing methods share: reading the base optimizer's settings, splitting
parameters into layer-wise and excluded groups, and swapping the optimizer at init."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from algospeed.core.state import OptimizerFactory, State
from algospeed.methods.optimization.lookahead import Lookahead, lookahead_factory

# Each of these replaces the optimizer, so any two of them cannot be combined (lookahead wraps any one).
OPTIMIZER_METHODS = frozenset({"lars", "lamb", "lion", "schedule_free"})


def optimizer_conflicts(name: str) -> frozenset[str]:
    """What the optimizer method `name` cannot be combined with: the other optimizer replacements."""
    return OPTIMIZER_METHODS - {name}


@dataclass(frozen=True)
class BaseOptimizer:
    """The run's optimizer before replacement: its family and the settings a replacement scales from.

    `kind` is "sgd" for SGD and "adaptive" for anything else (Adam, AdamW...), since good learning
    rates differ by orders of magnitude between the two families.
    """

    kind: str
    lr: float
    weight_decay: float

    @classmethod
    def of(cls, optimizer: torch.optim.Optimizer) -> BaseOptimizer:
        inner = optimizer.optimizer if isinstance(optimizer, Lookahead) else optimizer
        group = inner.param_groups[0]
        kind = "sgd" if isinstance(inner, torch.optim.SGD) else "adaptive"
        return cls(kind=kind, lr=float(group.get("initial_lr", group["lr"])), weight_decay=float(group["weight_decay"]))

    def scaled_lr(self, lr_scale: float | None, defaults: dict[str, float]) -> float:
        """The base learning rate times `lr_scale`, or times the default scale for this family."""
        return self.lr * (defaults[self.kind] if lr_scale is None else lr_scale)


def evaluate_closure(closure: Callable[[], float] | None) -> float | None:
    """The loss from an optimizer step's closure, computed with gradients enabled (None without one)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def check_positive(name: str, value: float | None, *, allow_zero: bool = False) -> None:
    """Raise ValueError unless `value` (when given) is positive (or zero, when allowed)."""
    if value is None:
        return
    if not (value >= 0 if allow_zero else value > 0) or value != value or value == float("inf"):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")


def check_beta(name: str, value: float) -> None:
    """Raise ValueError unless `value` lies in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")


def layerwise_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups for layer-wise adaptive optimizers (LARS, LAMB): weight matrices and
    convolution kernels get the trust ratio and weight decay; biases and normalization scales and
    shifts (parameters with at most one dimension) get neither, as is standard practice."""
    params = list(params)
    adapted = [p for p in params if p.dim() > 1]
    excluded = [p for p in params if p.dim() <= 1]
    groups: list[dict[str, Any]] = []
    if adapted:
        groups.append({"params": adapted, "weight_decay": weight_decay, "adapt": True})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "adapt": False})
    return groups


def replace_optimizer(state: State, factory: OptimizerFactory) -> None:
    """Make `factory` the run's optimizer factory and rebuild the optimizer with it, at init.

    If the optimizer is already wrapped in Lookahead (lookahead listed first), the new one is
    wrapped the same way, so the two compose in either order.
    """
    current = state.optimizer
    if isinstance(current, Lookahead):
        factory = lookahead_factory(factory, current.k, current.alpha)
    state.optimizer_factory = factory
    state.rebuild_optimizer()
