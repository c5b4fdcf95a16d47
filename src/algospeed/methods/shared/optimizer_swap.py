"""What the optimizer-replacing methods share: reading the base optimizer's settings, splitting
parameters into layer-wise and excluded groups, stepping several optimizers as one, and swapping
the optimizer at init."""

from __future__ import annotations

from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from algospeed.core.state import OptimizerFactory, State
from algospeed.methods.optimization.lookahead import Lookahead, lookahead_factory

# Each of these replaces the optimizer, so any two of them cannot be combined (lookahead wraps any one).
OPTIMIZER_METHODS = frozenset(
    {"lars", "lamb", "lion", "schedule_free", "muon", "normuon", "shampoo", "soap", "ademamix", "prodigy"}
)

# Base-rate multipliers that give an AdamW-scale learning rate: 1 over Adam-family optimizers, and
# over SGD (whose rates are one to two orders of magnitude larger) the factor that takes the
# embedded workloads' SGD rates (0.05, 0.1) to AdamW rates that train them well.
ADAM_SCALE: dict[str, float] = {"sgd": 0.1, "adaptive": 1.0}


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

    def decay_for(self, lr: float) -> float:
        """The decoupled weight decay that keeps lr x decay (the weights' shrinkage per step) at the
        base's, for a replacement running at learning rate `lr`."""
        return self.lr * self.weight_decay / lr


def adam_scale(state: State, lr_scale: float | None, weight_decay: float | None) -> tuple[float, float]:
    """(learning rate, decoupled weight decay) for a replacement that steps at AdamW's scale: the
    base's rate times `lr_scale` (default `ADAM_SCALE` for its family) and, unless given, the decay
    that keeps lr x decay at the base's."""
    base = BaseOptimizer.of(state.optimizer)
    lr = base.scaled_lr(lr_scale, ADAM_SCALE)
    return lr, base.decay_for(lr) if weight_decay is None else weight_decay


def evaluate_closure(closure: Callable[[], float] | None) -> float | None:
    """The loss from an optimizer step's closure, computed with gradients enabled (None without one)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class ParameterwiseOptimizer(torch.optim.Optimizer):
    """An optimizer whose step updates each parameter with a gradient on its own (`_update`), as Shampoo's and
    SOAP's preconditioners do; the closure, if any, is evaluated with gradients on first."""

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        raise NotImplementedError


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


class CombinedOptimizer(torch.optim.Optimizer):
    """Optimizers over disjoint parameters, stepped as one (Muon for hidden matrices, AdamW for the rest).

    `param_groups` lists every part's groups (the same dicts, so a learning-rate schedule reaches
    them all), `state` reads and writes each parameter's state in the part that holds it, and
    `state_dict` holds every part's, by name, so a run resumes exactly.
    """

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        # The base class's constructor would copy the parameter groups; this wrapper shares them.
        if not parts:
            raise ValueError("a combined optimizer needs at least one part")
        self.parts = parts

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [group for part in self.parts.values() for group in part.param_groups]

    @property
    def state(self) -> PartStates:  # type: ignore[override]
        return PartStates(list(self.parts.values()))

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return {name: part.defaults for name, part in self.parts.items()}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts.values():
            part.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for part in self.parts.values():
            part.step()
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {name: part.state_dict() for name, part in self.parts.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        if set(state_dict) != set(self.parts):
            raise ValueError(f"optimizer state holds parts {sorted(state_dict)}, this optimizer {sorted(self.parts)}")
        for name, part in self.parts.items():
            part.load_state_dict(state_dict[name])

    def __repr__(self) -> str:
        return "CombinedOptimizer(" + ", ".join(f"{name}={part!r}" for name, part in self.parts.items()) + ")"


class PartStates(MutableMapping):
    """A combined optimizer's per-parameter state: each key lives in the part whose groups hold it."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = parts

    def _owner(self, param: Any) -> torch.optim.Optimizer:
        """The part holding state for `param`, else the part whose groups hold it (a parameter
        already taken out of the groups, as layer freezing does, still has its state found)."""
        for part in self.parts:
            if param in part.state:
                return part
        for part in self.parts:
            if any(p is param for group in part.param_groups for p in group["params"]):
                return part
        raise KeyError(param)

    def __getitem__(self, param: Any) -> Any:
        return self._owner(param).state[param]

    def __setitem__(self, param: Any, value: Any) -> None:
        self._owner(param).state[param] = value

    def __delitem__(self, param: Any) -> None:
        del self._owner(param).state[param]

    def __iter__(self) -> Iterator[Any]:
        return (param for part in self.parts for param in part.state)

    def __len__(self) -> int:
        return sum(len(part.state) for part in self.parts)


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
