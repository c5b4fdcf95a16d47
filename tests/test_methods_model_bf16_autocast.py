from __future__ import annotations

import pytest
import torch

from algospeed.core.callback import Callback
from algospeed.errors import UsageError
from algospeed.methods.model.bf16_autocast import bf16_autocast
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


class Probe(Callback):
    """Records dtypes inside the forward pass, after the loss and after backward."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_after_forward(self, state) -> None:
        self.rows.append({"outputs": state.outputs.dtype, "autocast_in_forward": torch.is_autocast_enabled("cpu")})

    def on_after_backward(self, state) -> None:
        self.rows[-1]["autocast_in_backward"] = torch.is_autocast_enabled("cpu")
        self.rows[-1]["params"] = {p.dtype for p in state.model.parameters()}
        self.rows[-1]["grads"] = {p.grad.dtype for p in state.model.parameters() if p.grad is not None}
        self.rows[-1]["loss"] = state.loss.dtype


def test_forward_runs_in_bf16_while_weights_and_gradients_stay_fp32() -> None:
    probe = Probe()
    spec = RunSpec(workload="digits", budget="3ba", methods="bf16_autocast", device="cpu")
    trainer = build_trainer(spec, callbacks=[probe])
    result = trainer.fit()
    assert result.status == "completed" and len(probe.rows) == 3
    for row in probe.rows:
        assert row["outputs"] == torch.bfloat16 and row["autocast_in_forward"]
        assert not row["autocast_in_backward"], "backward runs outside autocast"
        assert row["params"] == {torch.float32} and row["grads"] == {torch.float32}
        assert row["loss"] == torch.float32
    assert not torch.is_autocast_enabled("cpu"), "autocast is off once the run ends"
    assert all(state["momentum_buffer"].dtype == torch.float32 for state in trainer.state.optimizer.state.values())

    baseline = Probe()
    build_trainer(spec.model_copy(update={"methods": []}), callbacks=[baseline]).fit()
    assert baseline.rows[0]["outputs"] == torch.float32


def test_plain_function() -> None:
    layer = torch.nn.Linear(4, 2)
    with bf16_autocast("cpu"):
        assert layer(torch.randn(3, 4)).dtype == torch.bfloat16
    assert layer(torch.randn(3, 4)).dtype == torch.float32 and layer.weight.dtype == torch.float32
    with pytest.raises(UsageError, match="autocast is not available"):
        bf16_autocast("meta")


def test_bf16_autocast_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("bf16_autocast", tmp_path, budget="12ba")
    assert not torch.is_autocast_enabled("cpu")


def test_it_has_no_settings() -> None:
    with pytest.raises(UsageError, match="has no setting"):
        build_method(MethodSpec(name="bf16_autocast", settings={"dtype": "float16"}))
