"""FLOPs counted by `FlopCounterMode`, once per distinct step shape, then charged from a cache.

Counting a step costs a dispatch-mode pass, so it is done on the first step of each kind (input
shape and dtype, model version, method tag) and every later step of that kind is charged the same.
Everything the step runs is counted: forward, loss, backward, any extra forward or backward a method
does inside it (SAM, selective backprop), and the optimizer's step (the matrix products of Muon's
Newton-Schulz iteration, of Shampoo's and SOAP's preconditioners). What `FlopCounterMode` has no formula
for counts zero: elementwise updates (Adam's are a few FLOPs per parameter) and eigendecompositions
(Shampoo's and SOAP's periodic refreshes); and a step is charged what the first step of its kind cost, so
an optimizer's periodic work is charged as the first step ran it.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch.utils.flop_counter import (
    FlopCounterMode,
    flop_registry,
    register_flop_formula,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)


def _register_cpu_attention() -> None:
    """Teach `FlopCounterMode` the CPU kernels of `scaled_dot_product_attention` (it knows only the CUDA
    ones, so attention on the CPU counted zero FLOPs). Like torch's own formulas, causal masking is not
    discounted: the kernels compute the whole score matrix."""
    aten = torch.ops.aten
    forward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    backward = getattr(aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)
    if forward is not None and forward not in flop_registry:

        @register_flop_formula(forward)
        def _forward(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
            return sdpa_flop_count(query, key, value)

    if backward is not None and backward not in flop_registry:

        @register_flop_formula(backward)
        def _backward(grad: Any, query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
            return sdpa_backward_flop_count(grad, query, key, value)


_register_cpu_attention()


def shape_signature(value: Any) -> Any:
    """A hashable description of the shapes and dtypes in a (possibly nested) batch."""
    if isinstance(value, torch.Tensor):
        return (tuple(value.shape), str(value.dtype))
    if isinstance(value, (tuple, list)):
        return tuple(shape_signature(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, shape_signature(item)) for key, item in value.items()))
    return type(value).__name__


class FlopMeter:
    """Caches the FLOPs of each kind of step; `count(key)` measures the step run inside it once."""

    def __init__(self) -> None:
        self.cache: dict[Hashable, float] = {}
        self._pending: tuple[Hashable, FlopCounterMode] | None = None

    def count(self, key: Hashable) -> AbstractContextManager[Any]:
        """A context to run the step in: a counter the first time `key` is seen, else nothing."""
        if key in self.cache:
            return nullcontext()
        counter = FlopCounterMode(display=False)
        self._pending = (key, counter)
        return counter

    def charge(self, key: Hashable) -> float:
        """The FLOPs of a step of kind `key` (after it ran inside `count(key)`)."""
        if self._pending is not None and self._pending[0] == key:
            self.cache[key] = float(self._pending[1].get_total_flops())
            self._pending = None
        return self.cache[key]
