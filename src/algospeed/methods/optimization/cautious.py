"""Cautious optimizers: apply only the update components whose sign agrees with the current gradient, rescaled."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import OptimizerFactory, State
from algospeed.errors import UsageError
from algospeed.methods.optimization.ademamix import AdEMAMix
from algospeed.methods.optimization.lion import Lion
from algospeed.methods.optimization.lookahead import Lookahead
from algospeed.methods.optimization.prodigy import Prodigy
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import OPTIMIZER_METHODS, check_positive, evaluate_closure
from algospeed.taxonomy.axes import How, Place, What, When, Where

# The optimizers a cautious mask is defined over: Adam's family and Lion.
CAUTIOUS_BASES = (torch.optim.Adam, torch.optim.AdamW, torch.optim.NAdam, torch.optim.RAdam, Lion, AdEMAMix, Prodigy)


def decay_factor(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> float:
    """f such that `optimizer`'s last step set W = f W_before + update: its decoupled weight decay's
    factor, or 1 where decay is an L2 term in the gradient (torch Adam), which is then masked with
    the rest of the update."""
    if isinstance(optimizer, Prodigy):
        return 1 - group["weight_decay"] * group["dlr"]
    decoupled = isinstance(optimizer, (torch.optim.AdamW, Lion, AdEMAMix)) or group.get("decoupled_weight_decay")
    return 1 - group["lr"] * group["weight_decay"] if decoupled else 1.0


class Cautious(torch.optim.Optimizer):
    """Wraps an Adam-family or Lion optimizer (Liang et al. 2024, Algorithm 1). Per tensor W with
    gradient g, the inner step's update u (W = f W - u, f its decoupled weight decay) becomes

        mask = (u * g > 0);   W = f W - u * mask / (mean(mask) + eps)

    so that only components moving against the gradient are taken, rescaled to keep the update's
    size; the inner optimizer's moments are its own, unmasked. It shares the inner optimizer's
    `param_groups`, `state` and `state_dict` (a checkpoint is the same with or without it).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, eps: float = 1e-3) -> None:
        # The base class's constructor would copy the parameter groups; this wrapper shares them.
        if not isinstance(optimizer, CAUTIOUS_BASES):
            names = ", ".join(kind.__name__ for kind in CAUTIOUS_BASES)
            kind = type(optimizer).__name__
            raise ValueError(f"a cautious mask needs an Adam-family or Lion optimizer ({names}), got {kind}")
        check_positive("eps", eps)
        self.optimizer, self.eps = optimizer, eps

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        loss = evaluate_closure(closure)
        stepped = [(p, group) for group in self.param_groups for p in group["params"] if p.grad is not None]
        before = [p.detach().clone() for p, _ in stepped]
        self.optimizer.step()
        for (p, group), start in zip(stepped, before, strict=True):
            kept = start.mul_(decay_factor(self.optimizer, group))  # f W_before
            update = p - kept  # -u
            mask = (update * p.grad < 0).to(update.dtype)
            p.copy_(kept.add_(update.mul_(mask).div_(mask.mean() + self.eps)))
        return loss

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.optimizer.load_state_dict(state_dict)

    def __repr__(self) -> str:
        return f"Cautious(eps={self.eps}, {self.optimizer!r})"


def cautious(optimizer: torch.optim.Optimizer, eps: float = 1e-3) -> torch.optim.Optimizer:
    """The plain function: make `optimizer` cautious; inside a Lookahead wrapper, the inner optimizer
    is wrapped (the mask applies to the fast steps, not to the slow weights' pull)."""
    if isinstance(optimizer, Lookahead):
        optimizer.optimizer = cautious(optimizer.optimizer, eps)
        return optimizer
    return optimizer if isinstance(optimizer, Cautious) else Cautious(optimizer, eps)


def cautious_factory(inner: OptimizerFactory, eps: float) -> OptimizerFactory:
    """A factory that builds `inner`'s optimizer made cautious."""

    def build(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return cautious(inner(params), eps)

    return build


@register("cautious")
class CautiousMethod(Method):
    """Make the optimizer cautious: drop update components whose sign disagrees with the gradient, rescale the rest.

    Place: optimization / replace (the optimizer's update, by a masked one) / fewer steps /
    throughout. It acts at fit start on whatever optimizer the run then has, so its place in the
    method list does not matter: `cautious` alone makes the run's AdamW C-AdamW, and with lion,
    ademamix or prodigy (listed before or after) it masks theirs; with lookahead it goes inside
    (the mask applies to the fast steps). Per tensor, the kept components are scaled by 1 /
    (fraction kept + `eps`). Only Adam-family optimizers (Adam, AdamW, NAdam, RAdam, ademamix,
    prodigy) and Lion are made cautious: muon, normuon, shampoo, soap, lars, lamb and
    schedule_free are refused up front, and any other optimizer (SGD) at fit start. The base
    optimizer's learning rate and other hyperparameters are kept, as the reference does.

    Helps: in the reference, up to 1.47x faster LLaMA and MAE pre-training than AdamW and Lion
    with the same hyperparameters, for the cost of an elementwise mask per step; the authors prove
    the masked update keeps the base optimizer's convergence guarantees.

    Hurts: this wrapper recovers the update from the weights, so each step copies the weights
    once and makes a few elementwise passes; where momentum and gradient mostly disagree, the
    few components kept take steps enlarged by up to 1 / `eps`.

    Reference: Liang, Chen, Liu and Liu, 2024, "Cautious Optimizers: Improving Training with One
    Line of Code", arXiv 2411.16085.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = OPTIMIZER_METHODS - {"lion", "ademamix", "prodigy"}

    def __init__(self, eps: float = 1e-3) -> None:
        check_positive("eps", eps)
        self.eps = eps

    def on_fit_start(self, state: State) -> None:
        inner = state.optimizer.optimizer if isinstance(state.optimizer, Lookahead) else state.optimizer
        if isinstance(inner, Cautious):
            return
        try:
            state.optimizer = cautious(state.optimizer, self.eps)
        except ValueError as error:
            raise UsageError(f"method 'cautious': {error}; train with AdamW or add lion, ademamix or prodigy") from None
        if state.optimizer_factory is not None:
            state.optimizer_factory = cautious_factory(state.optimizer_factory, self.eps)
