"""Decoupled batch-norm hyperparameters: the running statistics' momentum and a learning-rate multiplier for
batch-norm biases, in their own optimizer group."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from algospeed.core.callback import Method
from algospeed.core.state import OptimizerFactory, State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.optimizer_swap import OPTIMIZER_METHODS
from algospeed.taxonomy.axes import How, Place, What, When, Where

BIAS_GROUP = "batchnorm_biases"  # the "name" of the optimizer group holding the batch-norm biases


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> int:
    """Set every batch norm's running-statistics momentum in airbench's convention, in place; returns how many.

    Airbench's `momentum` is the weight of the old running value: running = momentum * running + (1 -
    momentum) * batch statistic. PyTorch's `BatchNorm.momentum` is the weight of the new value, so it is
    set to 1 - momentum (airbench's 0.6 is PyTorch's 0.4).
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum (the old running value's weight) must be in [0, 1), got {momentum}")
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for norm in norms:
        norm.momentum = 1.0 - momentum
    return len(norms)


def batchnorm_biases(model: nn.Module) -> list[nn.Parameter]:
    """The bias (shift) of every affine batch norm in `model`."""
    return [m.bias for m in model.modules() if isinstance(m, _BatchNorm) and m.bias is not None]


def bias_groups(params: Sequence[nn.Parameter], biases: Sequence[nn.Parameter]) -> list[dict[str, Any]]:
    """Parameter groups: every parameter but the batch-norm biases, then the biases among `params` (a group
    named `BIAS_GROUP`); empty groups are left out."""
    ids = {id(p) for p in biases}
    groups = [
        {"params": [p for p in params if id(p) not in ids]},
        {"params": [p for p in params if id(p) in ids], "name": BIAS_GROUP},
    ]
    return [group for group in groups if group["params"]]


def scale_bias_group(optimizer: torch.optim.Optimizer, lr_scale: float) -> None:
    """Multiply the `BIAS_GROUP` group's learning rate by `lr_scale` and divide its weight decay by it, so
    that lr x weight decay (the weights' shrinkage per step, with coupled or decoupled decay) is unchanged."""
    for group in optimizer.param_groups:
        if group.get("name") == BIAS_GROUP:
            group["lr"] *= lr_scale
            if "weight_decay" in group:
                group["weight_decay"] /= lr_scale


def batchnorm_bias_factory(inner: OptimizerFactory, model: nn.Module, lr_scale: float) -> OptimizerFactory:
    """A factory that builds `inner`'s optimizer with the batch-norm biases of `model` in their own group, at
    `lr_scale` times the learning rate (see `scale_bias_group`). It stays the run's factory, so a later
    rebuild (after another method's surgery) keeps the group."""

    def build(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        optimizer = inner(bias_groups(list(params), batchnorm_biases(model)))
        scale_bias_group(optimizer, lr_scale)
        return optimizer

    return build


@register("batchnorm_hparams")
class BatchNormHparams(Method):
    """Batch-norm hyperparameters set apart: a slower running-statistics momentum and a much larger bias rate.

    Place: model and optimization, replace (the batch norms' and their biases' hyperparameters), fewer
    steps, throughout. At init every batch norm's momentum is set in airbench's convention: `momentum`
    is the weight of the old running value (running = momentum * running + (1 - momentum) * batch), so
    PyTorch's `BatchNorm.momentum` becomes 1 - momentum (airbench 0.6, PyTorch 0.4). The run's optimizer
    factory is wrapped so that the batch-norm biases form their own parameter group (named
    `batchnorm_biases`) whose learning rate is `bias_lr_scale` times the base (airbench 64) and whose
    weight decay is divided by it, keeping lr x weight decay (the per-step shrinkage) at the base's, as
    airbench does; the optimizer is rebuilt. The trainer's schedule multiplies each group's own initial
    rate, so the ratio holds all run, and the wrapped factory keeps the group through any later rebuild.
    Batch norms added after init keep their settings. It needs an optimizer factory whose optimizer takes
    parameter groups (torch optimizers do; lookahead composes), so it cannot be combined with the
    optimizer replacements, which group parameters their own way.

    Helps: short runs of batch-normalized CNNs at large batch and learning rate: the biases, which
    batch norm leaves as the only per-channel shift, adapt fast enough, and the slower statistics are
    less noisy.

    Hurts: models without batch norm (nothing changes); long runs, where a 64x bias rate can be
    unstable; momentum values that track a drifting network too slowly (eval statistics lag).

    Reference: Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    arXiv:2404.00498 (batch-norm momentum 0.6, 64x bias learning rate); Tysam& Balsam, 2023,
    "hlb-CIFAR10", github.com/tysam-code/hlb-CIFAR10 (bias_scaler 64 with the bias decay divided by
    it, PyTorch momentum 0.4).
    """

    place = Place(
        where=(Where.MODEL, Where.OPTIMIZATION), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,)
    )
    conflicts = OPTIMIZER_METHODS

    def __init__(self, momentum: float = 0.6, bias_lr_scale: float = 64.0) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"momentum (the old running value's weight, airbench's convention) must be in [0, 1), got {momentum}"
            )
        if not bias_lr_scale > 0.0:
            raise ValueError(f"bias_lr_scale must be positive, got {bias_lr_scale}")
        self.momentum, self.bias_lr_scale = momentum, bias_lr_scale

    def on_init(self, state: State) -> None:
        set_batchnorm_momentum(state.model, self.momentum)
        if state.optimizer_factory is None:
            raise UsageError(
                "method 'batchnorm_hparams' needs an optimizer factory (params -> optimizer), not an optimizer"
            )
        state.optimizer_factory = batchnorm_bias_factory(state.optimizer_factory, state.model, self.bias_lr_scale)
        state.rebuild_optimizer()
