"""NorMuon: Muon whose orthogonalized update is normalized per neuron by a running second moment; AdamW for the rest."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.optimization.muon import NewtonSchulzMuon, with_adamw
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import (
    CombinedOptimizer,
    adam_scale,
    check_beta,
    check_positive,
    optimizer_conflicts,
    replace_optimizer,
)
from algospeed.taxonomy.axes import How, Place, What, When, Where


class NorMuon(NewtonSchulzMuon):
    """Neuron-wise normalized Muon (Li et al. 2025, Algorithm 1). For each matrix W (m x n) with gradient G:

        M = beta1 M + (1 - beta1) G;  O = NS(M)
        v = beta2 v + (1 - beta2) mean_cols(O * O)          (one entry per neuron: a row of W)
        P = O / (sqrt(v) + eps);  W = (1 - lr wd) W - 0.2 lr sqrt(m n) / ||P||_F * P

    The last factor gives the update AdamW's typical RMS (0.2 lr per entry), so AdamW's learning
    rate and weight decay carry over. Convolution kernels are seen as (output channels, the rest).
    """

    def __init__(
        self,
        params: Any,
        lr: float,
        betas: tuple[float, float] = (0.95, 0.95),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        ns_steps: int = 5,
    ) -> None:
        check_positive("eps", eps)
        super().__init__(
            params,
            lr=lr,
            weight_decay=weight_decay,
            momentum=betas[0],
            nesterov=False,
            ns_steps=ns_steps,
            neuron_beta2=betas[1],
            neuron_eps=eps,
        )


def normuon(
    model: nn.Module,
    lr: float,
    *,
    betas: tuple[float, float] = (0.95, 0.95),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    ns_steps: int = 5,
    params: Sequence[nn.Parameter] | None = None,
    adamw_layers: str = "auto",
) -> CombinedOptimizer:
    """The plain function: NorMuon over the model's hidden matrices and AdamW over the rest, one
    learning rate and weight decay for both (see `muon.hidden_matrices` for the split)."""

    def matrices(hidden: list[nn.Parameter]) -> torch.optim.Optimizer:
        return NorMuon(hidden, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, ns_steps=ns_steps)

    return with_adamw(model, matrices, lr, weight_decay, params, adamw_layers)


@register("normuon")
class NorMuonMethod(Method):
    """Replace the optimizer by NorMuon (Muon with per-neuron step sizes) for hidden matrices, AdamW for the rest.

    Place: optimization / replace (the optimizer) / fewer steps / throughout. As muon, but each
    orthogonalized update is divided row by row (one row per output neuron) by the square root of a
    running mean of its squared entries (`beta2`), then rescaled to AdamW's update RMS. Momentum is
    the paper's plain exponential average (`beta1`, no Nesterov). The hidden matrices are muon's
    (`adamw_layers`, see `muon.hidden_matrices`); the AdamW-scale learning rate, `effective_lr`,
    is the base's times `lr_scale` (by default 1 over Adam-family optimizers, 0.1 over SGD) and
    serves both parts, and unless given, weight decay (`effective_weight_decay`) keeps lr x decay
    at the base's.

    Helps: in the reference, LLM pre-training at several model sizes reaches Adam's and Muon's
    losses in fewer steps (21.74% better training efficiency than Adam and 11.31% than Muon at
    1.1B parameters), at about Muon's memory (one extra value per neuron). The NanoGPT speedrun
    records adopted it.

    Hurts: as Muon, the Newton-Schulz iterations cost three bfloat16 matrix products each per matrix
    (slow on CPUs), and small models with few hidden matrices gain little.

    Reference: Li, Liu, Liang, Chen and Zhao, 2025, "NorMuon: Making Muon more efficient and
    scalable", arXiv 2510.05491.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    conflicts = optimizer_conflicts("normuon")

    def __init__(
        self,
        lr_scale: float | None = None,
        beta1: float = 0.95,
        beta2: float = 0.95,
        eps: float = 1e-8,
        ns_steps: int = 5,
        weight_decay: float | None = None,
        adamw_layers: str = "auto",
    ) -> None:
        check_positive("lr_scale", lr_scale)
        check_beta("beta1", beta1)
        check_beta("beta2", beta2)
        check_positive("eps", eps)
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be at least 1, got {ns_steps}")
        check_positive("weight_decay", weight_decay, allow_zero=True)
        self.lr_scale, self.betas, self.eps, self.ns_steps = lr_scale, (beta1, beta2), eps, ns_steps
        self.weight_decay, self.adamw_layers = weight_decay, adamw_layers
        self.effective_lr: float | None = None
        self.effective_weight_decay: float | None = None

    def on_init(self, state: State) -> None:
        lr, decay = adam_scale(state, self.lr_scale, self.weight_decay)
        self.effective_lr, self.effective_weight_decay = lr, decay
        settings = dict(
            betas=self.betas, eps=self.eps, weight_decay=decay, ns_steps=self.ns_steps, adamw_layers=self.adamw_layers
        )
        replace_optimizer(state, lambda params: normuon(state.model, lr, params=params, **settings))
