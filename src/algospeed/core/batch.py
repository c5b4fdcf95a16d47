"""What every loader yields and every method reads: a batch of inputs and targets, an optional mask
and extras, and how many samples and tokens it holds.

Targets a loss must skip (padding in token data) hold `IGNORE_INDEX`, as PyTorch's and Hugging
Face's losses expect; `mask` marks the real positions of the inputs (e.g. for attention).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True, eq=False)
class Batch:
    """One training or evaluation batch. Methods replace it (`batch.replace(inputs=...)`), never mutate it."""

    inputs: Any
    targets: Any
    mask: torch.Tensor | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        """Samples (rows) in the batch."""
        return len(self.targets) if self.targets is not None else len(self.inputs)

    @property
    def tokens(self) -> int:
        """Token positions in the batch: the mask's count, else every id of integer inputs; 0 for
        non-token data. Read after the methods' `after_dataloader`, so a shortened context counts less."""
        inputs = self.inputs
        if not isinstance(inputs, torch.Tensor) or torch.is_floating_point(inputs):
            return 0
        if self.mask is not None:
            return int(self.mask.sum())
        return inputs.numel()

    def replace(self, **changes: Any) -> Batch:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def select(self, index: torch.Tensor) -> Batch:
        """The samples at `index` (rows of the inputs, targets, mask and every row-aligned extra)."""
        rows = self.samples

        def take(value: Any) -> Any:
            return value[index] if isinstance(value, torch.Tensor) and value.dim() and len(value) == rows else value

        return self.replace(
            inputs=take(self.inputs),
            targets=take(self.targets),
            mask=None if self.mask is None else take(self.mask),
            extras={key: take(value) for key, value in self.extras.items()},
        )

    def to(self, device: torch.device) -> Batch:
        """The batch on `device` (tensors already there are not copied)."""
        return self.replace(
            inputs=to_device(self.inputs, device),
            targets=to_device(self.targets, device),
            mask=None if self.mask is None else to_device(self.mask, device),
            extras={key: to_device(value, device) for key, value in self.extras.items()},
        )

    @classmethod
    def of(cls, data: Any) -> Batch:
        """A `Batch` from what a plain PyTorch loader yields: a Batch, an `(inputs, targets)` or
        `(inputs, targets, mask)` sequence, or a mapping with `inputs`/`targets` (or Hugging Face's
        `input_ids`/`labels`/`attention_mask`) and any other keys as extras."""
        if isinstance(data, Batch):
            return data
        if isinstance(data, Mapping):
            rest = dict(data)
            inputs = _pop_first(rest, ("inputs", "input_ids", "x"))
            targets = _pop_first(rest, ("targets", "labels", "label", "y"))
            mask = _pop_first(rest, ("mask", "attention_mask"))
            if inputs is None:
                raise TypeError(f"a batch mapping needs 'inputs' (or 'input_ids'); got keys {sorted(data)}")
            return cls(inputs, targets, mask, rest)
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            return cls(*data)
        raise TypeError(
            f"a batch must be an algospeed Batch, (inputs, targets), (inputs, targets, mask) or a mapping; "
            f"got {type(data).__name__}"
        )


def _pop_first(mapping: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in mapping:
            return mapping.pop(key)
    return None


def to_device(value: Any, device: torch.device) -> Any:
    """Move tensors (also inside tuples, lists and dicts) to `device`; a no-op for tensors already there."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Batch):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(item, device) for item in value)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}
    return value
