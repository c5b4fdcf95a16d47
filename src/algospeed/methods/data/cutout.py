"""Cutout: zero a random square (or segment) of every training sample."""

from __future__ import annotations

import torch

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def cutout_mask(
    batch: int,
    spatial: tuple[int, ...],
    size: float = 0.5,
    holes: int = 1,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """A boolean mask (batch, *spatial), True inside the holes: per sample, `holes` boxes whose sides
    are `size` times the input's sides, centred uniformly at random (possibly partly outside, as
    in the paper, where the hole is clipped)."""
    inside = torch.ones(batch, holes, *spatial, dtype=torch.bool)
    for axis, side in enumerate(spatial):
        length = max(1, round(size * side))
        centre = torch.randint(side, (batch, holes), generator=generator)
        begin = centre - length // 2
        end = begin + length
        shape = [1, 1] + [1] * len(spatial)
        shape[2 + axis] = side
        position = torch.arange(side).view(shape)
        box_shape = (batch, holes) + (1,) * len(spatial)
        inside &= (position >= begin.view(box_shape)) & (position < end.view(box_shape))
    return inside.any(dim=1).to(device)


def cutout_batch(
    inputs: torch.Tensor, size: float = 0.5, holes: int = 1, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A copy of the batch (N, C, *spatial) with `holes` random boxes per sample set to zero."""
    if inputs.dim() < 3:
        raise ValueError(f"cutout takes (N, C, L) or (N, C, H, W) inputs, got shape {tuple(inputs.shape)}")
    mask = cutout_mask(len(inputs), tuple(inputs.shape[2:]), size, holes, generator, inputs.device)
    return inputs.masked_fill(mask.unsqueeze(1), 0.0)


@register("cutout")
class Cutout(Method):
    """Zero a random square (a segment for 1D signals) of every training sample.

    Place: data (the inputs), add (a regularizing augmentation), fewer steps, throughout.
    At `after_dataloader` each sample gets `holes` boxes of side `size` times its own sides (a
    fraction, 0.5 = half of each side as in the paper's CIFAR-10 setting), centred at random from
    `state.generator` and clipped at the borders, set to zero (the mean of standardized inputs).
    Labels are unchanged.

    Helps: convolutional image classifiers in long runs that overfit; it regularizes like dropout
    on the input and makes the model use the whole object, improving accuracy per epoch.

    Hurts: short runs and small models that underfit; inputs where the hole can remove the only
    evidence for the label (tiny images, short signals); dense prediction without mask handling.

    Reference: Terrance DeVries and Graham W. Taylor, 2017, "Improved Regularization of Convolutional
    Neural Networks with Cutout", arXiv:1708.04552.
    """

    place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, size: float = 0.5, holes: int = 1) -> None:
        if not 0.0 < size <= 1.0:
            raise ValueError(f"size (a fraction of each side) must be in (0, 1], got {size}")
        if holes < 1:
            raise ValueError(f"holes must be at least 1, got {holes}")
        self.size = size
        self.holes = holes

    def on_after_dataloader(self, state: State) -> None:
        inputs = cutout_batch(state.batch.inputs, self.size, self.holes, state.generator)
        state.batch = state.batch.replace(inputs=inputs)
