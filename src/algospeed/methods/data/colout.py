"""ColOut: drop random rows and columns of the images, so they get smaller and cheaper."""

from __future__ import annotations

import torch

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def kept_positions(side: int, drop: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Sorted random positions to keep along a side of `side`: all but `round(drop * side)`
    (at least one kept)."""
    keep = max(1, side - round(drop * side))
    return torch.randperm(side, generator=generator)[:keep].sort().values


def colout_batch(
    inputs: torch.Tensor, p_row: float = 0.15, p_col: float = 0.15, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Drop the same random rows (fraction `p_row`) and columns (`p_col`) from every image of a batch
    (N, C, H, W); for signals (N, C, L) drop positions (fraction `p_col`). The rest keep their order."""
    if inputs.dim() == 3:
        columns = kept_positions(inputs.shape[2], p_col, generator).to(inputs.device)
        return inputs.index_select(2, columns)
    if inputs.dim() == 4:
        rows = kept_positions(inputs.shape[2], p_row, generator).to(inputs.device)
        columns = kept_positions(inputs.shape[3], p_col, generator).to(inputs.device)
        return inputs.index_select(2, rows).index_select(3, columns)
    raise ValueError(f"colout takes (N, C, L) or (N, C, H, W) inputs, got shape {tuple(inputs.shape)}")


@register("colout")
class ColOut(Method):
    """Drop random rows and columns of each batch of images, making the inputs smaller and cheaper.

    Place: data (the inputs' form), shrink and add (smaller inputs that also act as an
    augmentation), cheaper steps, throughout. At `after_dataloader` the same randomly chosen
    `p_row` of the rows and `p_col` of the columns (from `state.generator`) are removed from every
    image of the batch; for 1D signals (N, C, L) positions are removed with `p_col`. The number
    removed is fixed, so all batches share one shape. The model must accept any input size.

    Helps: convolutional image models whose cost scales with the number of pixels: about
    (1 - p_row)(1 - p_col) of the cost per step, with an augmentation effect close to cutout.

    Hurts: small images where each row carries much of the signal; inputs with strict spatial
    structure (text in images, 1D signals whose timing matters); dense prediction tasks.

    Reference: no paper; a method of the MosaicML Composer library (The Mosaic ML Team, 2021,
    "composer", https://github.com/mosaicml/composer). This version drops the same rows and columns
    across the whole batch (Composer's batch-wise variant); Composer's per-image variant is not
    implemented.
    """

    place = Place(where=(Where.DATA,), what=(What.SHRINK, What.ADD), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, p_row: float = 0.15, p_col: float = 0.15) -> None:
        for name, value in (("p_row", p_row), ("p_col", p_col)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} (the fraction of rows or columns dropped) must be in [0, 1), got {value}")
        self.p_row = p_row
        self.p_col = p_col

    def on_after_dataloader(self, state: State) -> None:
        inputs = colout_batch(state.batch.inputs, self.p_row, self.p_col, state.generator)
        state.batch = state.batch.replace(inputs=inputs)
