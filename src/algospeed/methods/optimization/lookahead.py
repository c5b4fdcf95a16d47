"""Lookahead: an inner optimizer takes k fast steps, then slow weights move part of the way towards them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import OptimizerFactory, State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


class Lookahead(torch.optim.Optimizer):
    """Wraps `optimizer`: after every `k` of its steps, slow += alpha * (fast - slow) and fast = slow.

    The wrapper shares the inner optimizer's `param_groups` (so learning-rate schedules reach it)
    and its `state_dict` holds the inner optimizer's state, the slow weights and the step counter,
    so a run resumes exactly. The slow weights start as the parameters' values at construction.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        # The base class's constructor would copy the parameter groups; this wrapper shares them.
        if k < 1:
            raise ValueError(f"lookahead k must be at least 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"lookahead alpha must be in (0, 1], got {alpha}")
        self.optimizer = optimizer
        self.k, self.alpha = k, alpha
        self.steps = 0
        self.slow = [p.detach().clone() for p in self._params()]

    # Delegated to the inner optimizer.
    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    def _params(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)
        self.slow.extend(p.detach().clone() for p in param_group["params"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        loss = self.optimizer.step(closure)
        self.steps += 1
        if self.steps % self.k == 0:
            for fast, slow in zip(self._params(), self.slow, strict=True):
                slow.add_(fast - slow, alpha=self.alpha)
                fast.copy_(slow)
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {
            "inner": self.optimizer.state_dict(),
            "lookahead": {"k": self.k, "alpha": self.alpha, "steps": self.steps, "slow": list(self.slow)},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        saved = state_dict["lookahead"]
        if len(saved["slow"]) != len(self.slow):
            raise ValueError(
                f"lookahead state holds {len(saved['slow'])} slow weights, this optimizer {len(self.slow)}"
            )
        self.optimizer.load_state_dict(state_dict["inner"])
        with torch.no_grad():
            for slow, value in zip(self.slow, saved["slow"], strict=True):
                if slow.shape != value.shape:
                    raise ValueError(f"lookahead slow weight of shape {tuple(value.shape)} for {tuple(slow.shape)}")
                slow.copy_(value)
        self.k, self.alpha, self.steps = int(saved["k"]), float(saved["alpha"]), int(saved["steps"])

    def __repr__(self) -> str:
        return f"Lookahead(k={self.k}, alpha={self.alpha}, {self.optimizer!r})"


def lookahead(optimizer: torch.optim.Optimizer, k: int = 5, alpha: float = 0.5) -> Lookahead:
    """The plain function: wrap any optimizer in Lookahead."""
    return Lookahead(optimizer, k=k, alpha=alpha)


def lookahead_factory(inner: OptimizerFactory, k: int, alpha: float) -> OptimizerFactory:
    """A factory that builds `inner`'s optimizer wrapped in Lookahead."""

    def build(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return Lookahead(inner(params), k=k, alpha=alpha)

    return build


@register("lookahead")
class LookaheadMethod(Method):
    """Wrap the optimizer in Lookahead: every `k` steps, move slow weights `alpha` of the way to the fast ones.

    Place: optimization / add (a slow-weight average on top of any optimizer) / fewer steps /
    throughout. It composes with the other optimizer replacements (lars, lamb, lion) in either
    order in the method list: whichever comes first, the result is Lookahead around the replacement.
    Evaluation uses the model's current (fast) weights, as the step leaves them.

    Helps: it lowers the variance of the inner optimizer's trajectory and makes it less sensitive to
    its learning rate and other hyperparameters, at the cost of one extra copy of the weights;
    reported gains in the reference on CIFAR, ImageNet, language modelling and translation.

    Hurts: on short budgets the slow weights lag behind (each sync keeps only `alpha` of the k
    fast steps), so progress per step can be slower; it needs the memory of a second set of
    weights. It conflicts with schedule-free training, whose iterates are already an average.

    Reference: Zhang, Lucas, Hinton and Ba, 2019, "Lookahead Optimizer: k steps forward, 1 step
    back", NeurIPS 2019, arXiv 1907.08610.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    search_space = {"alpha": {"linear": [0.3, 0.8]}}  # noqa: RUF012 (read-only class data, typed on Method)
    conflicts = frozenset({"schedule_free"})

    def __init__(self, k: int = 5, alpha: float = 0.5) -> None:
        if k < 1:
            raise ValueError(f"k (fast steps per slow step) must be at least 1, got {k}")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha (the slow weights' step) must be in (0, 1], got {alpha}")
        self.k, self.alpha = k, alpha

    def on_init(self, state: State) -> None:
        if state.optimizer_factory is None:
            state.optimizer = Lookahead(state.optimizer, k=self.k, alpha=self.alpha)
            return
        state.optimizer_factory = lookahead_factory(state.optimizer_factory, self.k, self.alpha)
        state.rebuild_optimizer()
