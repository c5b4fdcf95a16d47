"""Which device a run trains on when none is named: the GPU where there is one, defined once."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device | None = None) -> torch.device:
    """`name` as a device, or CUDA where it is available and the CPU otherwise."""
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
