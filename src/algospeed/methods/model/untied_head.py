"""Untied head: the output head gets its own weight instead of sharing the token embedding's."""

from __future__ import annotations

from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import sequence_model
from algospeed.methods.shared.transformer import retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where

INITS = ("copy", "zero")


def untie_head(model: nn.Module, init: str = "copy") -> nn.Parameter:
    """In place: `model.head.weight` becomes a separate parameter, a copy of the embedding it was tied to
    (`copy`: the model computes the same function until they train apart) or zeros (`zero`: uniform
    predictions at first, as the speedrun's record did); returns it."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    seq = sequence_model(model, "untied_head")
    if seq.head.weight is not seq.embedding.weight:
        raise UsageError("method 'untied_head' unties a head tied to the embedding, and this model's head is untied")
    weight = seq.embedding.weight.detach().clone()
    seq.head.weight = nn.Parameter(weight if init == "copy" else weight.zero_())
    return seq.head.weight


@register("untied_head")
class UntiedHead(Method):
    """Untied embedding and head: the output projection becomes a parameter of its own.

    Place: model, add (a separate vocab x width output matrix); fewer steps (input and output embeddings
    can learn different roles); throughout. At init a head tied to `model.embedding` gets its own weight:
    a copy of the embedding's (`init=copy`, default: the run starts from the tied model's function) or
    zeros (`init=zero`, as the speedrun's record initialized its head); the optimizer is rebuilt over it.
    A model whose head is already untied (the workload option `head=untied`) is refused.

    Helps: language models whose embedding and unembedding pull apart; the NanoGPT speedrun's record 8
    (untied head, an RMSNorm after the embedding, a zero head) went from 12.0 to 10.8 minutes. It costs
    no FLOPs, only a vocab x width matrix of parameters and its optimizer state.

    Hurts: large vocabularies with small models, where the extra matrix is a large share of the
    parameters; a small character vocabulary gains little from the freedom.

    Reference: Grad62304977 and Keller Jordan, 2024, "NanoGPT speedrun record 8: untied embed and lm_head",
    modded-nanogpt, https://github.com/KellerJordan/modded-nanogpt/tree/master/records/110324_UntieEmbed.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})

    def __init__(self, init: str = "copy") -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        self.init = init

    def on_init(self, state: State) -> None:
        untie_head(state.model, self.init)
        retrain_changed_model(state)
