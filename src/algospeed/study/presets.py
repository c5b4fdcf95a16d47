"""Embedded study presets: `algospeed study --preset quick` is the README's main job."""

from __future__ import annotations

from typing import Any

from algospeed.errors import UsageError

PRESETS: dict[str, dict[str, Any]] = {
    # mnist1d: the baseline, a cheaper-steps method and a fewer-steps method, at three budgets
    # with three seeds; about five minutes on 2 cores.
    "quick": {
        "name": "quick",
        "workload": "mnist1d",
        "arms": {"baseline": [], "progressive_resizing": ["progressive_resizing"], "ema": ["ema"]},
        "budgets": ["4ep", "8ep", "16ep"],
        "seeds": 3,
        "eval_interval": "0.125dur",
        "currency": "reference",  # wall-clock on a shared machine measures the neighbours; see README
    },
}


def preset(name: str) -> dict[str, Any]:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}") from None
