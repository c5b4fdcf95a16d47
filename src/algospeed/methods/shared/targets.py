"""Small pieces several methods share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def as_probabilities(targets: torch.Tensor, classes: int) -> torch.Tensor:
    """Class indices (N,) as one-hot probabilities (N, classes); probabilities pass through.

    Methods that soften or mix labels (MixUp, CutMix, label smoothing) all convert at
    `before_loss`, when the model's output gives the number of classes, so that they compose in
    any order and the default cross-entropy loss takes the result as it is.
    """
    if torch.is_floating_point(targets):
        return targets
    return F.one_hot(targets, classes).to(torch.float32)
