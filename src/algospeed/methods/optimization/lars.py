"""LARS: SGD with momentum whose step for each layer is scaled by a trust ratio ||w|| / ||g||."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    BaseOptimizer,
    check_beta,
    check_positive,
    evaluate_closure,
    layerwise_groups,
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman and Ginsburg 2017, Algorithm 1).

    For each parameter tensor w with gradient g, in a group with `adapt` true:

        local_lr = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w||)   (1 if a norm is 0)
        v = momentum * v + lr * local_lr * (g + weight_decay * w)
        w = w - v

    Groups with `adapt` false (by convention biases and normalization parameters, see
    `layerwise_groups`) use local_lr = 1: plain SGD with momentum.
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        adapt: bool = True,
    ) -> None:
        check_positive("lr", lr)
        check_beta("momentum", momentum)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_positive("trust_coefficient", trust_coefficient)
        defaults = dict(
            lr=lr, momentum=momentum, weight_decay=weight_decay, trust_coefficient=trust_coefficient, adapt=adapt
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            decay, momentum = group["weight_decay"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=decay) if decay else p.grad.clone()
                local_lr = 1.0
                if group["adapt"]:
                    local_lr = trust_ratio(p, p.grad, decay, group["trust_coefficient"])
                buffer = self.state[p].get("momentum_buffer")
                if buffer is None:
                    buffer = self.state[p]["momentum_buffer"] = torch.zeros_like(p)
                buffer.mul_(momentum).add_(update.mul_(local_lr), alpha=group["lr"])
                p.sub_(buffer)
        return loss


def trust_ratio(weight: torch.Tensor, grad: torch.Tensor, weight_decay: float, coefficient: float) -> torch.Tensor:
    """LARS's local learning rate eta * ||w|| / (||g|| + beta * ||w||), or 1 where either norm is zero."""
    w_norm, g_norm = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(grad)
    ratio = coefficient * w_norm / (g_norm + weight_decay * w_norm)
    return torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))


def lars(
    params: Any, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 0.001
) -> LARS:
    """The plain function: LARS over `params`, biases and normalization parameters excluded from the
    trust ratio and weight decay."""
    return LARS(
        layerwise_groups(list(params), weight_decay), lr=lr, momentum=momentum, trust_coefficient=trust_coefficient
    )


@register("lars")
class LARSMethod(Method):
    """Replace the optimizer by LARS: SGD with momentum and a per-layer trust ratio eta * ||w|| / ||g||.

    Place: optimization / replace (the optimizer) / fewer steps / throughout. The learning rate is
    the base optimizer's times `lr_scale` (by default 100 over SGD, 1000 over Adam-family
    optimizers: the trust coefficient 0.001 shrinks every layer's step); weight decay is the base's
    unless given. Biases and normalization parameters get plain momentum SGD without weight decay.

    Helps: large-batch training (the reference trains AlexNet and ResNet-50 at batch sizes of 8K to
    32K without accuracy loss), where one global learning rate is too large for some layers and
    too small for others, so that fewer, larger steps suffice.

    Hurts: at ordinary batch sizes it rarely beats tuned momentum SGD, and its learning rate lives
    on another scale (needs retuning); the per-layer norms cost a little per step.

    Reference: You, Gitman and Ginsburg, 2017, "Large Batch Training of Convolutional Networks",
    arXiv 1708.03888.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("lars")
    DEFAULT_SCALE: ClassVar[dict[str, float]] = {"sgd": 100.0, "adaptive": 1000.0}

    def __init__(
        self,
        lr_scale: float | None = None,
        momentum: float = 0.9,
        weight_decay: float | None = None,
        trust_coefficient: float = 0.001,
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_beta("momentum", momentum)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        check_positive("trust_coefficient", trust_coefficient)
        self.lr_scale, self.momentum = lr_scale, momentum
        self.weight_decay, self.trust_coefficient = weight_decay, trust_coefficient

    def on_init(self, state: State) -> None:
        base = BaseOptimizer.of(state.optimizer)
        lr = base.scaled_lr(self.lr_scale, self.DEFAULT_SCALE)
        decay = base.weight_decay if self.weight_decay is None else self.weight_decay
        momentum, coefficient = self.momentum, self.trust_coefficient
        replace_optimizer(state, lambda params: lars(params, lr, momentum, decay, coefficient))
