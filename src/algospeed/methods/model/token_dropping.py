"""Token dropping (random-LTD): each middle layer trains on a random subset of the tokens; the others skip it
and rejoin the sequence, in their places, after it."""

from __future__ import annotations

from typing import Any

import torch

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.sequence import BlockWrapper, check_ramp, ramped_length, sequence_model, wrap_blocks
from algospeed.taxonomy.axes import How, Place, What, When, Where

SEED_RANGE = 2**62


def kept_positions(rows: int, length: int, keep: int, generator: torch.Generator) -> torch.Tensor:
    """(rows, keep) positions in [0, length), a uniformly random subset per row, in increasing order (so
    that the kept tokens keep their causal order)."""
    scores = torch.rand(rows, length, generator=generator)
    return scores.topk(keep, dim=1).indices.sort(dim=1).values


def drop_tokens_through(block: torch.nn.Module, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """`block` applied to the tokens at `positions` (N, keep) of `x` (N, T, width) alone; every other token
    passes unchanged, and all come back in their original places."""
    index = positions.to(x.device).unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.scatter(1, index, block(x.gather(1, index)))


class TokenDroppingBlock(BlockWrapper):
    """A middle block that, in training, sees only `keep` random tokens of each sequence (drawn from `seed`);
    at eval, or with `keep` None, the whole sequence."""

    def __init__(self, block: torch.nn.Module) -> None:
        super().__init__(block)
        self.keep: int | None = None
        self.seed = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.keep is None or self.keep >= x.shape[1]:
            return self.block(x)
        positions = kept_positions(x.shape[0], x.shape[1], self.keep, torch.Generator().manual_seed(self.seed))
        return drop_tokens_through(self.block, x, positions)

    def extra_repr(self) -> str:
        return f"keep={self.keep}"


def apply_token_dropping(model: torch.nn.Module) -> list[TokenDroppingBlock]:
    """Wrap every middle block of a sequence model (all but the first and the last) in place."""
    seq = sequence_model(model, "token_dropping")
    return wrap_blocks(seq, range(1, len(seq.blocks) - 1), TokenDroppingBlock)  # type: ignore[return-value]


@register("token_dropping")
class TokenDropping(Method):
    """Random and layerwise token dropping: the middle layers train on a growing random subset of the tokens.

    Place: model, remove (the middle layers' work on the dropped tokens, forward and backward); cheaper
    steps; scheduled. At init every block but the first and the last is wrapped. Before each training
    step a seed is drawn from the run's saved generator, and each wrapped layer draws its own uniformly
    random subset of `keep` positions per sequence from it; the kept tokens go through the layer in
    their causal order, the dropped ones bypass it unchanged, and all are put back in their places for
    the next layer (the first and last layers always see every token). `keep` grows linearly from
    `initial_fraction` of the sequence to all of it at progress `ramp_end` (random-LTD's monotonic
    sequence-length growth), rounded down to a multiple of `multiple`. Evaluation keeps every token.

    Helps: transformers with several middle layers, where attention and MLP work scale with the tokens a
    layer sees: a kept fraction r makes each middle layer's step about r times as costly.

    Hurts: shallow models (4 layers: only 2 middle ones, so at most half the blocks save anything); a
    relative position scheme inside attention (rotary, ALiBi) sees the kept tokens' ranks, not their true
    distances; the gathering and scattering cost a little memory traffic.

    Reference: Zhewei Yao, Xiaoxia Wu, Conglong Li, Connor Holmes, Minjia Zhang, Cheng Li and Yuxiong He,
    2022, "Random-LTD: Random and Layerwise Token Dropping Brings Efficient Training for Large-Scale
    Transformers", arXiv:2211.11586.
    """

    place = Place(where=(Where.MODEL,), what=(What.REMOVE,), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    data_kinds = frozenset({DataKind.TOKENS})
    conflicts = frozenset({"depth_stacking"})

    def __init__(self, initial_fraction: float = 0.5, ramp_end: float = 0.7, multiple: int = 8) -> None:
        check_ramp(initial_fraction, ramp_end, multiple, "initial_fraction")
        self.initial_fraction = initial_fraction
        self.ramp_end = ramp_end
        self.multiple = multiple
        self.layers: list[TokenDroppingBlock] = []

    def on_init(self, state: State) -> None:
        self.layers = apply_token_dropping(state.model)

    def keep_at(self, length: int, progress: float) -> int:
        """Tokens per sequence each middle layer trains on at `progress`."""
        return ramped_length(length, progress, self.initial_fraction, self.ramp_end, self.multiple)

    def on_after_dataloader(self, state: State) -> None:
        length = state.batch.inputs.shape[1]
        keep = self.keep_at(length, state.progress)
        seed = int(torch.randint(SEED_RANGE, (), generator=state.generator))
        for depth, layer in enumerate(self.layers):
            layer.keep, layer.seed = (keep, seed + depth) if keep < length else (None, 0)
        if keep < length and self.layers:
            state.step_tag += f"|ltd:{keep}"

    def state_dict(self) -> dict[str, Any]:
        return {}  # the draws come from state.generator, which the checkpoint saves
