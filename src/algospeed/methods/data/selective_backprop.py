"""Selective backprop: score each batch with a forward pass and backpropagate only its highest-loss samples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.batch import IGNORE_INDEX
from algospeed.core.callback import Method
from algospeed.core.flops import shape_signature
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

SELECTIONS = ("topk", "probabilistic")


def per_sample_losses(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    forward: Callable[[nn.Module], Any] | None = None,
) -> torch.Tensor:
    """Cross-entropy of each sample under `model` (for sequences, the mean over its judged positions),
    without gradients and without changing the model's buffers (batch-norm statistics are restored, so
    the scoring pass does not count twice). `forward(model)` runs the model (default: `model(inputs)`)."""
    saved = [buffer.detach().clone() for buffer in model.buffers()]
    try:
        with torch.no_grad():
            outputs = model(inputs) if forward is None else forward(model)
            losses = F.cross_entropy(
                outputs.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="none"
            ).view(len(targets), -1)
            judged = (targets != IGNORE_INDEX).view(len(targets), -1).sum(dim=1).clamp(min=1)
            return losses.sum(dim=1) / judged
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved, strict=True):
                buffer.copy_(value)


def select_samples(
    losses: torch.Tensor,
    fraction: float,
    selection: str = "topk",
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sorted indices of the `round(fraction * N)` samples to keep (at least one).

    `topk` keeps the highest losses (ties by position). `probabilistic` draws that many without
    replacement with weights `percentile ** beta`, where a sample's percentile is its loss rank
    in the batch divided by N (Jiang et al.'s selection probability, computed within the batch)."""
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
    count = max(1, min(len(losses), round(fraction * len(losses))))
    if selection == "topk":
        chosen = torch.sort(losses, descending=True, stable=True).indices[:count]
    else:
        ranks = torch.empty(len(losses), dtype=torch.float64)
        ranks[torch.sort(losses.detach().cpu(), stable=True).indices] = torch.arange(1, len(losses) + 1).double()
        weights = (ranks / len(losses)) ** beta
        chosen = torch.multinomial(weights, count, replacement=False, generator=generator).to(losses.device)
    return chosen.sort().values


def selective_backprop_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    fraction: float = 0.5,
    selection: str = "topk",
    beta: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of a batch to train on: the samples `model` finds hardest (see `select_samples`)."""
    chosen = select_samples(per_sample_losses(model, inputs, targets), fraction, selection, beta, generator)
    return inputs[chosen], targets[chosen]


@register("selective_backprop")
class SelectiveBackprop(Method):
    """Forward each whole batch without gradients and train only on its highest-loss samples.

    Place: data (which samples), remove (backward passes of easy samples), both (cheaper steps,
    more useful ones), throughout (or within the progress window [start, end)).
    At `after_dataloader` the batch is scored by a no-grad forward (in training mode, batch-norm
    statistics restored afterwards) charged through `state.counted`; `state.batch` is replaced by
    the `fraction` of samples with the highest cross-entropy (`selection=topk`, deterministic) or by
    as many drawn with probability rising with their loss percentile (`selection=probabilistic`,
    weights `percentile ** beta`, from `state.generator`). The step then runs on that subset, so a
    step costs the scoring forward plus a subset step. Samples and epochs still count the whole
    batch that was loaded.

    Helps: large, partly easy datasets where many samples are already learnt, and models whose
    backward pass dominates the step: the backward goes where the loss is.

    Hurts: small batches (the subset is noisy); noisy labels (the highest losses are often the
    mislabelled samples); early training, when nearly every sample is informative (start later
    with `start`); losses other than cross-entropy (the score is cross-entropy).

    Reference: Angela H. Jiang, Daniel L.-K. Wong, Giulio Zhou, David G. Andersen, Jeffrey Dean,
    Gregory R. Ganger, Gauri Joshi, Michael Kaminsky, Michael Kozuch, Zachary C. Lipton and Padmanabhan
    Pillai, 2019, "Accelerating Deep Learning by Focusing on the Biggest Losers", arXiv:1910.00762.
    """

    place = Place(where=(Where.DATA,), what=(What.REMOVE,), how=How.BOTH, when=(When.THROUGHOUT,))
    search_space = {"fraction": {"linear": [0.3, 0.8]}}  # noqa: RUF012 (read-only class data, typed on Method)
    conflicts = frozenset({"mixup", "cutmix"})
    extra_compute = True

    def __init__(
        self,
        fraction: float = 0.5,
        selection: str = "topk",
        beta: float = 1.0,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"fraction (of each batch kept) must be in (0, 1], got {fraction}")
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        if beta <= 0:
            raise ValueError(f"beta must be positive, got {beta}")
        if not 0.0 <= start < end <= 1.0:
            raise ValueError(f"need 0 <= start < end <= 1 (a progress window), got start={start}, end={end}")
        self.fraction = fraction
        self.selection = selection
        self.beta = beta
        self.start = start
        self.end = end

    def on_after_dataloader(self, state: State) -> None:
        if not self.start <= state.progress < self.end:
            return
        batch = state.batch
        kind = ("selective_backprop.score", shape_signature(batch.inputs), state.model_version, state.step_tag)
        losses = state.counted(
            kind,
            lambda: per_sample_losses(
                state.model, batch.inputs, batch.targets, forward=lambda model: state.forward(model, batch)
            ),
        )
        chosen = select_samples(losses, self.fraction, self.selection, self.beta, state.generator)
        state.batch = batch.select(chosen)
