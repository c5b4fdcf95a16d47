"""QK-norm: queries and keys normalized per head before their scores, so attention logits cannot grow
without bound."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import attentions, sequence_model
from algospeed.methods.shared.transformer import add_qk_transform, retrain_changed_model
from algospeed.taxonomy.axes import How, Place, What, When, Where

NORMS = ("rms", "l2")


class QKNorm(nn.Module):
    """The `qk_transform` hook that normalizes each head's queries and keys.

    `rms`: each vector divided by its root mean square (unit RMS, norm sqrt(d)), so that the scores are
    sqrt(d) x the cosine (the NanoGPT speedrun's parameter-free form). `l2`: unit vectors, the queries
    scaled by a learned temperature g x sqrt(d), so that the scores are g x the cosine (Henry et al.)."""

    def __init__(self, norm: str = "rms", temperature: float = 1.0) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.temperature = nn.Parameter(torch.tensor(float(temperature))) if norm == "l2" else None

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        width = q.shape[-1]
        if self.temperature is None:  # on contiguous copies: faster than on the strided views of the qkv split
            return F.rms_norm(q.contiguous(), (width,)), F.rms_norm(k.contiguous(), (width,))
        scale = self.temperature * math.sqrt(width)
        return F.normalize(q, dim=-1) * scale, F.normalize(k, dim=-1)

    def extra_repr(self) -> str:
        return f"norm={self.norm}"


def initial_temperature(context: int) -> float:
    """Henry et al.'s initial g: log2(T^2 - T) for sequences of T tokens."""
    return math.log2(max(context * context - context, 2))


def apply_qk_norm(model: nn.Module, norm: str = "rms") -> list[QKNorm]:
    """In place: normalize every attention's queries and keys before any `qk_transform` already there (the
    speedrun's order; a rotation keeps the RMS, so rotary composes either way). Returns the norms."""
    seq = sequence_model(model, "qk_norm")
    norms = []
    for attention in attentions(seq, "qk_norm"):
        norms.append(QKNorm(norm, initial_temperature(seq.context)))
        add_qk_transform(attention, norms[-1], first=True)
    return norms


@register("qk_norm")
class QKNormalization(Method):
    """QK-norm: each head's queries and keys normalized before the attention scores are taken.

    Place: model, add (a normalization inside attention); fewer steps (bounded attention logits let a
    higher learning rate train stably); throughout. At init every block's attention gets a `qk_transform`
    that normalizes queries and keys over the head width, placed before a transform already there (rotary
    composes in either listing order). `norm=rms` (default) divides by the root mean square with no
    parameters, as the NanoGPT speedrun does; `norm=l2` makes unit vectors and learns one temperature
    per layer, initialized to log2(T^2 - T) for the model's context T (Henry et al.).

    Helps: transformers trained at high learning rates, where attention logits blow up; the speedrun took
    ReLU-squared with QK-norm for a 1.47x step.

    Hurts: tasks where sharp attention must come from large logits (the RMS form caps the scores at
    sqrt(d) x cosine, which a small head width keeps soft); two normalizations per attention.

    Reference: Alex Henry, Prudhvi Raj Dachapally, Shubham Shantaram Pawar, Yuxuan Chen, 2020, "Query-Key
    Normalization for Transformers", Findings of EMNLP 2020, arXiv:2010.04245.
    """

    place = Place(where=(Where.MODEL,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.TOKENS})

    def __init__(self, norm: str = "rms") -> None:
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm

    def on_init(self, state: State) -> None:
        apply_qk_norm(state.model, self.norm)
        if self.norm == "l2":
            retrain_changed_model(state)  # the temperatures
