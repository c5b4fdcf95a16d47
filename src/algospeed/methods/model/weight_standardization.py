"""Weight standardization: convolutions use their weights standardized per output channel."""

from __future__ import annotations

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import replace_modules
from algospeed.taxonomy.axes import How, Place, What, When, Where


def standardize_weight(weight: torch.Tensor, eps: float = 1e-5, scaled: bool = False) -> torch.Tensor:
    """Each output channel's weights (dim 0) shifted to mean 0 and divided by their standard deviation plus eps
    (as in the paper's code; eps is added to the deviation, not the variance, so that it stays negligible for
    the small weights of wide layers). With `scaled`, also divided by sqrt(fan-in), so that the variance is
    1 / fan-in and activations keep their scale without a normalization layer (scaled WS, Brock et al. 2021)."""
    flat = weight.reshape(weight.shape[0], -1)
    mean = flat.mean(dim=1, keepdim=True)
    std = flat.std(dim=1, unbiased=False, keepdim=True)
    if scaled:
        std = std * flat.shape[1] ** 0.5
    return ((flat - mean) / (std + eps)).reshape_as(weight)


class _Standardized:
    """Convolves with `standardize_weight(self.weight)`; the stored parameter is the raw weight."""

    ws_eps: float
    ws_scaled: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = standardize_weight(self.weight, self.ws_eps, self.ws_scaled)  # type: ignore[attr-defined]
        return self._conv_forward(x, weight, self.bias)  # type: ignore[attr-defined]


class WSConv1d(_Standardized, nn.Conv1d):
    """A weight-standardized Conv1d."""


class WSConv2d(_Standardized, nn.Conv2d):
    """A weight-standardized Conv2d."""


STANDARDIZED = {nn.Conv1d: WSConv1d, nn.Conv2d: WSConv2d}


def standardized_conv(conv: nn.Conv1d | nn.Conv2d, eps: float = 1e-5, scaled: bool = False) -> nn.Module:
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
    new.ws_scaled = scaled
    new.weight = conv.weight
    if conv.bias is not None:
        new.bias = conv.bias
    return new


def apply_weight_standardization(model: nn.Module, eps: float = 1e-5, scaled: bool = False) -> int:
    """Replace every Conv1d/Conv2d (exactly those classes) by its weight-standardized version, in place; the
    parameters are shared, so an optimizer over them keeps working. Returns how many."""
    if eps <= 0:
        raise ValueError(f"eps must be positive, got {eps}")
    return replace_modules(model, lambda m: type(m) in STANDARDIZED, lambda m: standardized_conv(m, eps, scaled))


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

    Hurts: networks without a normalization layer after each conv: unit-variance weights multiply
    the activations' scale by about sqrt(fan-in) per layer and training diverges (on mnist1d's
    unnormalized CNN the loss explodes); use scaled=true there, which divides by sqrt(fan-in)
    as well (scaled weight standardization). It also adds a reduction over the weights per conv
    per step, and gives little on top of batch norm with large batches.

    Reference: Qiao, Wang, Liu, Shen, Yuille, 2019, "Micro-Batch Training with Batch-Channel
    Normalization and Weight Standardization", arXiv:1903.10520; the scaled variant: Brock, De,
    Smith, 2021, "Characterizing signal propagation to close the performance gap in unnormalized
    ResNets", ICLR 2021, arXiv:2101.08692 (without its learnable gain).
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, eps: float = 1e-5, scaled: bool = False) -> None:
        if eps <= 0:
            raise ValueError(f"eps must be positive, got {eps}")
        self.eps = eps
        self.scaled = scaled
        self.replaced = 0

    def on_init(self, state: State) -> None:
        self.replaced = apply_weight_standardization(state.model, self.eps, self.scaled)
