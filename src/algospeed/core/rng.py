"""Every random number generator a run draws from, captured and restored, so a resumed run draws
exactly what the uninterrupted one would have."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng(generator: torch.Generator) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, JSON) of the global generators and the run's own `generator`."""
    tensors = {
        "rng_torch": torch.get_rng_state(),
        "rng_generator": generator.get_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    numpy_state = np.random.get_state()
    meta = {
        "rng_python": _jsonable(random.getstate()),
        "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
    }
    return tensors, meta


def restore_rng(generator: torch.Generator, tensors: dict[str, Any], meta: dict[str, Any]) -> None:
    """Put back what `capture_rng` returned."""
    torch.set_rng_state(tensors["rng_torch"])
    generator.set_state(tensors["rng_generator"])
    if tensors["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(tensors["rng_cuda"])
    version, internal, gauss = meta["rng_python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = meta["rng_numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))


def _jsonable(value: Any) -> Any:
    return [_jsonable(item) for item in value] if isinstance(value, (tuple, list)) else value
