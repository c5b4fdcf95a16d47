"""Lion: step by the sign of an interpolation of momentum and gradient, with decoupled weight decay."""

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
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where


class Lion(torch.optim.Optimizer):
    """EvoLved Sign Momentum (Chen et al. 2023, Program 1). For each parameter w with gradient g:

        c = beta1 * m + (1 - beta1) * g
        w = w - lr * (sign(c) + weight_decay * w)
        m = beta2 * m + (1 - beta2) * g

    Every coordinate moves by exactly lr (plus decay), so the learning rate is typically 3-10x
    smaller than AdamW's and the weight decay 3-10x larger.
    """

    def __init__(
        self, params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0
    ) -> None:
        check_positive("lr", lr)
        check_beta("beta1", betas[0])
        check_beta("beta2", betas[1])
        check_positive("weight_decay", weight_decay, allow_zero=True)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, decay = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                exp_avg = self.state[p].get("exp_avg")
                if exp_avg is None:
                    exp_avg = self.state[p]["exp_avg"] = torch.zeros_like(p)
                direction = torch.lerp(p.grad, exp_avg, beta1).sign_()  # beta1 * m + (1 - beta1) * g
                if decay:
                    p.mul_(1 - lr * decay)
                p.sub_(direction, alpha=lr)
                exp_avg.lerp_(p.grad, 1 - beta2)  # beta2 * m + (1 - beta2) * g
        return loss


def lion(params: Any, lr: float, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0) -> Lion:
    """The plain function: Lion over `params`."""
    return Lion(params, lr=lr, betas=betas, weight_decay=weight_decay)


@register("lion")
class LionMethod(Method):
    """Replace the optimizer by Lion: step every weight by lr times the sign of interpolated momentum.

    Place: optimization / replace (the optimizer) / both (fewer steps, and lighter steps: one moment
    buffer instead of two) / throughout. The learning rate is
    the base optimizer's times `lr_scale` (by default 0.3 over Adam-family optimizers, as the
    reference advises 3-10x smaller rates than AdamW, and 0.05 over SGD, whose rates are far
    larger); unless given, weight decay is set so that lr * weight_decay stays the base's, which
    makes it larger by the same factor the rate shrinks, as the reference also advises.

    Helps: one momentum buffer instead of Adam's two (less memory, a cheaper step), and in the
    reference equal or better quality than AdamW at fewer steps for vision transformers,
    diffusion and language models, especially at large batch sizes.

    Hurts: at small batch sizes (the sign discards the gradient's magnitude, so noise is
    amplified) and when the learning rate is taken over from AdamW unchanged (it diverges or
    stalls); its advantage on small convolutional networks is slight.

    Reference: Chen, Liang, Huang, Real, Wang, Pham, Dong, Luong, Hsieh, Lu and Le, 2023, "Symbolic
    Discovery of Optimization Algorithms", NeurIPS 2023, arXiv 2302.06675.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.BOTH, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("lion")
    DEFAULT_SCALE: ClassVar[dict[str, float]] = {"sgd": 0.05, "adaptive": 0.3}

    def __init__(
        self, lr_scale: float | None = None, beta1: float = 0.9, beta2: float = 0.99, weight_decay: float | None = None
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_beta("beta1", beta1)
        check_beta("beta2", beta2)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.betas, self.weight_decay = lr_scale, (beta1, beta2), weight_decay

    def on_init(self, state: State) -> None:
        base = BaseOptimizer.of(state.optimizer)
        lr = base.scaled_lr(self.lr_scale, self.DEFAULT_SCALE)
        decay = base.lr * base.weight_decay / lr if self.weight_decay is None else self.weight_decay
        betas = self.betas
        replace_optimizer(state, lambda params: lion(params, lr, betas, decay))
