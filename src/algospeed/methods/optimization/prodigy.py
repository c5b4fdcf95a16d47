"""Prodigy: Adam whose step size d is estimated on the fly from the distance travelled: no learning rate to tune."""

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
from algospeed.taxonomy.axes import How, Place, What, When, Where


def check_prodigy_settings(
    lr: float, betas: tuple[float, float], beta3: float | None, d0: float, d_coef: float, growth_rate: float
) -> None:
    """Raise ValueError for a setting Prodigy cannot run with."""
    check_positive("lr", lr)
    check_beta("beta1", betas[0])
    check_beta("beta2", betas[1])
    if beta3 is not None:
        check_beta("beta3", beta3)
    check_positive("d0", d0)
    check_positive("d_coef", d_coef)
    if not growth_rate >= 1:
        raise ValueError(f"growth_rate must be at least 1 (inf for no limit), got {growth_rate}")


class Prodigy(torch.optim.Optimizer):
    """Prodigy with Adam (Mishchenko and Defazio 2023; the authors' reference implementation). With
    schedule multiplier lr (1 by default), step k and the estimate d (from d0):

        dlr = d lr (times sqrt(1 - beta2^(k+1)) / (1 - beta1^(k+1)) with `use_bias_correction`)
        r = beta3 r + (d / d0) dlr sum <g, x0 - x>;   s = beta3 s + (d / d0) dlr g  (d instead of dlr
        with `safeguard_warmup`);   d = min(max(d, d_coef r / ||s||_1), growth_rate d)
        m = beta1 m + (1 - beta1) d g;  v = beta2 v + (1 - beta2) d^2 g^2
        x = (1 - weight_decay dlr) x - dlr m / (sqrt(v) + d eps)

    x0 are the parameters at their first step and beta3 defaults to sqrt(beta2). d is shared by
    all parameters and kept, with r and k, in the first parameter group (so it is in `state_dict`);
    `d` and `effective_lr` read it.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
    ) -> None:
        check_prodigy_settings(lr, betas, beta3, d0, d_coef, growth_rate)
        check_positive("eps", eps)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            beta3=beta3,
            eps=eps,
            weight_decay=weight_decay,
            d=d0,
            d0=d0,
            d_max=d0,
            d_numerator=0.0,
            d_coef=d_coef,
            k=0,
            dlr=0.0,
            growth_rate=growth_rate,
            use_bias_correction=use_bias_correction,
            safeguard_warmup=safeguard_warmup,
        )
        super().__init__(params, defaults)

    @property
    def d(self) -> float:
        """The current estimate of the distance to the solution: the step size's scale."""
        return float(self.param_groups[0]["d"])

    @property
    def effective_lr(self) -> float:
        """The step size the next step takes (d times the scheduled lr), Adam's learning rate in effect."""
        return self.d * float(self.param_groups[0]["lr"])

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        beta3 = math.sqrt(beta2) if first["beta3"] is None else first["beta3"]
        d, d0, k = first["d"], first["d0"], first["k"]
        lr = max(group["lr"] for group in self.param_groups)
        correction = math.sqrt(1 - beta2 ** (k + 1)) / (1 - beta1 ** (k + 1)) if first["use_bias_correction"] else 1.0
        dlr = d * lr * correction
        numerator, denominator = first["d_numerator"] * beta3, 0.0
        stepped = [
            (p, group) for group in self.param_groups if group["lr"] > 0 for p in group["params"] if p.grad is not None
        ]
        if lr > 0 and stepped:
            delta, norms = [], []
            for p, _ in stepped:
                state = self.state[p]
                if not state:
                    state["s"] = torch.zeros_like(p)
                    state["p0"] = p.detach().clone()
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                grad = p.grad
                delta.append(torch.dot(grad.flatten(), (state["p0"] - p).flatten()))
                state["exp_avg"].mul_(beta1).add_(grad, alpha=d * (1 - beta1))
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=d * d * (1 - beta2))
                s = state["s"].mul_(beta3).add_(grad, alpha=(d / d0) * (d if first["safeguard_warmup"] else dlr))
                norms.append(s.abs().sum())
            numerator += (d / d0) * dlr * torch.stack(delta).sum().item()
            denominator = torch.stack(norms).sum().item()
        if denominator == 0:  # no gradient, or a zero learning rate: nothing to learn d from, no step
            for group in self.param_groups:
                group["dlr"] = 0.0
            return loss
        d_hat = first["d_coef"] * numerator / denominator
        if d == d0:
            d = max(d, d_hat)
        d_max = max(first["d_max"], d_hat)
        d = min(d_max, d * first["growth_rate"])
        for group in self.param_groups:
            group.update(d=d, d_max=d_max, d_numerator=numerator, k=k + 1, dlr=dlr)
        for p, group in stepped:
            state = self.state[p]
            if group["weight_decay"]:
                p.mul_(1 - group["weight_decay"] * dlr)
            p.addcdiv_(state["exp_avg"], state["exp_avg_sq"].sqrt().add_(d * group["eps"]), value=-dlr)
        return loss


def prodigy(
    params: Any,
    lr: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    beta3: float | None = None,
    weight_decay: float = 0.0,
    d0: float = 1e-6,
    d_coef: float = 1.0,
    growth_rate: float = math.inf,
    safeguard_warmup: bool = False,
) -> Prodigy:
    """The plain function: Prodigy over `params`; keep `lr` at 1 (or a schedule's multiplier) and
    read the learned step size from `.d` / `.effective_lr`."""
    return Prodigy(
        params,
        lr=lr,
        betas=betas,
        beta3=beta3,
        weight_decay=weight_decay,
        d0=d0,
        d_coef=d_coef,
        growth_rate=growth_rate,
        safeguard_warmup=safeguard_warmup,
    )


@register("prodigy")
class ProdigyMethod(Method):
    """Replace the optimizer by Prodigy: Adam whose learning rate is estimated during training (learning-rate free).

    Place: optimization / replace (the optimizer) / fewer steps / throughout. The base learning
    rate is ignored: Prodigy's lr is `lr` (1, as the authors recommend) times the run's schedule,
    and its step size is d times that, d a running lower bound on the distance to the solution
    (start `d0`, scaled by `d_coef`, growing at most by `growth_rate` per step). The current
    estimate is readable as `d` and the step size in effect as `effective_lr` (both refreshed at
    fit start and after each step; also on the optimizer). `safeguard_warmup` (on by default, as
    the authors advise with a warmup, which the default schedule has) keeps the warmup's small
    rates out of the estimate. Unless given, weight decay (decoupled, times d lr) is the base's
    AdamW-scale decay.

    Helps: no learning rate to tune, which is where most tuning budget goes: in the reference it
    reaches test accuracy close to hand-tuned Adam across logistic regression, CIFAR-10 CNNs,
    ImageNet ViT, LSTM translation, DLRM, MRI reconstruction and transformer language models, and
    consistently improves on D-Adaptation.

    Hurts: a tuned Adam can still be better; d can overshoot early (growth_rate caps it) or stall
    when the first steps make little progress; one more buffer (the initial weights x0) and one
    more accumulator than Adam, and two device-to-host reads per step.

    Reference: Mishchenko and Defazio, 2023, "Prodigy: An Expeditiously Adaptive Parameter-Free
    Learner", arXiv 2306.06101.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("prodigy")

    def __init__(
        self,
        lr: float = 1.0,
        beta1: float = 0.9,
        beta2: float = 0.999,
        beta3: float | None = None,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = math.inf,
        safeguard_warmup: bool = True,
        weight_decay: float | None = None,
    ) -> None:
        check_prodigy_settings(lr, (beta1, beta2), beta3, d0, d_coef, growth_rate)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr, self.betas, self.beta3, self.d0, self.d_coef = lr, (beta1, beta2), beta3, d0, d_coef
        self.growth_rate, self.safeguard_warmup, self.weight_decay = growth_rate, safeguard_warmup, weight_decay
        self.effective_weight_decay: float | None = None
        self.d: float | None = None
        self.effective_lr: float | None = None

    def on_init(self, state: State) -> None:
        _, decay = adam_scale(state, None, self.weight_decay)
        self.effective_weight_decay = decay
        lr, betas, beta3, d0, d_coef = self.lr, self.betas, self.beta3, self.d0, self.d_coef
        growth, safeguard = self.growth_rate, self.safeguard_warmup
        replace_optimizer(state, lambda params: prodigy(params, lr, betas, beta3, decay, d0, d_coef, growth, safeguard))

    def on_fit_start(self, state: State) -> None:
        self._read(state)

    def on_after_optimizer_step(self, state: State) -> None:
        self._read(state)

    def _read(self, state: State) -> None:
        group = state.optimizer.param_groups[0]
        self.d = float(group["d"])
        self.effective_lr = self.d * float(group["lr"])
