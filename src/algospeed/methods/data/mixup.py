"""MixUp: train on convex combinations of pairs of samples and of their labels."""

from __future__ import annotations

import math

import torch

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.targets import as_probabilities
from algospeed.taxonomy.axes import How, Place, What, When, Where


def _sample_gamma(shape: float, generator: torch.Generator | None) -> float:
    """One Gamma(shape, 1) draw by Marsaglia and Tsang's method, from `generator` (torch's own
    Gamma and Beta samplers take no generator)."""
    if shape < 1.0:  # Gamma(a) = Gamma(a + 1) * U^(1/a)
        uniform = torch.rand((), generator=generator).item()
        return _sample_gamma(shape + 1.0, generator) * uniform ** (1.0 / shape)
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = torch.randn((), generator=generator).item()
        v = (1.0 + c * x) ** 3
        if v <= 0:
            continue
        u = torch.rand((), generator=generator).item()
        if u > 0 and math.log(u) < 0.5 * x * x + d - d * v + d * math.log(v):
            return d * v


def sample_beta(alpha: float, beta: float, generator: torch.Generator | None = None) -> float:
    """One Beta(alpha, beta) draw from `generator`, as X / (X + Y) with X, Y Gamma-distributed."""
    x = _sample_gamma(alpha, generator)
    y = _sample_gamma(beta, generator)
    return x / (x + y) if x + y > 0 else 0.5


def mix_targets(targets: torch.Tensor, weight: float, permutation: torch.Tensor, classes: int) -> torch.Tensor:
    """`weight * p + (1 - weight) * p[permutation]` with `p` the targets as probabilities (N, classes)."""
    probabilities = as_probabilities(targets, classes)
    return weight * probabilities + (1.0 - weight) * probabilities[permutation.to(probabilities.device)]


def mixup_inputs(
    inputs: torch.Tensor, alpha: float = 0.2, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Mix each sample with a random partner: returns (mixed inputs, weight, permutation), where
    `mixed = weight * inputs + (1 - weight) * inputs[permutation]` and weight ~ Beta(alpha, alpha)."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    weight = sample_beta(alpha, alpha, generator)
    permutation = torch.randperm(len(inputs), generator=generator).to(inputs.device)
    return weight * inputs + (1.0 - weight) * inputs[permutation], weight, permutation


def mixup_batch(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    classes: int,
    alpha: float = 0.2,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MixUp a batch: (mixed inputs, mixed target probabilities (N, classes))."""
    mixed, weight, permutation = mixup_inputs(inputs, alpha, generator)
    return mixed, mix_targets(targets, weight, permutation, classes)


class SampleMixing(Method):
    """Shared by MixUp and CutMix: mix the inputs after the data loader, then mix the targets the
    same way at `before_loss`, when the model's output gives the number of classes."""

    place = Place(
        where=(Where.DATA, Where.OPTIMIZATION), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,)
    )

    def __init__(self, alpha: float) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be positive, got {alpha}")
        self.alpha = alpha
        self._mixing: tuple[float, torch.Tensor] | None = None

    def mix(self, inputs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, torch.Tensor]:
        """(mixed inputs, weight of each sample's own label, partner permutation)."""
        raise NotImplementedError

    def on_after_dataloader(self, state: State) -> None:
        mixed, weight, permutation = self.mix(state.batch.inputs, state.generator)
        self._mixing = (weight, permutation)
        state.batch = state.batch.replace(inputs=mixed)

    def on_before_loss(self, state: State) -> None:
        if self._mixing is None:
            return
        weight, permutation = self._mixing
        self._mixing = None
        targets = mix_targets(state.batch.targets, weight, permutation, state.outputs.shape[-1])
        state.batch = state.batch.replace(targets=targets)


@register("mixup")
class MixUp(SampleMixing):
    """Train on convex combinations of pairs of samples and of their labels.

    Place: data (inputs and labels), add (a regularizing augmentation), fewer steps, throughout.
    At `after_dataloader` each batch is mixed with a random permutation of itself, with one weight
    drawn from Beta(alpha, alpha) per batch (from `state.generator`); at `before_loss` the targets
    are converted to probabilities and mixed with the same weight and permutation. Methods that
    change which samples a batch holds between those two events (selective backprop) cannot be
    combined with it; CutMix is the alternative mixing, not a companion.

    Helps: image classification with enough training time for the regularization to pay off:
    better accuracy per epoch late in long runs, robustness to label noise, better calibration.

    Hurts: short runs (the mixed task is harder, so the training loss falls more slowly); tasks
    where mixed inputs are meaningless; losses that need hard labels.

    Reference: Hongyi Zhang, Moustapha Cisse, Yann N. Dauphin and David Lopez-Paz, 2018, "mixup:
    Beyond Empirical Risk Minimization", ICLR 2018, arXiv:1710.09412.
    """

    conflicts = frozenset({"cutmix", "selective_backprop"})
    search_space = {"alpha": {"log": [0.05, 1.0]}}  # noqa: RUF012 (read-only class data, typed on Method)
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS, DataKind.TABULAR})

    def __init__(self, alpha: float = 0.2) -> None:
        super().__init__(alpha)

    def mix(self, inputs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, torch.Tensor]:
        return mixup_inputs(inputs, self.alpha, generator)
