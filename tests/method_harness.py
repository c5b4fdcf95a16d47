"""Shared checks for speedup methods: exact resumption from a mid-run checkpoint, and nested
state comparison. Every method's test module uses these, so the bar is the same for all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from algospeed.core.checkpoint import list_checkpoints, read_checkpoint
from algospeed.core.trainer import Trainer
from algospeed.run_spec import RunSpec, build_trainer


def same(a: Any, b: Any) -> bool:
    """Exact equality of nested tensors, numbers, strings, lists and dicts."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def trainer_for(methods: str, *, workload: str = "digits", budget: str = "3ep", **spec: Any) -> Trainer:
    """A trainer on a small embedded workload with `methods`, evaluating every epoch."""
    return build_trainer(
        RunSpec(workload=workload, budget=budget, methods=methods, eval_interval="1ep", device="cpu", **spec)
    )


def assert_resumes_exactly(
    methods: str, tmp_path: Path, *, workload: str = "digits", budget: str = "3ep", **spec: Any
) -> Trainer:
    """Train uninterrupted, then resume a second run from a checkpoint taken mid-epoch part-way
    through, and require bit-identical weights, optimizer state, method state and curve."""
    common = dict(workload=workload, budget=budget, methods=methods, eval_interval="1ep", device="cpu", **spec)
    full = build_trainer(RunSpec(**common, checkpoint_interval="0.37dur"), checkpoint_dir=tmp_path / "full")
    full.keep_checkpoints = 100
    full_result = full.fit()
    checkpoints = list_checkpoints(tmp_path / "full")
    assert len(checkpoints) >= 3, "the run is too short to checkpoint part-way"
    middle = checkpoints[1]
    _, meta = read_checkpoint(middle)
    assert 0 < meta["clock"]["steps"] < full_result.final.step

    torch.manual_seed(987654)  # resumption must not lean on the global RNG at restart
    resumed = build_trainer(RunSpec(**common, checkpoint_interval="0.37dur"), checkpoint_dir=tmp_path / "resumed")
    resumed_result = resumed.fit(resume_from=middle)

    assert same(full.state.model.state_dict(), resumed.state.model.state_dict()), "weights differ after resume"
    assert same(full.state.optimizer.state_dict(), resumed.state.optimizer.state_dict()), "optimizer state differs"
    for a, b in zip(full.callbacks, resumed.callbacks, strict=True):
        assert same(a.state_dict(), b.state_dict()), f"{a.key} state differs after resume"

    def curve(result: Any) -> list[tuple]:
        return [(p.step, p.samples, p.tokens, p.flops, p.train_loss, p.metrics) for p in result.points]

    assert curve(full_result) == curve(resumed_result)
    return full
