"""A realistic stack of methods, end to end on mnist5k: they compose, charge cost and resume exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from algospeed.core.callback import Callback
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly

STACK = "progressive_resizing,blurpool,label_smoothing,ema,mixup"


class SeenShapes(Callback):
    """Records what the model is fed and what the loss is computed against."""

    name = "seen_shapes"

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.soft_targets: list[bool] = []

    def on_before_forward(self, state) -> None:
        self.sizes.append(state.batch.inputs.shape[-1])

    def on_after_loss(self, state) -> None:
        self.soft_targets.append(torch.is_floating_point(state.batch.targets))


def test_a_realistic_stack_trains_end_to_end_on_mnist5k() -> None:
    seen = SeenShapes()
    spec = RunSpec(workload="mnist5k", budget="20ba", methods=STACK, eval_interval="0.5dur", device="cpu")
    trainer = build_trainer(spec, callbacks=[seen])
    baseline = build_trainer(RunSpec(workload="mnist5k", budget="20ba", eval_interval="0.5dur", device="cpu"))
    result, plain = trainer.fit(), baseline.fit()
    assert [m.key for m in trainer.callbacks[:5]] == STACK.split(",")
    assert min(seen.sizes) < 28 and seen.sizes[-1] == 28  # resized early, full size at the end
    assert all(seen.soft_targets)  # MixUp and label smoothing made probability targets
    assert trainer.state.eval_model is not None and trainer.state.eval_model is not trainer.state.model  # EMA
    assert any(type(m).__name__.startswith("Blur") for m in trainer.state.model.modules())
    assert result.final.flops < plain.final.flops * 1.2  # smaller early images pay for the blur filters
    assert 0.0 <= result.final.metrics["accuracy"] <= 1.0 and len(result.points) == 2


def test_the_stack_resumes_exactly(tmp_path: Path) -> None:
    assert_resumes_exactly(STACK, tmp_path, workload="mnist5k", budget="16ba")
