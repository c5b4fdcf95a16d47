"""Weight standardization: convolutions use their weights standardized per output channel."""

from __future__ import annotations

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.model._surgery import replace_modules
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Each output channel's weights (dim 0) shifted to mean 0 and divided by their standard deviation plus eps
    (as in the paper's code; eps is added to the deviation, not the variance, so that it stays negligible for
    the small weights of wide layers)."""
    flat = weight.reshape(weight.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    return ((flat - mean) / (std + eps)).reshape_as(weight)


class _Standardized:
    """Convolves with `standardize_weight(self.weight)`; the stored parameter is the raw weight."""

    ws_eps: float

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, standardize_weight(self.weight, self.ws_eps), self.bias)  # type: ignore[attr-defined]


class WSConv1d(_Standardized, nn.Conv1d):
    """A weight-standardized Conv1d."""


class WSConv2d(_Standardized, nn.Conv2d):
    """A weight-standardized Conv2d."""


STANDARDIZED = {nn.Conv1d: WSConv1d, nn.Conv2d: WSConv2d}


def standardized_conv(conv: nn.Conv1d | nn.Conv2d, eps: float = 1e-5) -> nn.Module:
    """A weight-standardized copy of `conv` sharing its parameters (the same tensors)."""
    new = nn.utils.skip_init(
        STANDARDIZED[type(conv)],
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
        device=conv.weight.device,
        dtype=conv.weight.dtype,
    )
    new.ws_eps = eps
    new.weight = conv.weight
    if conv.bias is not None:
        new.bias = conv.bias
    return new


def apply_weight_standardization(model: nn.Module, eps: float = 1e-5) -> int:
    """Replace every Conv1d/Conv2d (exactly those classes) by its weight-standardized version, in place; the
    parameters are shared, so an optimizer over them keeps working. Returns how many."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return replace_modules(model, lambda m: type(m) in STANDARDIZED, lambda m: standardized_conv(m, eps))


@register("weight_standardization")
class WeightStandardization(Method):
    """Weight standardization: every convolution uses its weights standardized per output channel.

    Place: model, replace (the convolution's weight parameterization); fewer steps (a smoother loss
    landscape, so larger steps make progress); throughout. At init every Conv1d/Conv2d is replaced by
    one that convolves with (W - mean) / (std + eps), mean and deviation over each output
    channel's weights, recomputed at every forward (the gradient flows through the standardization).
    The parameters are the same tensors, so the optimizer is kept.

    Helps: networks normalized by GroupNorm or with small (micro-)batches, where it recovers
    batch-norm-like trainability; with batch norm it still smooths the landscape a little.

    Hurts: adds a reduction over the weights per conv per step; layers that rely on a weight's scale
    or mean (e.g. convs with no normalization after them and a meaningful bias-like mean) change
    function; little benefit on top of batch norm with large batches.

    Reference: Qiao, Wang, Liu, Shen, Yuille, 2019, "Micro-Batch Training with Batch-Channel
    Normalization and Weight Standardization", arXiv:1903.10520.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self, eps: float = 1e-5) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps
        self.replaced = 0

    def on_init(self, state: State) -> None:
        self.replaced = apply_weight_standardization(state.model, self.eps)
