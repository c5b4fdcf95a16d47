"""Squeeze-and-excitation: a small gate that rescales each channel from the globally pooled features."""

from __future__ import annotations

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.model.stochastic_depth import StochasticBranch
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import is_residual_block, replace_modules
from algospeed.taxonomy.axes import How, Place, What, When, Where

CONVS = (nn.Conv1d, nn.Conv2d)
PLACEMENTS = ("auto", "blocks", "convs")


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 relu(W1 mean(x))): pool over all positions, a bottleneck of channels // reduction, and a
    gate in (0, 1) per sample and channel. Works on (N, C, L) and (N, C, H, W) inputs."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        latent = max(1, channels // reduction)
        self.reduce = nn.Linear(channels, latent)
        self.expand = nn.Linear(latent, channels)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, C) channel gates for `x`."""
        squeezed = x.mean(dim=tuple(range(2, x.dim())))
        return torch.sigmoid(self.expand(torch.relu(self.reduce(squeezed))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x).view(*x.shape[:2], *([1] * (x.dim() - 2)))


class Excited(nn.Sequential):
    """A module followed by its squeeze-and-excitation gate (a marker, so that nothing is gated twice)."""


def _last_conv_channels(module: nn.Module) -> int | None:
    convs = [m for m in module.modules() if isinstance(m, CONVS)]
    return convs[-1].out_channels if convs else None


def apply_squeeze_excite(
    model: nn.Module, min_channels: int = 32, reduction: int = 16, placement: str = "auto"
) -> list[SqueezeExcite]:
    """Insert squeeze-and-excitation modules, in place; returns them.

    `blocks` (SE-ResNet): at the end of the `residual` branch of every residual block whose last
    convolution has at least `min_channels` outputs, before the addition. `convs`: after every Conv1d/2d
    with at least `min_channels` outputs. `auto`: blocks where the model has residual blocks, else convs.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
    blocks = [m for m in model.modules() if is_residual_block(m)]
    if placement == "blocks" or (placement == "auto" and blocks):
        inserted = []
        for block in blocks:
            holder, name = block, "residual"
            while isinstance(getattr(holder, name), StochasticBranch):  # SE belongs inside a droppable branch
                holder, name = getattr(holder, name), "branch"
            branch = getattr(holder, name)
            channels = _last_conv_channels(branch)
            if channels is None or channels < min_channels or isinstance(branch, Excited):
                continue
            inserted.append(SqueezeExcite(channels, reduction))
            setattr(holder, name, Excited(branch, inserted[-1]).train(branch.training))
        return inserted
    inserted = []

    def build(conv: nn.Module) -> nn.Module:
        inserted.append(SqueezeExcite(conv.out_channels, reduction))
        return Excited(conv, inserted[-1])

    def matches(module: nn.Module) -> bool:
        return isinstance(module, CONVS) and module.out_channels >= min_channels

    replace_modules(model, matches, build, skip=(Excited,))
    return inserted


@register("squeeze_excite")
class SqueezeExciteMethod(Method):
    """Squeeze-and-excitation: gate each channel by a function of the globally pooled features.

    Place: model, add (small gating modules); fewer steps (more accuracy per step for a few percent
    more FLOPs); throughout. At init an SE module (global average pool, a bottleneck MLP of
    channels // `reduction`, a sigmoid gate per channel) is inserted at the end of the residual
    branch of every residual block with at least `min_channels` channels (as in SE-ResNet), or,
    in models without residual blocks, after every convolution with at least `min_channels`
    outputs (placement=convs forces this, placement=blocks the former). The optimizer is rebuilt.

    Helps: convolutional networks where channel interdependencies matter (the paper: about 1% top-1
    on ImageNet ResNet-50 for +0.26 GFLOPs, 10% more parameters); `min_channels` keeps the gates to
    wide layers, where their cost is relatively smallest (Composer does the same).

    Hurts: narrow layers, where the gate costs more in latency (two small matmuls and a pooling per
    layer, poorly parallel) than it returns; tiny budgets, where the extra modules have not learnt;
    the gates halve activations at init (sigmoid near 0.5).

    Reference: Hu, Shen, Sun, 2018, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, min_channels: int = 32, reduction: int = 16, placement: str = "auto") -> None:
        if min_channels < 1:
            raise ValueError(f"min_channels must be at least 1, got {min_channels}")
        if reduction < 1:
            raise ValueError(f"reduction must be at least 1, got {reduction}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {', '.join(PLACEMENTS)}, got {placement!r}")
        self.min_channels = min_channels
        self.reduction = reduction
        self.placement = placement
        self.inserted = 0

    def on_init(self, state: State) -> None:
        modules = apply_squeeze_excite(state.model, self.min_channels, self.reduction, self.placement)
        self.inserted = len(modules)
        if modules:
            state.model.to(state.device)
            state.rebuild_optimizer()
