"""Dirac (partial identity) initialization: convolutions start by passing their inputs through."""

from __future__ import annotations

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

CONVS = (nn.Conv1d, nn.Conv2d)


def takes_dirac(module: nn.Module) -> bool:
    """Whether a module gets a dirac init: a 1D or 2D convolution with groups 1, no more inputs than outputs,
    and an odd kernel in every dimension (so that the identity sits at the kernel's centre)."""
    return (
        isinstance(module, CONVS)
        and module.groups == 1
        and module.in_channels <= module.out_channels
        and all(size % 2 == 1 for size in module.kernel_size)
    )


@torch.no_grad()
def apply_dirac_init(model: nn.Module) -> int:
    """Make the first `in_channels` filters of every convolution that `takes_dirac` the identity, in place
    (`torch.nn.init.dirac_`, their biases zeroed); the other filters keep their init. Returns how many
    convolutions changed. With 'same' padding and stride 1 such a convolution returns its input on those
    output channels; with stride s, the input subsampled by s."""
    changed = 0
    for module in model.modules():
        if takes_dirac(module):
            nn.init.dirac_(module.weight[: module.in_channels])
            if module.bias is not None:
                module.bias[: module.in_channels] = 0.0
            changed += 1
    return changed


@register("dirac_init")
class DiracInit(Method):
    """Initialize convolutions as partial identities, so that each starts by passing its input through.

    Place: model, replace (the initialization), fewer steps, before. At init every Conv1d/Conv2d with
    groups 1, in_channels <= out_channels and odd kernel sides has its first in_channels filters set
    by `torch.nn.init.dirac_` (filter i reads input channel i at the kernel's centre, nothing else) and
    their biases zeroed; its remaining filters, and every other convolution, keep the default init.
    This is airbench's rule (its convolutions all widen or keep the width). Only the weights' values
    change, so the optimizer is not rebuilt.

    Helps: plain (non-residual) convolutional stacks trained briefly: the signal and its gradient pass
    through every layer from the first step, like an implicit skip connection, so early steps train
    the whole depth.

    Hurts: residual networks, which already have an identity path (little to gain); convolutions that
    shrink the width (left alone) or have even kernels (left alone); a network whose later layers need
    symmetry broken between the identity channels and the others more than signal propagation.

    Reference: Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    arXiv:2404.00498 (airbench: the first in_channels filters of each convolution are identity);
    Sergey Zagoruyko and Nikos Komodakis, 2017, "DiracNets: Training Very Deep Neural Networks Without
    Skip-Connections", arXiv:1706.00388 (the dirac parameterization).
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.BEFORE,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self) -> None:
        self.changed = 0

    def on_init(self, state: State) -> None:
        self.changed = apply_dirac_init(state.model)
