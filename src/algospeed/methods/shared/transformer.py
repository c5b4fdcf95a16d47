"""What the language-model architecture methods share: chaining query/key transforms, dropping learned
positions, the optional hooks a method may need, and putting a changed model back in training."""

from __future__ import annotations

import torch
from torch import nn

from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.workloads.gpt import SequenceModel


class ChainedQK(nn.Module):
    """Several `(q, k) -> (q, k)` transforms applied in order, as one `qk_transform` hook."""

    def __init__(self, transforms: list[nn.Module]) -> None:
        super().__init__()
        self.transforms = nn.ModuleList(transforms)

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for transform in self.transforms:
            q, k = transform(q, k)
        return q, k


def add_qk_transform(attention: nn.Module, transform: nn.Module, *, first: bool = False) -> None:
    """Install `transform` as `attention.qk_transform`, chained with one already there (after it, or before
    it with `first`), so that rotary positions and QK-norm compose in either listing order."""
    existing = attention.qk_transform
    if existing is None:
        attention.qk_transform = transform
        return
    chain = list(existing.transforms) if isinstance(existing, ChainedQK) else [existing]
    attention.qk_transform = ChainedQK([transform, *chain] if first else [*chain, transform])


def drop_learned_positions(model: SequenceModel, method: str) -> None:
    """Replace `model.positions` by `nn.Identity()` for a method that encodes positions in attention; a
    model whose positions are already gone (another position method) is a usage error."""
    if isinstance(model.positions, nn.Identity):
        raise UsageError(f"method {method!r} replaces the model's positions, and it has none left to replace")
    model.positions = nn.Identity()


def require_hook(module: nn.Module, hook: str, method: str, where: str) -> None:
    """A usage error naming `method` when `module` lacks the optional `hook` attribute (see
    `algospeed.workloads.gpt`); `where` says whose module it is."""
    if not hasattr(module, hook):
        raise UsageError(
            f"method {method!r} sets {where}.{hook}, an optional hook of algospeed.workloads.gpt's interface, "
            f"and {type(module).__name__} offers none"
        )


def model_width(model: SequenceModel) -> int:
    """The residual stream's width (the token embedding's)."""
    return int(model.embedding.embedding_dim)


def retrain_changed_model(state: State) -> None:
    """After surgery that adds or removes parameters: new modules onto the run's device, and an optimizer
    over the parameters the model now has."""
    state.model.to(state.device)
    state.rebuild_optimizer()
