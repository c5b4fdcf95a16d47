"""Quality metrics and the evaluation pass: sums over the eval set, with each metric's direction."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.data import Loader, to_device


@dataclass(frozen=True)
class Metric:
    """A quality measure: `batch_sum(outputs, targets)` summed over the eval set, divided by its size."""

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
    return (outputs.argmax(dim=-1) == targets).sum()


def _cross_entropy_sum(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(outputs.float(), targets, reduction="sum")


ACCURACY = Metric("accuracy", True, _correct)
CROSS_ENTROPY = Metric("loss", False, _cross_entropy_sum)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, metrics: Sequence[Metric], device: Any) -> dict[str, float]:
    """Each metric's mean over the whole eval set, with the model in eval mode (then restored)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(metrics), dtype=torch.float64, device=device)
    count = 0
    try:
        for batch in loader.iter_epoch(0):
            inputs, targets = to_device(batch, device)
            outputs = model(inputs)
            for i, metric in enumerate(metrics):
                sums[i] += metric.batch_sum(outputs, targets).double()
            count += targets.numel() if targets.dim() > 1 else len(targets)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("the eval set is empty")
    return {metric.name: value / count for metric, value in zip(metrics, sums.tolist(), strict=True)}
