"""AdEMAMix: AdamW plus a second, very slow gradient EMA, mixed in with weight alpha, both warmed up over training."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    adam_scale,
    check_beta,
    check_positive,
    evaluate_closure,
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.methods.shared.schedules import check_fraction
from algospeed.taxonomy.axes import How, Place, What, When, Where

Progress = Callable[[], float]


def ademamix_schedule(progress: float, alpha: float, beta1: float, beta3: float, warmup: float) -> tuple[float, float]:
    """(alpha_t, beta3_t) at `progress` (the fraction of training done): alpha grows linearly from 0
    and beta3 from beta1 (linearly in its EMA's half-life: the paper's scheduler) until `warmup`,
    then both stay at their final values. The paper warms up over the whole run (warmup 1)."""
    u = 1.0 if warmup == 0 else min(progress / warmup, 1.0)
    log1, log3 = math.log(beta1), math.log(beta3)
    return alpha * u, math.exp(log1 * log3 / ((1 - u) * log3 + u * log1))


def check_ademamix_settings(betas: tuple[float, float, float], alpha: float, warmup: float, eps: float) -> None:
    """Raise ValueError for a setting AdEMAMix cannot run with."""
    for index, beta in enumerate(betas, start=1):
        check_beta(f"beta{index}", beta)
    if betas[0] == 0:
        raise ValueError("beta1 must be in (0, 1) for AdEMAMix (beta3's warmup starts from it), got 0")
    check_positive("alpha", alpha, allow_zero=True)
    check_fraction("warmup", warmup)
    check_positive("eps", eps)


class AdEMAMix(torch.optim.Optimizer):
    """Adaptive EMA Mixture (Pagliardini, Ablin and Grangier 2024, Algorithm 1). For each parameter
    W with gradient G at step t:

        m1 = beta1 m1 + (1 - beta1) G;  m2 = beta3_t m2 + (1 - beta3_t) G;  nu = beta2 nu + (1 - beta2) G^2
        W = W - lr ((m1 / (1 - beta1^t) + alpha_t m2) / (sqrt(nu / (1 - beta2^t)) + eps) + weight_decay W)

    (alpha_t, beta3_t) = `ademamix_schedule(progress(), ...)`, with `progress` a function giving the
    fraction of training done; without one, alpha and beta3 take their final values from the
    start (no warmup, as the reference code with its warmups unset).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        alpha: float = 2.0,
        warmup: float = 1.0,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        progress: Progress | None = None,
    ) -> None:
        check_positive("lr", lr)
        check_ademamix_settings(betas, alpha, warmup, eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        defaults = dict(lr=lr, betas=tuple(betas), alpha=alpha, warmup=warmup, eps=eps, weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.progress = progress

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        progress = 1.0 if self.progress is None else self.progress()
        for group in self.param_groups:
            beta1, beta2, beta3 = group["betas"]
            alpha, beta3 = ademamix_schedule(progress, group["alpha"], beta1, beta3, group["warmup"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, state = p.grad, self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg_fast"] = torch.zeros_like(p)
                    state["exp_avg_slow"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                fast, slow, second = state["exp_avg_fast"], state["exp_avg_slow"], state["exp_avg_sq"]
                fast.lerp_(grad, 1 - beta1)
                slow.lerp_(grad, 1 - beta3)
                second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (second / (1 - beta2**t)).sqrt_().add_(group["eps"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.sub_((fast / (1 - beta1**t)).add_(slow, alpha=alpha).div_(denominator), alpha=group["lr"])
        return loss


def ademamix(
    params: Any,
    lr: float,
    betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
    alpha: float = 2.0,
    warmup: float = 1.0,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    progress: Progress | None = None,
) -> AdEMAMix:
    """The plain function: AdEMAMix over `params`; pass `progress` (a function returning the fraction
    of training done) for the alpha and beta3 warmups."""
    return AdEMAMix(
        params, lr=lr, betas=betas, alpha=alpha, warmup=warmup, eps=eps, weight_decay=weight_decay, progress=progress
    )


@register("ademamix")
class AdEMAMixMethod(Method):
    """Replace the optimizer by AdEMAMix: AdamW whose numerator adds alpha times a very slow gradient EMA (beta3).

    Place: optimization / replace (the optimizer) / fewer steps / throughout. The slow EMA's
    weight alpha and its beta3 are warmed up (alpha linearly from 0, beta3 from beta1 linearly in
    half-life) over the first `warmup` of the run's progress, the whole run by default as in the
    paper, so any budget rescales the warmups. The learning rate, `effective_lr`, is AdamW's
    scale: the base's times `lr_scale` (by default 1 over Adam-family optimizers, 0.1 over SGD);
    unless given, decoupled weight decay (`effective_weight_decay`) keeps lr x decay at the base's.
    `alpha` defaults to the reference code's 2 (its example for LLMs uses 8).

    Helps: long runs, where gradients from thousands of steps back still help: in the reference a
    1.3B-parameter language model trained on 101B tokens with AdEMAMix matches AdamW trained on
    197B tokens (about 95% more), and models forget their training data more slowly; a later,
    unofficial AlgoPerf scoring placed it ahead of NAdamW.

    Hurts: one more moment buffer than AdamW (memory), three extra hyperparameters; on short
    budgets the slow EMA barely warms up, so it behaves like AdamW; without its warmups large
    alpha and beta3 destabilize early training.

    Reference: Pagliardini, Ablin and Grangier, 2024, "The AdEMAMix Optimizer: Better, Faster,
    Older", arXiv 2409.03137.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("ademamix")

    def __init__(
        self,
        lr_scale: float | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        beta3: float = 0.9999,
        alpha: float = 2.0,
        warmup: float = 1.0,
        eps: float = 1e-8,
        weight_decay: float | None = None,
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_ademamix_settings((beta1, beta2, beta3), alpha, warmup, eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.betas, self.alpha, self.warmup = lr_scale, (beta1, beta2, beta3), alpha, warmup
        self.eps, self.weight_decay = eps, weight_decay
        self.effective_lr: float | None = None
        self.effective_weight_decay: float | None = None

    def on_init(self, state: State) -> None:
        lr, decay = adam_scale(state, self.lr_scale, self.weight_decay)
        self.effective_lr, self.effective_weight_decay = lr, decay
        betas, alpha, warmup, eps = self.betas, self.alpha, self.warmup, self.eps

        def build(params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            return ademamix(params, lr, betas, alpha, warmup, eps, decay, progress=lambda: state.progress)

        replace_optimizer(state, build)
