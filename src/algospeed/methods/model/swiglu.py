"""SwiGLU: a gated MLP, its hidden width cut to 2/3 of 4 x width so that it keeps the parameter count."""

from __future__ import annotations

import math

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import sequence_model
from algospeed.methods.shared.transformer import model_width, retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where

INIT_STD = 0.02  # GPT-2's, as the default model's


def swiglu_hidden(width: int) -> int:
    """2/3 of 4 x width, rounded: three matrices of this width hold as many weights as two of 4 x width."""
    return round(8 * width / 3)


class SiLU(nn.Module):
    """x * sigmoid(x), written out: torch's fused `silu` computes its backward differently under the
    FLOP counter (which counts the first step after a resume), so a resumed run would not be bit-identical."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class GatedMLP(nn.Module):
    """`down(silu(gate(x)) * up(x))`, with the gate's nonlinearity as the `activation` hook."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.activation: nn.Module = SiLU()
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.activation(self.gate(x)) * self.up(x))


def apply_swiglu(model: nn.Module, hidden: int = 0) -> list[GatedMLP]:
    """In place: every block's `mlp` becomes a fresh `GatedMLP` of `hidden` units (0: `swiglu_hidden`),
    initialized as GPT-2 initializes (N(0, 0.02), the output projection scaled by 1/sqrt(2 x layers))."""
    seq = sequence_model(model, "swiglu")
    width = model_width(seq)
    hidden = hidden or swiglu_hidden(width)
    mlps = []
    for block in seq.blocks:
        mlp = GatedMLP(width, hidden)
        for linear in (mlp.gate, mlp.up):
            nn.init.normal_(linear.weight, std=INIT_STD)
        nn.init.normal_(mlp.down.weight, std=INIT_STD / math.sqrt(2 * len(seq.blocks)))
        block.mlp = mlp.train(block.mlp.training)
        mlps.append(mlp)
    return mlps


@register("swiglu")
class SwiGLU(Method):
    """SwiGLU MLPs: each block's MLP becomes a SiLU-gated linear unit of the same parameter count.

    Place: model, replace (the feed-forward block); fewer steps (lower perplexity at the same parameters
    and FLOPs in Shazeer's comparison); throughout. At init every `block.mlp` is replaced by
    `down(silu(gate(x)) * up(x))` with `hidden` units (default round(8 x width / 3): 2/3 of 4 x width,
    so the three matrices hold as many weights as the two they replace), freshly initialized from the
    run's seed; the optimizer is rebuilt over the new weights.

    Helps: transformer language models (PaLM and LLaMA use it); the same FLOPs per token as the GELU MLP.

    Hurts: the speedrun preferred ReLU-squared at its scale; a hidden width that is no multiple of the
    hardware's tile wastes some of each matmul; three smaller matmuls can be slower than two on a CPU.

    Reference: Noam Shazeer, 2020, "GLU Variants Improve Transformer", arXiv:2002.05202.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"relu_squared"})

    def __init__(self, hidden: int = 0) -> None:
        if hidden < 0:
            raise ValueError(f"hidden must be 0 (2/3 of 4 x width) or a positive width, got {hidden}")
        self.hidden = hidden

    def on_init(self, state: State) -> None:
        apply_swiglu(state.model, self.hidden)
        retrain_changed_model(state)
