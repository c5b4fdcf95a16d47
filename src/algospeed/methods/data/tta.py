"""Test-time augmentation: evaluate the weighted mean of the model's logits over mirrored and shifted views."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

View = Callable[[torch.Tensor], torch.Tensor]


def translate(x: torch.Tensor, shift: int) -> torch.Tensor:
    """Images (N, C, H, W) moved by `shift` pixels down and right (up and left when negative), the border
    reflected (airbench's one-pixel translations: crops of the reflect-padded image)."""
    pad = abs(shift)
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    top = pad - shift
    return padded[..., top : top + x.shape[-2], top : top + x.shape[-1]]


def mirror(x: torch.Tensor) -> torch.Tensor:
    """Images mirrored left to right."""
    return x.flip(-1)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _up_left(x: torch.Tensor) -> torch.Tensor:
    return translate(x, -1)


def _down_right(x: torch.Tensor) -> torch.Tensor:
    return translate(x, 1)


def _mirrored(view: View) -> View:
    return lambda x: mirror(view(x))


# (weight, view) pairs. "flip": the image and its mirror, equally. "flip_translate": airbench's 6 views,
# half the weight on that pair and a quarter on each pair shifted by one pixel (up-left, down-right).
VIEWS: dict[str, tuple[tuple[float, View], ...]] = {
    "flip": ((0.5, _identity), (0.5, mirror)),
    "flip_translate": (
        (0.25, _identity),
        (0.25, mirror),
        (0.125, _up_left),
        (0.125, _mirrored(_up_left)),
        (0.125, _down_right),
        (0.125, _mirrored(_down_right)),
    ),
}


def check_views(views: str) -> None:
    """A `ValueError` naming the valid view sets unless `views` is one."""
    if views not in VIEWS:
        raise ValueError(f"views must be one of {', '.join(VIEWS)}, got {views!r}")


def tta_logits(model: nn.Module, inputs: torch.Tensor, views: str = "flip") -> torch.Tensor:
    """The weighted mean of `model`'s outputs (logits, as airbench averages them) over the `views` of
    (N, C, H, W) `inputs`; one forward per view."""
    check_views(views)
    return sum(weight * model(view(inputs)) for weight, view in VIEWS[views])


class TTAWrapper(nn.Module):
    """`model` evaluated by `tta_logits`; it follows the wrapped model's training mode."""

    def __init__(self, model: nn.Module, views: str = "flip") -> None:
        super().__init__()
        check_views(views)
        self.model, self.views = model, views
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return tta_logits(self.model, x, self.views)


@register("tta")
class TTA(Method):
    """Test-time augmentation: evaluate the weighted mean of the model's logits over mirrored (and shifted) views.

    Place: data (the evaluated inputs), add (extra views at evaluation), fewer steps (a target quality
    is reached earlier in training), throughout. At `eval_start` the evaluated model (whatever is there:
    the model, or an EMA or SWA average, or schedule-free's averaged weights) is wrapped so that its
    output is the weighted mean of its logits (not probabilities, as airbench) over the `views`: "flip",
    the image and its mirror at 1/2 each, or "flip_translate", airbench's six views (the image and its
    mirror at 1/4 each, and both shifted one pixel up-left and down-right, reflect-padded, at 1/8 each);
    at `eval_end` the evaluated model is restored. The test split, evaluated at the last point, is
    augmented too. Training is unchanged: the views cost only evaluation, which is never charged to
    training; the run records it apart (`eval_seconds`, `eval_flops` of each curve point: about views
    times the plain evaluation's), and `changes_evaluation` marks its quality as measured with TTA.

    Helps: image classifiers whose labels are mirror- and shift-invariant: airbench's 6-view TTA is
    worth several tenths of a point of CIFAR-10 accuracy at equal training, so a target is reached
    with less training.

    Hurts: inference cost (views times the forwards at deployment, which a speedup measured in training
    cost does not show: read `eval_flops`); labels that change when mirrored or shifted; inputs too
    small for a one-pixel shift to keep what matters.

    Reference: Keller Jordan, 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU",
    arXiv:2404.00498 (airbench's weighted 6-view logits); Karen Simonyan and Andrew Zisserman, 2015,
    "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015, arXiv:1409.1556
    (averaging the class posteriors of an image and its mirror); earlier, Krizhevsky, Sutskever and
    Hinton, 2012 (AlexNet), averaged ten crops and their mirrors.
    """

    place = Place(where=(Where.DATA,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES})
    changes_evaluation = True

    def __init__(self, views: str = "flip") -> None:
        check_views(views)
        self.views = views
        self._previous: nn.Module | None = None

    def on_eval_start(self, state: State) -> None:
        self._previous = state.eval_model
        state.eval_model = TTAWrapper(state.eval_model or state.model, self.views)

    def on_eval_end(self, state: State) -> None:
        state.eval_model = self._previous
        self._previous = None
