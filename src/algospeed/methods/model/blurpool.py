"""BlurPool: anti-aliased downsampling, blurring before every strided convolution and max-pool."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import replace_modules
from algospeed.taxonomy.axes import How, Place, What, When, Where

CONVS = (nn.Conv1d, nn.Conv2d)
MAXPOOLS = (nn.MaxPool1d, nn.MaxPool2d)


def binomial_taps() -> torch.Tensor:
    """The [1, 2, 1] / 4 low-pass filter."""
    return torch.tensor([1.0, 2.0, 1.0]) / 4


def blur(x: torch.Tensor, stride: int = 1, taps: torch.Tensor | None = None) -> torch.Tensor:
    """Low-pass filter each channel of a (N, C, L) or (N, C, H, W) tensor with the binomial [1, 2, 1] / 4
    filter (its outer product in 2D), reflect-padded so that stride 1 keeps the size, then subsample."""
    dims = x.dim() - 2
    if dims not in (1, 2):
        raise ValueError(f"blur takes 3D or 4D inputs, got {x.dim()}D")
    taps = (binomial_taps() if taps is None else taps).to(device=x.device, dtype=x.dtype)
    kernel = taps if dims == 1 else torch.outer(taps, taps)
    channels = x.shape[1]
    kernel = kernel.expand(channels, 1, *kernel.shape)
    mode = "reflect" if min(x.shape[2:]) > 1 else "replicate"
    padded = F.pad(x, (1, 1) * dims, mode=mode)
    conv = F.conv1d if dims == 1 else F.conv2d
    return conv(padded, kernel, stride=stride, groups=channels)


def _stride(module: nn.Module) -> int:
    stride = module.stride
    return max(stride) if isinstance(stride, tuple) else int(stride)


class BlurConv(nn.Module):
    """A strided convolution made anti-aliased: `conv(blur(x))` with the original stride (blur first), or
    `blur(conv(x), stride)` with the convolution at stride 1 (blur after). Keeps the convolution's parameters."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, blur_first: bool = True) -> None:
        super().__init__()
        self.blur_first = blur_first
        self.stride = _stride(conv)
        if not blur_first:
            conv.stride = (1,) * len(conv.stride)
        self.conv = conv
        self.register_buffer("taps", binomial_taps().to(conv.weight.device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.blur_first:
            return self.conv(blur(x, 1, self.taps))
        return blur(self.conv(x), self.stride, self.taps)


class BlurMaxPool(nn.Module):
    """Max-pooling at stride 1, then blur and subsample (Zhang's MaxBlurPool)."""

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d) -> None:
        super().__init__()
        self.stride = _stride(pool)
        self.pool = type(pool)(
            pool.kernel_size, stride=1, padding=pool.padding, dilation=pool.dilation, ceil_mode=pool.ceil_mode
        )
        self.register_buffer("taps", binomial_taps(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur(self.pool(x), self.stride, self.taps)


def apply_blurpool(
    model: nn.Module,
    *,
    replace_convs: bool = True,
    replace_maxpools: bool = True,
    blur_first: bool = True,
    min_channels: int = 16,
) -> int:
    """Make the model's downsampling anti-aliased, in place; returns how many layers were replaced.

    Strided Conv1d/Conv2d with at least `min_channels` input channels become `BlurConv`s (the stem, with
    its few channels, is left alone, as in Composer); strided MaxPool1d/2d become `BlurMaxPool`s.
    """

    def matches(module: nn.Module) -> bool:
        if replace_convs and isinstance(module, CONVS):
            return _stride(module) > 1 and module.in_channels >= min_channels and module.groups == 1
        return replace_maxpools and isinstance(module, MAXPOOLS) and _stride(module) > 1

    def build(module: nn.Module) -> nn.Module:
        return BlurConv(module, blur_first) if isinstance(module, CONVS) else BlurMaxPool(module)

    return replace_modules(model, matches, build, skip=(BlurConv, BlurMaxPool))


@register("blurpool")
class BlurPool(Method):
    """Anti-aliased downsampling: blur before each strided convolution and max-pool.

    Place: model, add (a low-pass filter before each subsampling); fewer steps (a more shift-invariant
    network learns more per step);
    throughout. At init, strided convolutions (1D and 2D, with at least `min_channels` inputs)
    become blur-then-conv and strided max-pools become max-then-blur-subsample, with a fixed
    binomial [1, 2, 1] filter; the convolutions keep their weights.

    Helps: image models that downsample with strided convolutions or max-pooling; accuracy per step
    rises for a few percent more FLOPs (the paper reports higher ImageNet accuracy and consistency).

    Hurts: tiny inputs (8x8) where blurring removes detail the model needs; models with no strided
    layers (nothing changes); each replaced layer adds a depthwise blur, so steps cost a little more.

    Reference: Zhang, 2019, "Making Convolutional Networks Shift-Invariant Again", ICML 2019,
    arXiv:1904.11486.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(
        self, replace_convs: bool = True, replace_maxpools: bool = True, blur_first: bool = True, min_channels: int = 16
    ) -> None:
        if not (replace_convs or replace_maxpools):
            raise ValueError("replace_convs and replace_maxpools are both false: nothing would change")
        if min_channels < 0:
            raise ValueError(f"min_channels must be >= 0, got {min_channels}")
        self.replace_convs = replace_convs
        self.replace_maxpools = replace_maxpools
        self.blur_first = blur_first
        self.min_channels = min_channels
        self.replaced = 0

    def on_init(self, state: State) -> None:
        self.replaced = apply_blurpool(
            state.model,
            replace_convs=self.replace_convs,
            replace_maxpools=self.replace_maxpools,
            blur_first=self.blur_first,
            min_channels=self.min_channels,
        )
        if self.replaced:
            state.model.to(state.device)  # the blur filters
            state.rebuild_optimizer()  # the same parameters, under new names: kept for model-surgery hygiene
