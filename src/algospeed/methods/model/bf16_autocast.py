"""bfloat16 mixed precision: forward and loss under autocast to bfloat16, fp32 master weights."""

from __future__ import annotations

import torch

from algospeed.core.callback import Method
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def bf16_autocast(device: torch.device | str) -> torch.autocast:
    """A context in which matmuls, convolutions and other autocast-eligible ops on `device` run in bfloat16
    (reductions and losses autocast keeps in fp32); parameters stay as they are (fp32 master weights)."""
    device_type = torch.device(device).type
    if not torch.amp.is_autocast_available(device_type):
        raise UsageError(f"autocast is not available on device type {device_type!r}")
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


@register("bf16_autocast")
class Bf16Autocast(Method):
    """bfloat16 mixed precision: the forward pass and the loss run under autocast to bfloat16.

    Place: model, shrink (numeric precision of activations and matmuls); cheaper steps; throughout.
    Autocast is entered before the forward pass and left after the loss, so backward runs outside
    it (autograd replays each op in the dtype of its forward). Parameters, gradients and optimizer
    state stay fp32 (master weights). bfloat16 has fp32's exponent range, so no loss scaling is
    needed (unlike fp16). Evaluation runs in fp32. Counted FLOPs do not change: the saving shows
    in wall-clock (and memory).

    Helps: GPUs with bfloat16 tensor cores (A100, H100) and recent CPUs with AMX/AVX512-BF16, where
    matmuls and convolutions run several times faster and activations take half the memory.

    Hurts: hardware without fast bfloat16 (older GPUs, most CPUs: casts cost time and nothing is
    gained); ops sensitive to its 8-bit mantissa (small losses of accuracy, noisier long sums);
    small models where casting overhead dominates. If a step fails between the forward pass and the
    loss, autocast stays on in that thread until the next step or the end of the run.

    Reference: Kalamkar et al., 2019, "A Study of BFLOAT16 for Deep Learning Training",
    arXiv:1905.12322; mixed precision with fp32 master weights: Micikevicius et al., 2018, "Mixed
    Precision Training", ICLR 2018, arXiv:1710.03740.
    """

    place = Place(where=(Where.MODEL,), what=(What.SHRINK,), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))

    def __init__(self) -> None:
        self._context: torch.autocast | None = None

    def on_init(self, state: State) -> None:
        bf16_autocast(state.device)  # fail at once, with a clear message, where autocast is unavailable

    def on_before_forward(self, state: State) -> None:
        self._leave()
        self._context = bf16_autocast(state.device)
        self._context.__enter__()

    def on_after_loss(self, state: State) -> None:
        self._leave()

    def on_fit_end(self, state: State) -> None:
        self._leave()

    def _leave(self) -> None:
        if self._context is not None:
            context, self._context = self._context, None
            context.__exit__(None, None, None)
