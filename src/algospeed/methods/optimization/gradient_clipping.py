"""Gradient clipping before each optimizer step: by global norm, by value, or adaptively per unit (AGC)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

DEFAULT_THRESHOLDS = {"norm": 1.0, "value": 1.0, "adaptive": 0.01}


def unitwise_norm(tensor: torch.Tensor) -> torch.Tensor:
    """The norm of each output unit (row of a linear weight, output channel of a convolution), shaped
    to broadcast against `tensor`; a scalar or vector (a bias, a gain) counts as one unit."""
    if tensor.dim() <= 1:
        return torch.linalg.vector_norm(tensor)
    return torch.linalg.vector_norm(tensor, dim=tuple(range(1, tensor.dim())), keepdim=True)


@torch.no_grad()
def adaptive_clip_grad_(parameters: Iterable[nn.Parameter], clipping: float = 0.01, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping (AGC): scale each unit's gradient G down to at most
    `clipping * max(||W||, eps) / ||G||` of itself, i.e. so that ||G|| <= clipping * max(||W||, eps)."""
    for p in parameters:
        if p.grad is None:
            continue
        max_norm = unitwise_norm(p.detach()).clamp(min=eps) * clipping
        grad_norm = unitwise_norm(p.grad)
        factor = (max_norm / grad_norm.clamp(min=1e-6)).clamp(max=1.0)
        p.grad.mul_(torch.where(grad_norm > max_norm, factor, torch.ones_like(factor)))


def clip_gradients(parameters: Iterable[nn.Parameter], mode: str = "norm", threshold: float | None = None) -> None:
    """Clip the gradients of `parameters` in place: `norm` rescales them so their global L2 norm is at
    most `threshold`; `value` clamps each entry to [-threshold, threshold]; `adaptive` is AGC with
    clipping factor `threshold`. `threshold=None` takes the mode's default (1, 1, 0.01)."""
    if mode not in DEFAULT_THRESHOLDS:
        raise ValueError(f"mode must be one of {', '.join(DEFAULT_THRESHOLDS)}; got {mode!r}")
    limit = DEFAULT_THRESHOLDS[mode] if threshold is None else threshold
    if not limit > 0.0:
        raise ValueError(f"threshold must be positive, got {limit}")
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, limit)
    elif mode == "value":
        torch.nn.utils.clip_grad_value_(params, limit)
    else:
        adaptive_clip_grad_(params, limit)


@register("gradient_clipping")
class GradientClipping(Method):
    """Clip the gradients before each optimizer step, by global norm, by value, or per unit (AGC).

    Place: optimization, add (a clipping step), fewer steps, throughout. `mode=norm` rescales the whole
    gradient to an L2 norm of at most `threshold` (default 1); `mode=value` clamps each entry to
    [-threshold, threshold] (default 1); `mode=adaptive` clips each unit's gradient (a row of a
    linear weight, an output channel of a convolution) to `threshold` (default 0.01) times that
    unit's weight norm, so the limit follows the weights' scale. Clipping happens at
    `before_optimizer_step`, after the learning rate is set and any other gradient work is done.

    Helps: runs with occasional gradient spikes (recurrent nets, transformers, large learning
    rates, large batches, models without batch norm): they survive learning rates that would
    otherwise diverge, which can mean fewer steps to a target.

    Hurts: a threshold below the typical gradient norm turns it into a smaller learning rate (and
    changes the update's direction for `value`); it costs a norm over all gradients each step.

    Reference: Razvan Pascanu, Tomas Mikolov and Yoshua Bengio, 2013, "On the difficulty of training
    recurrent neural networks", ICML 2013, arXiv:1211.5063 (norm clipping); Andrew Brock, Soham De,
    Samuel L. Smith and Karen Simonyan, 2021, "High-Performance Large-Scale Image Recognition Without
    Normalization", ICML 2021, arXiv:2102.06171 (adaptive gradient clipping; unlike that paper, every
    layer is clipped here, the final linear layer included). Clipping by value is the older
    element-wise variant from Tomas Mikolov's 2012 PhD thesis ("Statistical Language Models Based on
    Neural Networks", Brno University of Technology), which Pascanu et al. discuss.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self, mode: str = "norm", threshold: float | None = None) -> None:
        if mode not in DEFAULT_THRESHOLDS:
            raise ValueError(f"mode must be one of {', '.join(DEFAULT_THRESHOLDS)}; got {mode!r}")
        if threshold is not None and not threshold > 0.0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.mode = mode
        self.threshold = DEFAULT_THRESHOLDS[mode] if threshold is None else threshold

    def on_before_optimizer_step(self, state: State) -> None:
        clip_gradients(state.model.parameters(), self.mode, self.threshold)
