"""What the profiler watches in a loop that is not algospeed's trainer: the model, its device, a clock of
its own, and the phase contexts that `Profiler.phase` hands out.

A hand-written loop marks its steps with `Profiler.step()` and its phases with `with profiler.phase(name)`
(or `profiler.mark(name)` where hooks mark boundaries rather than enclose work, as in Lightning). The time
from a step's end until the first phase is entered is waiting for data, as in the trainer; time outside
every phase after that is the loop's own (`other`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.clock import Clock
from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.profile.phases import PHASES

if TYPE_CHECKING:
    from algospeed.profile.profiler import Profiler

OWN_WORK = ("method:", "callback:")


@dataclass
class LoopState:
    """The part of a trainer's `State` the profiler reads: the model (its dtype), its device, the clock
    and the batch (its data kind)."""

    model: nn.Module
    device: torch.device
    clock: Clock = field(default_factory=Clock)
    batch: Batch | None = None  # the last batch given to `step()`


def check_phase(name: str) -> str:
    """`name` if it is a phase of the table, else a usage error listing them."""
    if name in PHASES or (name.startswith(OWN_WORK) and name.split(":", 1)[1]):
        return name
    raise UsageError(
        f"unknown profiler phase {name!r}; valid: {', '.join(PHASES)}, "
        "or method:NAME / callback:NAME for work of one's own"
    )


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for one with neither)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def data_kind_of(name: DataKind | str) -> DataKind:
    """A data kind by name, or a usage error listing the kinds."""
    try:
        return DataKind(name)
    except ValueError:
        raise UsageError(f"unknown data kind {name!r}; valid: {', '.join(kind.value for kind in DataKind)}") from None


def infer_data_kind(inputs: Any) -> DataKind | None:
    """The data kind of a batch's inputs: integer ids are tokens; floating-point samples shaped (C, H, W)
    are images, (C, L) signals, (F,) tabular features; anything else is not known."""
    if not isinstance(inputs, torch.Tensor) or inputs.dim() < 2:
        return None
    if not inputs.is_floating_point():
        return DataKind.TOKENS if inputs.dim() == 2 else None
    return {4: DataKind.IMAGES, 3: DataKind.SIGNALS, 2: DataKind.TABULAR}.get(inputs.dim())


class Phase:
    """`with profiler.phase("forward"): ...`: the work inside is charged to the phase; on leaving it the
    enclosing phase resumes, or `other` at the top level. Outside the schedule's window it costs a check."""

    __slots__ = ("name", "profiler")

    def __init__(self, profiler: Profiler, name: str) -> None:
        self.profiler, self.name = profiler, name

    def __enter__(self) -> None:
        self.profiler.enter_phase(self.name)

    def __exit__(self, *exc: object) -> None:
        self.profiler.leave_phase()
