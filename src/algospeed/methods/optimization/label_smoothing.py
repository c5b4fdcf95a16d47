"""Label smoothing: train against a mixture of the targets and the uniform distribution over classes."""

from __future__ import annotations

import torch

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.methods.shared.targets import as_probabilities
from algospeed.taxonomy.axes import How, Place, What, When, Where


def smooth_labels(targets: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    """Class indices (N,) or probabilities (N, classes) -> `(1 - smoothing) * p + smoothing / classes`.

    Probabilities in (soft labels from MixUp or CutMix) give probabilities out, so the order in which
    label-mixing methods run does not matter: both operations are affine and keep rows summing to one.
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    probabilities = as_probabilities(targets, classes)
    return probabilities * (1.0 - smoothing) + smoothing / classes


@register("label_smoothing")
class LabelSmoothing(Method):
    """Train against targets mixed with the uniform distribution, so the model stops chasing certainty.

    Place: data (the labels), replace (one-hot targets by softened ones), fewer steps, throughout.
    The targets are converted at `before_loss`, after the model's output gives the number of
    classes; class indices and probabilities (from MixUp or CutMix) are both accepted.

    Helps: classification with many classes or noisy labels, long-enough runs where an over-confident
    model stops improving; it usually improves held-out accuracy and calibration a little for free.

    Hurts: short runs and few classes, where it mostly slows the fall of the training loss; knowledge
    distillation from a smoothed teacher; tasks that need calibrated confidence on rare classes.

    Reference: Christian Szegedy, Vincent Vanhoucke, Sergey Ioffe, Jonathon Shlens and Zbigniew Wojna,
    2016, "Rethinking the Inception Architecture for Computer Vision", CVPR 2016, arXiv:1512.00567.
    """

    place = Place(where=(Where.DATA,), what=(What.REPLACE,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    search_space = {"smoothing": {"linear": [0.02, 0.2]}}  # noqa: RUF012 (read-only class data, typed on Method)

    def __init__(self, smoothing: float = 0.1) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing

    def on_before_loss(self, state: State) -> None:
        batch = state.batch
        state.batch = batch.replace(targets=smooth_labels(batch.targets, state.outputs.shape[-1], self.smoothing))
