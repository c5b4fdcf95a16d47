"""CutMix: paste a random box (or segment) of another sample into each sample, mixing labels by area."""

from __future__ import annotations

import torch

from algospeed.core.data_kind import DataKind
from algospeed.methods.data.mixup import SampleMixing, mix_targets, sample_beta
from algospeed.methods.registry import register


def random_box(
    spatial: tuple[int, ...], area: float, generator: torch.Generator | None = None
) -> tuple[tuple[int, int], ...]:
    """A box covering about `area` (a fraction) of a grid of `spatial` sides, centred uniformly at
    random and clipped to the grid: one (begin, end) per side."""
    ratio = max(0.0, min(1.0, area)) ** (1.0 / len(spatial))
    bounds = []
    for side in spatial:
        cut = int(side * ratio)
        centre = int(torch.randint(side, (), generator=generator))
        bounds.append((max(centre - cut // 2, 0), min(centre + cut // 2 + cut % 2, side)))
    return tuple(bounds)


def cutmix_inputs(
    inputs: torch.Tensor, alpha: float = 1.0, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Paste one random box of a permuted copy into every sample of a batch (N, C, *spatial).

    Returns (mixed inputs, weight, permutation), where the weight is the fraction of each sample
    that is still its own (1 - the clipped box's area), to mix the labels with."""
    if alpha <= 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    if inputs.dim() < 3:
        raise ValueError(f"cutmix takes (N, C, L) or (N, C, H, W) inputs, got shape {tuple(inputs.shape)}")
    spatial = tuple(inputs.shape[2:])
    weight = sample_beta(alpha, alpha, generator)
    permutation = torch.randperm(len(inputs), generator=generator).to(inputs.device)
    box = random_box(spatial, 1.0 - weight, generator)
    region = (slice(None), slice(None), *(slice(begin, end) for begin, end in box))
    mixed = inputs.clone()
    mixed[region] = inputs[permutation][region]
    pasted = 1
    for begin, end in box:
        pasted *= end - begin
    total = 1
    for side in spatial:
        total *= side
    return mixed, 1.0 - pasted / total, permutation


def cutmix_batch(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    classes: int,
    alpha: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix a batch: (mixed inputs, target probabilities (N, classes) mixed by area)."""
    mixed, weight, permutation = cutmix_inputs(inputs, alpha, generator)
    return mixed, mix_targets(targets, weight, permutation, classes)


@register("cutmix")
class CutMix(SampleMixing):
    """Paste a random box of another sample into each sample and mix their labels by the box's area.

    Place: data (inputs and labels), add (a regularizing augmentation), fewer steps, throughout.
    At `after_dataloader` one box per batch (area ~ 1 - Beta(alpha, alpha), centred at random from
    `state.generator`, clipped to the image) is copied from a random permutation of the batch; for
    1D signals (N, C, L) the box is a contiguous segment. At `before_loss` the targets become
    probabilities mixed in proportion to the area actually pasted. It cannot be combined with
    MixUp (the other mixing) or selective backprop (which would re-select the mixed batch).

    Helps: image classification and localization with enough training time: CutMix regularizes
    more than Cutout and keeps every pixel informative, improving accuracy per epoch in long runs.

    Hurts: short runs (the harder task slows early progress); inputs where a pasted region changes
    the meaning non-proportionally to its area (small objects, 8x8 digits); hard-label losses.

    Reference: Sangdoo Yun, Dongyoon Han, Seong Joon Oh, Sanghyuk Chun, Junsuk Choe and Youngjoon
    Yoo, 2019, "CutMix: Regularization Strategy to Train Strong Classifiers with Localizable
    Features", ICCV 2019, arXiv:1905.04899.
    """

    conflicts = frozenset({"mixup", "selective_backprop"})
    data_kinds = frozenset({DataKind.IMAGES, DataKind.SIGNALS})

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)

    def mix(self, inputs: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, float, torch.Tensor]:
        return cutmix_inputs(inputs, self.alpha, generator)
