"""Progressive resizing: train on shrunken inputs early and grow them to full size as training progresses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def progressive_size(
    full: int, progress: float, initial_scale: float = 0.5, finetune_fraction: float = 0.2, multiple: int = 4
) -> int:
    """The side length at `progress`: `initial_scale * full` growing linearly to `full` at
    `1 - finetune_fraction`, then `full`; below full it is rounded down to a multiple of `multiple`
    (at least `multiple`), so that only a few distinct shapes occur."""
    ramp_end = 1.0 - finetune_fraction
    fraction = 1.0 if ramp_end <= 0 else min(1.0, max(0.0, progress) / ramp_end)
    scale = initial_scale + (1.0 - initial_scale) * fraction
    if scale >= 1.0:
        return full
    size = math.floor(full * scale + 1e-9) // multiple * multiple
    return min(full, max(size, multiple))


def resize_inputs(inputs: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Resize a batch (N, C, L) by linear or (N, C, H, W) by bilinear interpolation to `size`."""
    modes = {1: "linear", 2: "bilinear"}
    spatial = inputs.dim() - 2
    if spatial not in modes:
        raise ValueError(
            f"progressive resizing takes (N, C, L) or (N, C, H, W) inputs, got shape {tuple(inputs.shape)}"
        )
    if len(size) != spatial:
        raise ValueError(f"size {size} does not match the {spatial} spatial dimensions of the inputs")
    if tuple(inputs.shape[2:]) == tuple(size):
        return inputs
    return F.interpolate(inputs, size=tuple(size), mode=modes[spatial], align_corners=False)


def progressive_resize(
    inputs: torch.Tensor,
    progress: float,
    initial_scale: float = 0.5,
    finetune_fraction: float = 0.2,
    multiple: int = 4,
) -> torch.Tensor:
    """The batch resized to its size at `progress` (every spatial side scaled alike)."""
    size = tuple(
        progressive_size(side, progress, initial_scale, finetune_fraction, multiple) for side in inputs.shape[2:]
    )
    return resize_inputs(inputs, size)


@register("progressive_resizing")
class ProgressiveResizing(Method):
    """Train on down-scaled inputs early, growing them to full size, so early steps cost less.

    Place: data (the inputs' form), shrink (resolution or signal length), cheaper steps, scheduled.
    At `after_dataloader` each batch of images (N, C, H, W) is resized bilinearly, or of signals
    (N, C, L) linearly, to `scale * side` rounded down to a multiple of `size_multiple`, where
    `scale` grows linearly with progress from `initial_scale` to 1 at `1 - finetune_fraction` and
    stays 1 for the final `finetune_fraction`. Evaluation sees full-size inputs. The model must
    accept any input size (global or adaptive pooling). Targets are not resized (classification).

    Helps: convolutional models whose cost scales with the number of pixels or samples, where the
    coarse structure learnt at low resolution transfers: early steps are several times cheaper.

    Hurts: models that need a fixed input size or whose features depend on exact scale; very small
    inputs (8x8 digits) where halving the side destroys the signal; runs so short that the final
    full-size phase is too brief to adapt to the train/test resolution change.

    Reference: no dedicated paper; popularized by fast.ai (Jeremy Howard and Sylvain Gugger, 2020,
    "Deep Learning for Coders with fastai and PyTorch", O'Reilly, chapter 7). A related published
    schedule is Mingxing Tan and Quoc V. Le, 2021, "EfficientNetV2: Smaller Models and Faster
    Training", ICML 2021, arXiv:2104.00298 (progressive learning).
    """

    place = Place(where=(Where.DATA,), what=(What.SHRINK,), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    search_space = {"initial_scale": {"linear": [0.3, 0.8]}}  # noqa: RUF012 (read-only class data, typed on Method)
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, initial_scale: float = 0.5, finetune_fraction: float = 0.2, size_multiple: int = 4) -> None:
        if not 0.0 < initial_scale <= 1.0:
            raise ValueError(f"initial_scale must be in (0, 1], got {initial_scale}")
        if not 0.0 <= finetune_fraction <= 1.0:
            raise ValueError(f"finetune_fraction must be in [0, 1], got {finetune_fraction}")
        if size_multiple < 1:
            raise ValueError(f"size_multiple must be a positive number of pixels or samples, got {size_multiple}")
        self.initial_scale = initial_scale
        self.finetune_fraction = finetune_fraction
        self.size_multiple = size_multiple

    def on_after_dataloader(self, state: State) -> None:
        inputs = state.batch.inputs
        resized = progressive_resize(
            inputs, state.progress, self.initial_scale, self.finetune_fraction, self.size_multiple
        )
        if resized is not inputs:
            state.batch = state.batch.replace(inputs=resized)
