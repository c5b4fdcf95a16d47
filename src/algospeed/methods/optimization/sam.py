"""Sharpness-aware minimization: take the gradient at the worst nearby point instead of the current one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """Batch norm still normalizes with the batch's statistics but does not update its running ones
    (nor its batch count), so that a second pass over the same batch leaves them as one pass would."""
    modules = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for module in modules:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in modules:
            module.track_running_stats = True


def sharpness_aware_gradients(
    model: nn.Module,
    loss_fn: Callable[[Any, Any], torch.Tensor],
    inputs: Any,
    targets: Any,
    rho: float,
    forward: Callable[[nn.Module], Any] | None = None,
) -> torch.Tensor:
    """Replace the gradients in `model` (from a backward pass at the weights w) by those at
    w + rho * g / ||g||, the first-order worst point within distance rho, then restore w exactly.

    `forward(model)` runs the model on the batch (default: `model(inputs)`). Returns the loss at the
    perturbed point. Parameters without a gradient are left alone; batch-norm
    running statistics are not updated by the second pass.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        raise ValueError("no parameter has a gradient: run a backward pass first")
    with torch.no_grad():
        grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        scale = rho / (grad_norm + 1e-12)
        originals = [p.detach().clone() for p in params]
        for p in params:
            p.add_(p.grad * scale)
            p.grad = None
    try:
        with frozen_batchnorm_statistics(model):
            loss = loss_fn(model(inputs) if forward is None else forward(model), targets)
            loss.backward()
    finally:
        with torch.no_grad():
            for p, original in zip(params, originals, strict=True):
                p.copy_(original)
    return loss.detach()


@register("sam")
class SAM(Method):
    """Descend with the gradient taken at the worst point within distance `rho`: flatter minima.

    Place: optimization, add (a second forward and backward per SAM step), fewer steps, throughout.
    On a SAM step (every `interval`-th step; the others are plain steps) the weights move by
    rho * g / ||g|| after the backward pass, the forward, loss and backward run again on the same
    batch, the weights come back, and the optimizer uses the new gradients. The extra pass happens
    inside the step's counted region, so its FLOPs and time are charged; SAM steps are tagged so
    that their FLOPs are counted apart from plain steps'. The reported training loss is the
    unperturbed one. Batch-norm running statistics are not updated by the second pass.

    Helps: over-parameterized models that overfit or sit in sharp minima (vision, fine-tuning, noisy
    labels): better generalization per step, often enough to pay for the extra pass in long runs.

    Hurts: short or compute-bound runs, where twice the work per step buys too little; a `rho` too
    large for the model (it stalls training); methods that change the outputs after the forward
    pass (they do not run again for the second pass).

    Reference: Pierre Foret, Ariel Kleiner, Hossein Mobahi and Behnam Neyshabur, 2021,
    "Sharpness-Aware Minimization for Efficiently Improving Generalization", ICLR 2021,
    arXiv:2010.01412. SAM every k steps only: Yong Liu, Siqi Mai, Xiangning Chen, Cho-Jui Hsieh and
    Yang You, 2022, "Towards Efficient and Scalable Sharpness-Aware Minimization", CVPR 2022,
    arXiv:2203.02714 (its baseline; their LookSAM also reuses the ascent direction in between, which
    this does not).
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.ADD,), how=How.FEWER_STEPS, when=(When.THROUGHOUT,))
    search_space = {"rho": {"log": [0.01, 0.2]}}  # noqa: RUF012 (read-only class data, typed on Method)
    extra_compute = True

    def __init__(self, rho: float = 0.05, interval: int = 1) -> None:
        if not rho > 0.0:
            raise ValueError(f"rho must be positive, got {rho}")
        if interval < 1:
            raise ValueError(f"interval must be at least 1 (SAM every interval-th step), got {interval}")
        self.rho = rho
        self.interval = interval
        self._sam_step = False

    def on_after_dataloader(self, state: State) -> None:
        self._sam_step = state.clock.steps % self.interval == 0
        if self._sam_step:
            state.step_tag = f"{state.step_tag}+sam" if state.step_tag else "sam"

    def on_after_backward(self, state: State) -> None:
        if self._sam_step:
            batch = state.batch
            sharpness_aware_gradients(
                state.model,
                state.loss_fn,
                batch.inputs,
                batch.targets,
                self.rho,
                forward=lambda model: state.forward(model, batch),
            )
