"""What a checkpoint holds of a run and how it is put back: the model, optimizer, every callback's
state, all generators, the clock, the curve and the loop's own marks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from algospeed.core.callback import Callback
from algospeed.core.result import CurvePoint
from algospeed.core.rng import capture_rng, restore_rng
from algospeed.core.state import State
from algospeed.errors import CheckpointError


@dataclass
class LoopMarks:
    """The loop's bookkeeping between curve points: where the last eval and checkpoint happened (in
    their intervals' units) and the training loss summed since the last point."""

    loss_sum: torch.Tensor
    last_eval: float = 0.0
    last_checkpoint: float = 0.0
    loss_count: int = 0
    fingerprint: dict[str, Any] = field(default_factory=dict)


def capture(state: State, callbacks: Sequence[Callback], marks: LoopMarks) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, JSON metadata) of a checkpoint of the run now."""
    rng_tensors, rng_meta = capture_rng(state.generator)
    payload = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "callbacks": {c.key: c.state_dict() for c in callbacks},
        "loss_sum": marks.loss_sum.cpu(),
        # what each kind of step was charged, so a resumed run charges the same (its first step of a kind
        # may not be the one that was counted: an optimizer's periodic work falls on some steps only)
        "flops_cache": list(state.flops.cache.items()),
        **rng_tensors,
    }
    meta = {
        "fingerprint": marks.fingerprint,
        "clock": state.clock.state_dict(),
        "points": [point.to_dict() for point in state.curve],
        "last_eval": marks.last_eval,
        "last_checkpoint": marks.last_checkpoint,
        "loss_count": marks.loss_count,
        "model_version": state.model_version,
        **rng_meta,
    }
    return payload, meta


def restore(
    path: Path,
    payload: dict[str, Any],
    meta: dict[str, Any],
    state: State,
    callbacks: Sequence[Callback],
    marks: LoopMarks,
) -> None:
    """Put a checkpoint back into the run; one that does not fit it is a `CheckpointError` naming `path`."""
    check_fingerprint(path, meta.get("fingerprint", {}), marks.fingerprint)
    try:
        state.model_version = int(meta["model_version"])
        saved_callbacks = payload["callbacks"]
        for callback in callbacks:
            callback.load_state_dict(saved_callbacks.get(callback.key, {}))
        state.model.load_state_dict(payload["model"])
        state.optimizer.load_state_dict(payload["optimizer"])
        state.clock.load_state_dict(meta["clock"])
        state.curve = [CurvePoint.from_dict(point) for point in meta["points"]]
        marks.last_eval = float(meta["last_eval"])
        marks.last_checkpoint = float(meta["last_checkpoint"])
        marks.loss_count = int(meta["loss_count"])
        marks.loss_sum = payload["loss_sum"].to(state.device)
        state.flops.cache = dict(payload.get("flops_cache", []))
        restore_rng(state.generator, payload, meta)
    except (KeyError, ValueError, RuntimeError, TypeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"checkpoint {path} does not match this run: {first_line}") from None


def check_fingerprint(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """A checkpoint of another run (other spec, other plugin code) is refused, naming the difference."""
    differing = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if differing:
        details = ", ".join(f"{key}: {saved.get(key)!r} != {current.get(key)!r}" for key in differing)
        raise CheckpointError(f"checkpoint {path} belongs to another run ({details})")
