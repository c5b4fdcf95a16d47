"""ReLU-squared: the MLP's activation replaced by max(x, 0)^2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import sequence_model
from algospeed.methods.shared.transformer import require_hook
from algospeed.taxonomy.axes import How, Place, What, When, Where


class ReluSquared(nn.Module):
    """max(x, 0)^2, elementwise."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


def apply_relu_squared(model: nn.Module) -> int:
    """In place: every block's `mlp.activation` becomes `ReluSquared`; returns how many MLPs changed."""
    seq = sequence_model(model, "relu_squared")
    for block in seq.blocks:
        require_hook(block.mlp, "activation", "relu_squared", "block.mlp")
        block.mlp.activation = ReluSquared()
    return len(seq.blocks)


@register("relu_squared")
class ReLUSquared(Method):
    """ReLU-squared MLPs: each block's MLP activation becomes max(x, 0)^2.

    Place: model, replace (the activation function); fewer steps (Primer found squared ReLU the single
    most useful change of its search; the NanoGPT speedrun took it with QK-norm for a 1.47x step);
    throughout. At init every block's `mlp.activation` hook is replaced; no parameters change, so the
    optimizer is untouched.

    Helps: transformer language models, at no extra cost (a ReLU and a square instead of a GELU). Primer's
    other change, depthwise convolutions after the query, key and value projections, is not part of it.

    Hurts: models at a high learning rate without a normalization to match (the square grows fast);
    an MLP without the `activation` hook (refused).

    Reference: David R. So, Wojciech Mańke, Hanxiao Liu, Zihang Dai, Noam Shazeer, Quoc V. Le, 2021,
    "Primer: Searching for Efficient Transformers for Language Modeling", NeurIPS 2021, arXiv:2109.08668.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"swiglu"})

    def on_init(self, state: State) -> None:
        apply_relu_squared(state.model)
