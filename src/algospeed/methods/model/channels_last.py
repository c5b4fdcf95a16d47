"""Channels-last memory format: NHWC layout for the model's 4D weights and the input batches."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from algospeed.core.callback import Method
from algospeed.core.data_kind import DataKind
from algospeed.core.state import State
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where


def to_channels_last(model: nn.Module) -> nn.Module:
    """Convert the model's 4D parameters and buffers to `torch.channels_last`, in place (the parameter
    objects stay the same, so an optimizer built over them keeps working)."""
    return model.to(memory_format=torch.channels_last)


def batch_to_channels_last(batch: Any) -> Any:
    """The batch with its 4D floating-point tensors in `torch.channels_last` (others unchanged), recursing
    into tuples, lists and dicts."""
    if isinstance(batch, torch.Tensor):
        if batch.dim() == 4 and torch.is_floating_point(batch):
            return batch.contiguous(memory_format=torch.channels_last)
        return batch
    if isinstance(batch, tuple):
        return tuple(batch_to_channels_last(item) for item in batch)
    if isinstance(batch, list):
        return [batch_to_channels_last(item) for item in batch]
    if isinstance(batch, dict):
        return {key: batch_to_channels_last(item) for key, item in batch.items()}
    return batch


@register("channels_last")
class ChannelsLast(Method):
    """Channels-last (NHWC) memory format for the model's 4D weights and every 4D input batch.

    Place: model, replace (the tensors' memory layout, not what is computed); cheaper steps;
    throughout. At init the model's 4D parameters and buffers are converted in place; after the
    data loader each 4D floating-point input is. The numbers computed are the same up to
    floating-point reassociation, and counted FLOPs do not change: only wall-clock does.

    Helps: convolutional networks on GPUs with tensor cores (cuDNN's fastest convolution kernels,
    especially with fp16/bf16, are NHWC), where it avoids layout transposes around every conv.

    Hurts: CPUs and older GPUs, where NCHW kernels may be as fast or faster; models with few or no
    4D tensors (MLPs, 1D CNNs, transformers: nothing changes); the conversion of each batch costs a
    copy; evaluation batches are not converted (PyTorch then picks a layout per layer).

    Reference: no paper; this is a PyTorch engineering feature, described in the PyTorch tutorial
    "(beta) Channels Last Memory Format in PyTorch" (Vitaly Fedyunin, 2020) and NVIDIA's Deep
    Learning Performance guide on tensor layouts.
    """

    place = Place(where=(Where.MODEL,), what=(What.REPLACE,), how=How.CHEAPER_STEPS, when=(When.THROUGHOUT,))
    data_kinds = frozenset({DataKind.IMAGES})

    def on_init(self, state: State) -> None:
        to_channels_last(state.model)

    def on_fit_start(self, state: State) -> None:
        to_channels_last(state.model)  # methods listed later may have added modules at init

    def on_after_dataloader(self, state: State) -> None:
        state.batch = state.batch.replace(inputs=batch_to_channels_last(state.batch.inputs))
