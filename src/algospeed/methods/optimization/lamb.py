"""LAMB: Adam's update with decoupled weight decay, rescaled per layer by the trust ratio ||w|| / ||update||."""

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


class LAMB(torch.optim.Optimizer):
    """Layer-wise Adaptive Moments for Batch training (You et al. 2020, Algorithm 2).

    For each parameter tensor w with gradient g, at step t:

        m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
        r = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
        u = r + weight_decay * w
        w = w - lr * (||w|| / ||u||) * u      (ratio 1 where a norm is zero, or in groups with `adapt` false)
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        adapt: bool = True,
    ) -> None:
        check_positive("lr", lr)
        check_beta("beta1", betas[0])
        check_beta("beta2", betas[1])
        check_positive("eps", eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, adapt=adapt))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                denominator = (exp_avg_sq / (1 - beta2**t)).sqrt_().add_(group["eps"])
                update = (exp_avg / (1 - beta1**t)).div_(denominator)
                if group["weight_decay"]:
                    update.add_(p, alpha=group["weight_decay"])
                ratio = lamb_trust_ratio(p, update) if group["adapt"] else 1.0
                p.sub_(update.mul_(ratio), alpha=group["lr"])
        return loss


def lamb_trust_ratio(weight: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """||w|| / ||u||, or 1 where either norm is zero (a zero-initialized bias, a zero update)."""
    w_norm, u_norm = torch.linalg.vector_norm(weight), torch.linalg.vector_norm(update)
    return torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))


def lamb(
    params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0
) -> LAMB:
    """The plain function: LAMB over `params`, biases and normalization parameters excluded from the
    trust ratio and weight decay."""
    return LAMB(layerwise_groups(list(params), weight_decay), lr=lr, betas=betas, eps=eps)


@register("lamb")
class LAMBMethod(Method):
    """Replace the optimizer by LAMB: Adam with decoupled weight decay and a per-layer trust ratio ||w|| / ||u||.

    Place: optimization / replace (the optimizer) / fewer steps / throughout. The learning rate is
    the base optimizer's times `lr_scale` (by default 0.5 over SGD, 5 over Adam-family optimizers,
    since with the trust ratio each layer moves by about lr times its norm per step); weight decay
    is the base's unless given. Biases and normalization parameters get Adam steps without the
    trust ratio or weight decay.

    Helps: large-batch training, notably of transformers (BERT pre-training in 76 minutes at batch
    size 32K in the reference), where Adam's per-layer step sizes become badly balanced; fewer,
    larger steps reach the same quality.

    Hurts: at small batch sizes it is usually no better than AdamW and needs its own learning rate;
    a layer whose weights are tiny takes tiny steps, which can slow early training.

    Reference: You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer and Hsieh, 2020,
    "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020, arXiv 1904.00962.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("lamb")
    DEFAULT_SCALE: ClassVar[dict[str, float]] = {"sgd": 0.5, "adaptive": 5.0}

    def __init__(
        self,
        lr_scale: float | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-6,
        weight_decay: float | None = None,
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_beta("beta1", beta1)
        check_beta("beta2", beta2)
        check_positive("eps", eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.betas, self.eps, self.weight_decay = lr_scale, (beta1, beta2), eps, weight_decay

    def on_init(self, state: State) -> None:
        base = BaseOptimizer.of(state.optimizer)
        lr = base.scaled_lr(self.lr_scale, self.DEFAULT_SCALE)
        decay = base.weight_decay if self.weight_decay is None else self.weight_decay
        betas, eps = self.betas, self.eps
        replace_optimizer(state, lambda params: lamb(params, lr, betas, eps, decay))
