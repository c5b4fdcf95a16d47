"""ALiBi: attention with linear biases, a penalty on each score proportional to the distance, replacing
learned positions."""

from __future__ import annotations

import math

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import attentions, sequence_model
from algospeed.methods.shared.transformer import drop_learned_positions, retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where


def alibi_slopes(heads: int) -> torch.Tensor:
    """The paper's head-specific slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ..., 2^(-8) for n heads
    when n is a power of two; otherwise those of the largest power of two m below n, then every other
    slope of 2m heads (the paper's code)."""

    def geometric(n: int) -> list[float]:
        return [2.0 ** (-8.0 * (h + 1) / n) for h in range(n)]

    closest = 2 ** math.floor(math.log2(heads))
    slopes = geometric(closest) + geometric(2 * closest)[0::2][: heads - closest]
    return torch.tensor(slopes)


def alibi_bias(slopes: torch.Tensor, queries: int, keys: int) -> torch.Tensor:
    """(heads, queries, keys): -slope x (i - j) for a query at i and a key at j <= i (the causal mask hides
    the rest), the last query aligned with the last key."""
    rows = torch.arange(keys - queries, keys, device=slopes.device).unsqueeze(1)
    distance = (rows - torch.arange(keys, device=slopes.device).unsqueeze(0)).clamp(min=0)
    return -slopes.view(-1, 1, 1) * distance


class AlibiBias(nn.Module):
    """The `score_bias` hook: ALiBi's distance penalty for every head."""

    def __init__(self, heads: int) -> None:
        super().__init__()
        self.register_buffer("slopes", alibi_slopes(heads), persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return alibi_bias(self.slopes, q.shape[-2], k.shape[-2]).to(q.dtype)


def apply_alibi(model: nn.Module) -> None:
    """In place: drop the model's learned positions and bias every attention's scores by ALiBi's linear
    distance penalty."""
    seq = sequence_model(model, "alibi")
    for attention in attentions(seq, "alibi"):
        if attention.score_bias is not None:
            raise UsageError("method 'alibi' sets the attention's score_bias, and another bias is already there")
        attention.score_bias = AlibiBias(attention.heads)
    drop_learned_positions(seq, "alibi")


@register("alibi")
class Alibi(Method):
    """ALiBi: attention scores penalized linearly with distance, one slope per head; learned positions removed.

    Place: model, replace (learned positions by a fixed bias on the attention scores); cheaper steps (the
    paper's point: a model trained on short sequences extrapolates to longer ones, so training can use
    shorter, cheaper sequences for the same perplexity); throughout. At init `model.positions` becomes the
    identity and every block's attention gets a `score_bias` of -m_h x (i - j) for query i and key j, with
    the paper's geometric slopes m_h = 2^(-8h/n) for n heads (h = 1..n). No parameters are added.

    Helps: language models evaluated on longer inputs than they trained on; models that should not spend
    parameters on positions.

    Hurts: tasks needing absolute positions; here attention can no longer take the fused causal path, so
    each step pays for an explicit (heads, T, T) bias and mask, and more at long contexts.

    Reference: Ofir Press, Noah A. Smith, Mike Lewis, 2022, "Train Short, Test Long: Attention with Linear
    Biases Enables Input Length Extrapolation", ICLR 2022, arXiv:2108.12409.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"rotary"})

    def on_init(self, state: State) -> None:
        apply_alibi(state.model)
        retrain_changed_model(state)
