"""Stochastic depth: skip whole residual branches at random during training, more often deeper in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.surgery import is_residual_block
from algospeed.taxonomy.axes import How, Place, What, When, Where

DISTRIBUTIONS = ("linear", "uniform")


class StochasticBranch(nn.Module):
    """A residual branch that a training step may skip (`dropped`), returning a zero that broadcasts over the
    shortcut. Kept with probability 1 - drop_rate; the expectation is matched by scaling the branch by
    1 - drop_rate at eval (as in the paper) or, with `inverted`, by 1 / (1 - drop_rate) in training."""

    def __init__(self, branch: nn.Module, drop_rate: float, inverted: bool = False) -> None:
        super().__init__()
        self.branch = branch
        self.drop_rate = drop_rate
        self.inverted = inverted
        self.dropped = False
        self.training = branch.training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropped:
            return x.new_zeros(())
        out = self.branch(x)
        if self.training:
            return out / (1 - self.drop_rate) if self.inverted else out
        return out if self.inverted else out * (1 - self.drop_rate)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate:.4g}, inverted={self.inverted}"


def apply_stochastic_depth(
    model: nn.Module, drop_rate: float = 0.2, distribution: str = "linear", inverted: bool = False
) -> list[StochasticBranch]:
    """Wrap the `residual` branch of every residual block in a `StochasticBranch`, in place.

    With `linear`, the l-th of L blocks (from the input) is dropped with probability drop_rate * l / L,
    so the last block reaches drop_rate; with `uniform`, every block uses drop_rate. Returns the
    branches in depth order (branches wrapped before are returned as they are).
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    blocks = [module for module in model.modules() if is_residual_block(module)]
    branches = []
    for depth, block in enumerate(blocks, start=1):
        if not isinstance(block.residual, StochasticBranch):
            rate = drop_rate * depth / len(blocks) if distribution == "linear" else drop_rate
            block.residual = StochasticBranch(block.residual, rate, inverted)
        branches.append(block.residual)
    return branches


def sample_drops(branches: Sequence[StochasticBranch], generator: torch.Generator | None = None) -> list[bool]:
    """Decide, for one training step, which branches are skipped (one uniform draw per branch)."""
    draws = torch.rand(len(branches), generator=generator)
    for branch, draw in zip(branches, draws.tolist(), strict=True):
        branch.dropped = draw < branch.drop_rate
    return [branch.dropped for branch in branches]


@register("stochastic_depth")
class StochasticDepth(Method):
    """Stochastic depth: each training step skips residual branches at random, deeper ones more often.

    Place: model, remove (whole residual branches, forward and backward); both (cheaper steps on
    average, and a regularizer that can reach a target in fewer steps); throughout. At init the
    `residual` branch of every module with `residual` and `shortcut` submodules is wrapped; before each
    step one draw per block from the run's saved generator decides which are skipped for the whole
    batch. The l-th of L blocks is skipped with probability drop_rate * l / L (linear) or drop_rate
    (uniform). At eval nothing is skipped and each branch is scaled by its survival probability
    (or, with `inverted`, the kept branches are scaled up by 1 / survival in training instead).
    Each distinct skip pattern is a separate FLOP-counting kind, so cheaper steps are charged less.

    Helps: deep residual networks (the paper: 110 to 1202 layers), where it cuts training time by
    about a quarter and often improves test error.

    Hurts: shallow networks (few blocks: large variance, little saving, and dropping a block removes a
    large share of capacity); blocks whose output is not shortcut + residual (not touched); very deep
    networks pay one FLOP count per new skip pattern.

    Reference: Huang, Sun, Liu, Sedra, Weinberger, 2016, "Deep Networks with Stochastic Depth",
    ECCV 2016, arXiv:1603.09382.
    """

    place = Place(where=(Where.MODEL,), what=(What.REMOVE,), how=How.BOTH, when=(When.THROUGHOUT,))
    conflicts = frozenset({"progressive_growing"})

    def __init__(self, drop_rate: float = 0.2, distribution: str = "linear", inverted: bool = False) -> None:
        if not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.drop_rate = drop_rate
        self.distribution = distribution
        self.inverted = inverted
        self.branches: list[StochasticBranch] = []

    def on_init(self, state: State) -> None:
        self.branches = apply_stochastic_depth(state.model, self.drop_rate, self.distribution, self.inverted)

    def on_after_dataloader(self, state: State) -> None:
        dropped = sample_drops(self.branches, state.generator)
        if any(dropped):
            state.step_tag += "|sd:" + "".join("1" if d else "0" for d in dropped)

    def on_batch_end(self, state: State) -> None:
        for branch in self.branches:
            branch.dropped = False

    def state_dict(self) -> dict[str, Any]:
        return {}  # the draws come from state.generator, which the checkpoint saves
