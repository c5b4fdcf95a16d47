"""A small GPT-style decoder, and the interface through which sequence methods act on a transformer.

Token ids (N, T) go in, logits (N, T, vocab) come out. Pre-norm blocks, causal self-attention through
`torch.nn.functional.scaled_dot_product_attention`, learned positions, a GELU MLP, and a head tied
to the token embedding or not.

The interface (`SequenceModel`, `SequenceBlock`, `SequenceAttention` below) is what a method that
changes sequence length, positions, attention, the MLP or depth may rely on; a user's own transformer
opts in by exposing the same attributes:

- `model.embedding`: an `nn.Embedding` (vocab, width) for the token ids.
- `model.positions`: a module `x -> x` (N, T, width) that adds position information to the token
  embeddings; replace it with `nn.Identity()` for position-free or rotary attention.
- `model.blocks`: an `nn.ModuleList`; each block maps the residual stream `x -> x` (N, T, width)
  and holds `.attention` and `.mlp` submodules.
- `model.norm`, `model.head`: the final norm and the `nn.Linear` (width, vocab) to logits; with a
  tied head, `head.weight is embedding.weight`.
- `model.context`: the longest sequence the model accepts.
- `model(ids) == head(norm(blocks(positions(embedding(ids)))))`: the token ids are the first
  argument, the blocks run in order (each at most once), and the logits are the head's output.
  Methods may put torch forward hooks on the model, its blocks and its head (U-net skips, value
  embeddings, logit soft-capping), so the forward calls them as modules, not through `.forward`.

Each `block.attention` offers three hooks, all off by default (plain causal attention):

- `window`: an int, so that each position attends to at most the `window` latest positions (itself
  included): sliding-window attention. `None`: every earlier position.
- `score_bias`: a module `(q, k) -> bias` whose result, broadcastable to (N, heads, T, T), is added
  to the attention scores (ALiBi and other relative-position biases, custom masks with `-inf`).
- `qk_transform`: a module `(q, k) -> (q, k)` on the (N, heads, T, head_width) queries and keys
  before the scores are taken (rotary positions, QK-norm).

Two more hooks are optional (a method that needs one refuses a model without it):

- `block.attention.value_transform`: a module `v -> v` on the (N, heads, T, head_width) values,
  `None` by default (value embeddings mix extra embeddings of the token ids in here).
- `block.mlp.activation`: the elementwise module between the MLP's `up` and `down` projections
  (GELU by default; ReLU-squared replaces it).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn


@runtime_checkable
class SequenceAttention(Protocol):
    """What a method may set on a block's causal self-attention (see the module docstring)."""

    heads: int
    window: int | None
    score_bias: nn.Module | None
    qk_transform: nn.Module | None


@runtime_checkable
class SequenceBlock(Protocol):
    """One residual block: `forward(x) -> x` on (N, T, width), with `attention` and `mlp` submodules."""

    attention: nn.Module
    mlp: nn.Module


@runtime_checkable
class SequenceModel(Protocol):
    """A decoder that sequence methods can act on (see the module docstring)."""

    context: int
    embedding: nn.Embedding
    positions: nn.Module
    blocks: nn.ModuleList
    norm: nn.Module
    head: nn.Linear


class LearnedPositions(nn.Module):
    """One learned vector per position, added to the token embeddings."""

    def __init__(self, context: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(context, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        if length > len(self.weight):
            raise ValueError(f"sequence of {length} tokens is longer than the model's context of {len(self.weight)}")
        return x + self.weight[:length]


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with the `window`, `score_bias`, `qk_transform` and `value_transform`
    hooks."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width, bias=False)
        self.window: int | None = None
        self.score_bias: nn.Module | None = None
        self.qk_transform: nn.Module | None = None
        self.value_transform: nn.Module | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length, width = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        if self.qk_transform is not None:
            q, k = self.qk_transform(q, k)
        if self.value_transform is not None:
            v = self.value_transform(v)
        if self.window is None and self.score_bias is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self._scores_mask(q, k))
        return self.proj(y.transpose(1, 2).reshape(n, length, width))

    def _scores_mask(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The additive mask: `-inf` above the diagonal (and beyond the window), plus the score bias."""
        rows = torch.arange(q.shape[-2], device=q.device).unsqueeze(1)
        columns = torch.arange(k.shape[-2], device=q.device).unsqueeze(0)
        hidden = columns > rows
        if self.window is not None:
            hidden |= rows - columns >= self.window
        mask = torch.zeros(hidden.shape, dtype=q.dtype, device=q.device).masked_fill(hidden, float("-inf"))
        return mask if self.score_bias is None else mask + self.score_bias(q, k)


class MLP(nn.Module):
    """Width -> 4 x width -> width with a GELU (the `activation` hook)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.up = nn.Linear(width, 4 * width, bias=False)
        self.activation: nn.Module = nn.GELU()
        self.down = nn.Linear(4 * width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.activation(self.up(x)))


class Block(nn.Module):
    """Pre-norm residual block: `x + attention(norm(x))`, then `x + mlp(norm(x))`."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(width)
        self.attention = CausalSelfAttention(width, heads)
        self.mlp_norm = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """The decoder: `embedding -> positions -> blocks -> norm -> head`, logits (N, T, vocab)."""

    def __init__(
        self, vocab: int, *, context: int = 128, layers: int = 4, width: int = 128, heads: int = 4, tied: bool = True
    ) -> None:
        super().__init__()
        self.context = context
        self.embedding = nn.Embedding(vocab, width)
        self.positions: nn.Module = LearnedPositions(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        self._initialize(layers)
        if tied:
            self.head.weight = self.embedding.weight

    def _initialize(self, layers: int) -> None:
        """GPT-2's init: N(0, 0.02) weights, residual projections scaled by 1/sqrt(2 x layers) so that
        the residual stream's variance does not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        for block in self.blocks:
            for projection in (block.attention.proj, block.mlp.down):
                nn.init.normal_(projection.weight, std=0.02 / math.sqrt(2 * layers))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.positions(self.embedding(ids))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))
