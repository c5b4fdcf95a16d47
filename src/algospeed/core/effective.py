"""What a run really trains with, read off its optimizer and loop after every method has set them up:
so a method that rescales the learning rate or swaps the optimizer shows, and no difference between
arms stays hidden."""

from __future__ import annotations

from typing import Any

from algospeed.core.state import State


def _distinct(values: list[Any]) -> Any:
    """One value where every parameter group agrees, else the sorted distinct values."""
    unique = sorted(set(values), key=repr)
    return unique[0] if len(unique) == 1 else unique


def optimizer_name(optimizer: Any) -> str:
    """`AdamW`, `Lookahead(SGD)` for an optimizer that wraps another, `CombinedOptimizer(Muon+AdamW)` for one
    made of parts."""
    name = type(optimizer).__name__
    parts = getattr(optimizer, "parts", None)
    if isinstance(parts, dict) and parts:
        return f"{name}({'+'.join(optimizer_name(part) for part in parts.values())})"
    inner = getattr(optimizer, "optimizer", None)
    return f"{name}({optimizer_name(inner)})" if inner is not None and inner is not optimizer else name


def effective_hyperparameters(state: State) -> dict[str, Any]:
    """The optimizer, its base learning rates and weight decays (per group, where they differ), momentum
    or betas, the batch size, the schedule, and how many parameters train."""
    groups = state.optimizer.param_groups
    found: dict[str, Any] = {
        "optimizer": optimizer_name(state.optimizer),
        "lr": _distinct([float(g.get("initial_lr", g["lr"])) for g in groups]),
        "weight_decay": _distinct([float(g.get("weight_decay", 0.0)) for g in groups]),
    }
    for key in ("momentum", "betas"):  # groups of a combined optimizer (Muon + AdamW) may differ in which they have
        values = [g[key] for g in groups if key in g]
        if values:
            found[key] = _distinct([tuple(v) if isinstance(v, (list, tuple)) else v for v in values])
    found["batch_size"] = state.train_data.batch_size
    found["schedule"] = repr(state.schedule)
    found["trainable_parameters"] = sum(p.numel() for g in groups for p in g["params"])
    return found
