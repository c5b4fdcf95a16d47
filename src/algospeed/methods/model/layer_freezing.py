"""Layer freezing (FreezeOut-style): freeze layers one after another, from the input, as training advances."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

DISTRIBUTIONS = ("linear", "cubic")


def freezable_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in registration order (modules that own parameters directly), all but the last
    (the output layer keeps training to the end)."""
    layers = [module for module in model.modules() if next(module.parameters(recurse=False), None) is not None]
    return layers[:-1]


def freeze_schedule(layers: int, freeze_start: float, freeze_end: float, distribution: str = "linear") -> list[float]:
    """The progress at which each of `layers` layers freezes: the first at `freeze_start`, the last at
    `freeze_end`, spread linearly or cubically (u**3: early layers bunched near `freeze_start`)."""
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    times = []
    for index in range(layers):
        u = index / (layers - 1) if layers > 1 else 0.0
        times.append(freeze_start + (freeze_end - freeze_start) * (u**3 if distribution == "cubic" else u))
    return times


def freeze_parameters(params: Iterable[nn.Parameter], optimizer: torch.optim.Optimizer | None = None) -> None:
    """Stop training `params`: no gradient (requires_grad False, .grad cleared) and, given an optimizer, out of
    its param groups with their optimizer state dropped; the other parameters' state is kept as it is."""
    frozen = list(params)
    ids = {id(p) for p in frozen}
    for p in frozen:
        p.requires_grad_(False)
        p.grad = None
    if optimizer is None:
        return
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in ids]
    for p in frozen:
        optimizer.state.pop(p, None)


def freeze_layers(layers: Sequence[nn.Module], optimizer: torch.optim.Optimizer | None = None) -> None:
    """Freeze every parameter the `layers` own directly (see `freeze_parameters`)."""
    freeze_parameters((p for layer in layers for p in layer.parameters(recurse=False)), optimizer)


@register("layer_freezing")
class LayerFreezing(Method):
    """Progressive layer freezing: layer i stops training at progress t_i, from the first layer on.

    Place: model, remove (the weight gradients, backward work and optimizer updates of frozen layers);
    cheaper steps; scheduled. Layers are the modules that own parameters, in registration order; all
    but the last freeze. The first freezes at `freeze_start`, the last at `freeze_end`, spread
    linearly or cubically. A frozen layer's parameters get requires_grad False and leave the
    optimizer (their state is dropped, the others keep theirs: the optimizer is not rebuilt), so the
    backward pass skips their weight gradients, and the FLOPs are recounted.

    Helps: budgets where early layers converge before the late ones (image CNNs, fine-tuning); the
    backward pass, about two thirds of a step, shrinks as layers freeze.

    Hurts: short budgets or an early `freeze_start`, where layers freeze before they have learnt;
    normalization layers keep updating their running statistics while their affine weights are frozen.
    Unlike FreezeOut, each layer's learning rate is not annealed to zero before it freezes: it follows
    the run's schedule and then stops.

    Reference: Brock, Lim, Ritchie, Weston, 2017, "FreezeOut: Accelerate Training by Progressively
    Freezing Layers", arXiv:1706.04983 (NIPS 2017 Optimization workshop).
    """

    place = Place(where=(Where.MODEL,), what=(What.REMOVE,), how=How.CHEAPER_STEPS, when=(When.SCHEDULED,))
    conflicts = frozenset({"progressive_growing"})

    def __init__(self, freeze_start: float = 0.5, freeze_end: float = 0.9, distribution: str = "linear") -> None:
        if not 0.0 <= freeze_start <= freeze_end <= 1.0:
            raise ValueError(
                f"need 0 <= freeze_start <= freeze_end <= 1, got freeze_start={freeze_start}, freeze_end={freeze_end}"
            )
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
        self.freeze_start = freeze_start
        self.freeze_end = freeze_end
        self.distribution = distribution
        self.frozen = 0
        self._state: State | None = None

    def on_init(self, state: State) -> None:
        self._state = state

    def on_after_dataloader(self, state: State) -> None:
        layers = freezable_layers(state.model)
        times = freeze_schedule(len(layers), self.freeze_start, self.freeze_end, self.distribution)
        due = sum(1 for t in times if t <= state.progress)
        if due > self.frozen:
            freeze_layers(layers[self.frozen : due], state.optimizer)
            self.frozen = due
            state.model_version += 1  # the backward pass changes: count its FLOPs again

    def state_dict(self) -> dict[str, Any]:
        return {"frozen": self.frozen}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        # runs after INIT and before the model weights and optimizer state load: freeze the same layers,
        # so that the saved (smaller) optimizer state fits; the model version is restored by the trainer
        self.frozen = int(saved.get("frozen", 0))
        if self.frozen and self._state is not None:
            freeze_layers(freezable_layers(self._state.model)[: self.frozen], self._state.optimizer)
