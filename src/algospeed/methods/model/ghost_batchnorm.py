"""Ghost batch normalization: normalize virtual batches ("ghost batches") of a fixed size in training."""

from __future__ import annotations

import math

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import replace_modules
from algospeed.taxonomy.axes import How, Place, What, When, Where


class _Ghost:
    """Training forward over `ceil(N / ghost_batch_size)` near-equal chunks of the batch, each normalized by its
    own statistics; the running statistics are updated once per chunk with the momentum divided by the number
    of chunks (as Composer does), so they move about as fast as with plain batch norm. Eval is unchanged."""

    ghost_batch_size: int

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalize = super().forward  # type: ignore[misc]
        if not self.training or x.shape[0] <= self.ghost_batch_size:
            return normalize(x)
        chunks = math.ceil(x.shape[0] / self.ghost_batch_size)
        momentum = self.momentum
        try:
            if momentum is not None:
                self.momentum = momentum / chunks
            return torch.cat([normalize(chunk) for chunk in x.chunk(chunks)])
        finally:
            self.momentum = momentum

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, ghost_batch_size={self.ghost_batch_size}"  # type: ignore[misc]


class GhostBatchNorm1d(_Ghost, nn.BatchNorm1d):
    """BatchNorm1d over ghost batches in training."""


class GhostBatchNorm2d(_Ghost, nn.BatchNorm2d):
    """BatchNorm2d over ghost batches in training."""


GHOSTS = {nn.BatchNorm1d: GhostBatchNorm1d, nn.BatchNorm2d: GhostBatchNorm2d}


def ghost_of(bn: nn.BatchNorm1d | nn.BatchNorm2d, ghost_batch_size: int) -> nn.Module:
    """A ghost batch norm that shares `bn`'s parameters and buffers (the same tensors: nothing is copied, and an
    optimizer built over `bn`'s parameters keeps working)."""
    ghost = nn.utils.skip_init(
        GHOSTS[type(bn)],
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        affine=bn.affine,
        track_running_stats=bn.track_running_stats,
        device=bn.weight.device if bn.affine else None,
    )
    ghost.ghost_batch_size = ghost_batch_size
    for name, param in bn.named_parameters(recurse=False):
        setattr(ghost, name, param)
    for name, buffer in bn.named_buffers(recurse=False):
        setattr(ghost, name, buffer)
    return ghost.train(bn.training)


def apply_ghost_batchnorm(model: nn.Module, ghost_batch_size: int = 32) -> int:
    """Replace every BatchNorm1d/2d (exactly those classes) by a ghost batch norm, in place; returns how many."""
    if ghost_batch_size < 2:
        raise ValueError(f"ghost_batch_size must be at least 2, got {ghost_batch_size}")
    return replace_modules(model, lambda m: type(m) in GHOSTS, lambda m: ghost_of(m, ghost_batch_size))


@register("ghost_batchnorm")
class GhostBatchNorm(Method):
    """Ghost batch norm: batch norm in training normalizes virtual batches of `ghost_batch_size` samples.

    Place: model, replace (the normalization layer); fewer steps (better generalization per step
    for large batches); throughout. At init every BatchNorm1d/2d becomes a ghost batch norm sharing
    its parameters and buffers; in training the batch is split into near-equal chunks of about
    `ghost_batch_size` samples, each normalized by its own mean and variance. Eval uses the running
    statistics as before. Batches no larger than `ghost_batch_size` are normalized as a whole.

    Helps: large-batch training, where whole-batch statistics lose the regularizing noise of small
    batches (the paper uses ghost batches of 128, with learning-rate scaling and longer training, to
    close most of the large-batch generalization gap).

    Hurts: small batches (nothing changes at or below `ghost_batch_size`); very small ghost batches
    give noisy statistics; the chunked normalization is a little slower than one fused call.
    The running statistics are updated once per chunk with the momentum divided by the number of
    chunks, an approximation to one update per batch.

    Reference: Hoffer, Hubara, Soudry, 2017, "Train longer, generalize better: closing the
    generalization gap in large batch training of neural networks", NeurIPS 2017, arXiv:1705.08741.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self, ghost_batch_size: int = 32) -> None:
        if ghost_batch_size < 2:
            raise ValueError(f"ghost_batch_size must be at least 2, got {ghost_batch_size}")
        self.ghost_batch_size = ghost_batch_size
        self.replaced = 0

    def on_init(self, state: State) -> None:
        self.replaced = apply_ghost_batchnorm(state.model, self.ghost_batch_size)
