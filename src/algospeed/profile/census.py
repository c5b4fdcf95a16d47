"""An operator census of one step: how many ATen operators it dispatches, the bytes they touch, and
the dtype its matrix multiplications and convolutions run in.

The count gives the step's fixed cost (operators x the time of one at trivial size: Python, dispatch,
autograd and kernel-launch overhead that no change of batch size removes); the bytes against the
FLOPs give its arithmetic intensity for the roofline test, counting only the operators whose
operands and result do not fit in the last-level cache (smaller ones, fed by the operator before
them, are taken to be served from cache); the dtype picks the peak to compare with (bfloat16 under
autocast, say). It runs as a `TorchDispatchMode` during one warmup step, which it
slows down, so that step is never measured.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# The operators whose FLOPs dominate a step; their output dtype is the step's compute dtype.
MATMUL_OPERATORS = frozenset(
    {"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward", "_convolution", "linear", "matmul"}
)
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16", torch.float64: "fp64"}


@dataclass(frozen=True)
class Census:
    """What one step dispatched: operators, bytes each read and wrote (its tensor inputs and outputs,
    views excluded: an unfused upper bound), and the dtype of its matmuls."""

    operators: int
    operator_bytes: tuple[int, ...]
    dtype: str

    @property
    def bytes(self) -> float:
        return float(sum(self.operator_bytes))

    def memory_bytes(self, cache: float = 0.0) -> float:
        """Bytes moved to and from memory: those of the operators whose operands exceed `cache` bytes."""
        return float(sum(size for size in self.operator_bytes if size > cache))

    def to_dict(self) -> dict[str, Any]:
        return {"operators": self.operators, "bytes": self.bytes, "dtype": self.dtype}


class OperatorCounter(TorchDispatchMode):
    """Counts operators, their bytes and matmul dtypes while active (as a context, or entered and
    exited by hand across a step)."""

    def __init__(self) -> None:
        super().__init__()
        self.operators = 0
        self.operator_bytes: list[int] = []
        self.dtypes: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        self.operators += 1
        if not func.is_view:
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.operator_bytes.append(sum(t.nbytes for t in tensors))
            if func.overloadpacket.__name__ in MATMUL_OPERATORS:
                outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.is_floating_point()]
                if outputs:
                    self.dtypes[dtype_name(outputs[0].dtype)] += 1
        return out

    def census(self, default_dtype: str = "fp32") -> Census:
        dtype = self.dtypes.most_common(1)[0][0] if self.dtypes else default_dtype
        return Census(operators=self.operators, operator_bytes=tuple(self.operator_bytes), dtype=dtype)


def dtype_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype).removeprefix("torch."))
