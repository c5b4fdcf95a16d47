"""Value embeddings: extra embeddings of the token ids, mixed into the attention values of chosen layers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import attentions, sequence_model
from algospeed.methods.shared.transformer import model_width, require_hook, retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where

INIT_STD = 0.02  # GPT-2's embedding init, as the token embedding's


def table_layout(layers: int, tables: int) -> list[int | None]:
    """Which table each layer reads (None: none). `tables=0`: one table per layer. `tables=k`: the
    speedrun's pattern, the first k layers read tables 0..k-1 and the last k layers read them again."""
    if tables == 0:
        return list(range(layers))
    if 2 * tables > layers:
        raise UsageError(
            f"method 'value_embeddings': tables={tables} need {2 * tables} layers (the first and the last "
            f"{tables}), and the model has {layers}"
        )
    layout: list[int | None] = [None] * layers
    for table in range(tables):
        layout[table] = layout[layers - tables + table] = table
    return layout


class ValueEmbeddings(nn.Module):
    """The tables, and the token ids of the model's current forward (recorded by a forward pre-hook on the
    model, so that each attention's `ValueMix` can look them up)."""

    def __init__(self, vocab: int, width: int, tables: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(vocab, width) for _ in range(tables))
        for table in self.tables:
            nn.init.normal_(table.weight, std=INIT_STD)
        self.ids: torch.Tensor | None = None

    def record(self, model: nn.Module, args: tuple[Any, ...]) -> None:
        self.ids = args[0]

    def forget(self, model: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        self.ids = None

    def lookup(self, table: int, heads: int) -> torch.Tensor:
        """Table `table`'s embeddings of the current ids as (N, heads, T, head_width) values."""
        if self.ids is None:
            raise RuntimeError("value embeddings are looked up outside the model's forward")
        values = self.tables[table](self.ids)
        return values.view(*values.shape[:2], heads, -1).transpose(1, 2)


class ValueMix(nn.Module):
    """The `value_transform` hook of one layer: `a x v + b x table(ids)`, a and b learned (both 0.5 at
    first, as in the speedrun)."""

    def __init__(self, source: ValueEmbeddings, table: int, heads: int) -> None:
        super().__init__()
        self._source = (source,)  # a reference, not a submodule: the model holds the tables once
        self.table = table
        self.heads = heads
        self.weights = nn.Parameter(torch.full((2,), 0.5))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        embedded = self._source[0].lookup(self.table, self.heads)
        if embedded.shape != v.shape:
            raise RuntimeError(
                f"value embeddings of shape {tuple(embedded.shape)} cannot mix into values of {tuple(v.shape)}"
            )
        return self.weights[0] * v + self.weights[1] * embedded

    def extra_repr(self) -> str:
        return f"table={self.table}"


def apply_value_embeddings(model: nn.Module, tables: int = 0) -> ValueEmbeddings:
    """In place: add `model.value_embeddings` (the tables, `table_layout` deciding which layer reads
    which) and a `ValueMix` as the `value_transform` of each reading layer's attention; returns the tables."""
    seq = sequence_model(model, "value_embeddings")
    layout = table_layout(len(seq.blocks), tables)
    found = attentions(seq, "value_embeddings")
    for attention in found:
        require_hook(attention, "value_transform", "value_embeddings", "block.attention")
    count = len({table for table in layout if table is not None})
    source = ValueEmbeddings(seq.embedding.num_embeddings, model_width(seq), count)
    model.value_embeddings = source
    model.register_forward_pre_hook(source.record)
    model.register_forward_hook(source.forget)
    for attention, table in zip(found, layout, strict=True):
        if table is not None:
            attention.value_transform = ValueMix(source, table, attention.heads)
    return source


@register("value_embeddings")
class ValueEmbeddingsMethod(Method):
    """Value embeddings: each chosen layer mixes its own embedding of the token ids into its attention values.

    Place: model, add (embedding tables and two mixing weights per layer); fewer steps (every layer sees the
    token's identity in its values, cheaply: a lookup, no matmul); throughout. At init the model gets
    `value_embeddings`, embedding tables of the token ids (vocab x width each, N(0, 0.02)), and each reading
    layer's attention a `value_transform` v -> a v + b table(ids), a = b = 0.5 learned, as in the NanoGPT
    speedrun. `tables=0` (default): one table per layer. `tables=k`: the speedrun's layout, the first k and
    the last k layers share tables 0..k-1 (the middle ones read none). The ids reach the attentions through
    a forward pre-hook on the model, so a user's model needs only the documented interface and the
    `value_transform` hook.

    Helps: language models: the NanoGPT speedrun's record 14 (value embeddings, inspired by Zhou et al.'s
    value residual learning, arXiv:2410.17897) went from 4.66 to 4.41 minutes, and record 15 took the
    shared first-and-last layout.

    Hurts: large vocabularies (each table is vocab x width parameters and optimizer state); methods that
    let a layer see fewer tokens than the ids (token dropping: refused) or that copy layers (depth stacking).

    Reference: KoszarskyB, 2024, "NanoGPT speedrun record 14: value embeddings", modded-nanogpt,
    https://github.com/KellerJordan/modded-nanogpt/tree/master/records/120424_ValueEmbed.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"token_dropping", "depth_stacking"})

    def __init__(self, tables: int = 0) -> None:
        if tables < 0:
            raise ValueError(f"tables must be 0 (one per layer) or positive, got {tables}")
        self.tables = tables

    def on_init(self, state: State) -> None:
        apply_value_embeddings(state.model, self.tables)
        retrain_changed_model(state)
