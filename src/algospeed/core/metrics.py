"""Quality metrics and the evaluation pass: sums over the eval set, with each metric's direction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.batch import IGNORE_INDEX, Batch
from algospeed.core.data import Loader

Forward = Callable[[nn.Module, Batch], Any]


def forward_inputs(model: nn.Module, batch: Batch) -> Any:
    """The default forward: the model on the batch's inputs."""
    return model(batch.inputs)


def cross_entropy(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy for class outputs (N, C) or sequence outputs (N, T, C), with class-index targets
    (positions holding `IGNORE_INDEX` skipped) or probability targets of the outputs' shape."""
    if torch.is_floating_point(targets):
        return F.cross_entropy(outputs.flatten(0, -2), targets.flatten(0, -2))
    return F.cross_entropy(outputs.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX)


@dataclass(frozen=True)
class Metric:
    """A quality measure: `batch_sum(outputs, targets)` summed over the eval set, divided by the number of
    targets judged (samples, or token positions not holding `IGNORE_INDEX`)."""

    name: str
    higher_is_better: bool
    batch_sum: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def better(self, a: float, b: float) -> bool:
        """Whether quality `a` is at least as good as `b`."""
        return reaches(a, b, self.higher_is_better)


def reaches(quality: float, target: float, higher_is_better: bool) -> bool:
    """Whether `quality` is at or beyond `target` in the metric's direction."""
    return quality >= target if higher_is_better else quality <= target


def _correct(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs.argmax(dim=-1) == targets) & (targets != IGNORE_INDEX)).sum()


def _cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        outputs.float().flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def judged(targets: torch.Tensor) -> int:
    """How many targets a metric judges: every sample, or every token position not ignored."""
    if targets.dim() > 1:
        return int((targets != IGNORE_INDEX).sum())
    return len(targets)


ACCURACY = Metric("accuracy", True, _correct)
CROSS_ENTROPY = Metric("loss", False, _cross_entropy_sum)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Loader, metrics: Sequence[Metric], device: Any, forward: Forward = forward_inputs
) -> dict[str, float]:
    """Each metric's mean over the whole eval set, with the model in eval mode (then restored)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(metrics), dtype=torch.float64, device=device)
    count = 0
    try:
        for batch in loader.iter_epoch(0):
            batch = Batch.of(batch).to(device)
            outputs = forward(model, batch)
            for i, metric in enumerate(metrics):
                sums[i] += metric.batch_sum(outputs, batch.targets).double()
            count += judged(batch.targets)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the eval set is empty")
    return {metric.name: value / count for metric, value in zip(metrics, sums.tolist(), strict=True)}


LOG2_E = 1.4426950408889634  # bits per nat, 1 / ln 2


def _bits_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return _cross_entropy_sum(outputs, targets) * LOG2_E


# The cross-entropy in bits, per token position: bits per character for a character vocabulary, bits per
# token for any other (a BPE token spans several characters, so its bits are not comparable per character).
BITS_PER_CHAR = Metric("bits_per_char", False, _bits_sum)
BITS_PER_TOKEN = Metric("bits_per_token", False, _bits_sum)
