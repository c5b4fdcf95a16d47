from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.core.callback import Callback
from algospeed.errors import UsageError
from algospeed.methods.model.layer_freezing import freezable_layers, freeze_layers, freeze_schedule
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


class Probe(Callback):
    """Per step: progress before it, names of parameters with a gradient, names in the optimizer, FLOPs charged."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self._flops = 0.0

    def on_after_dataloader(self, state) -> None:
        self.rows.append({"progress": state.progress})

    def on_after_backward(self, state) -> None:
        names = {id(p): n for n, p in state.model.named_parameters()}
        row = self.rows[-1]
        row["grads"] = {n for n, p in state.model.named_parameters() if p.grad is not None}
        row["optimized"] = {names[id(p)] for g in state.optimizer.param_groups for p in g["params"]}
        row["optimizer"] = state.optimizer

    def on_batch_end(self, state) -> None:
        self.rows[-1]["flops"] = state.clock.flops - self._flops
        self._flops = state.clock.flops


def test_frozen_layers_get_no_gradient_leave_the_optimizer_and_steps_get_cheaper() -> None:
    probe = Probe()
    methods = "layer_freezing:freeze_start=0.2:freeze_end=0.6"
    trainer = build_trainer(RunSpec(workload="digits", budget="20ba", methods=methods, device="cpu"), callbacks=[probe])
    optimizer = trainer.state.optimizer
    trainer.fit()
    # SmallCNN: conv, bn, conv, bn freeze at 0.2, 0.333, 0.467, 0.6; the head never does
    layers = ["features.0.", "features.1.", "features.3.", "features.4."]
    for row in probe.rows:
        frozen = [layer for layer, t in zip(layers, [0.2, 1 / 3, 7 / 15, 0.6], strict=True) if row["progress"] >= t]
        for name in row["grads"] | row["optimized"]:
            assert not any(name.startswith(layer) for layer in frozen), f"{name} still trains at {row['progress']}"
        assert {"head.weight", "head.bias"} <= row["grads"] & row["optimized"]
        assert row["optimizer"] is optimizer, "the optimizer is trimmed, not rebuilt"
    assert probe.rows[0]["grads"] == probe.rows[0]["optimized"] and len(probe.rows[0]["grads"]) == 8
    assert probe.rows[-1]["optimized"] == {"head.weight", "head.bias"}
    assert probe.rows[-1]["flops"] < 0.6 * probe.rows[0]["flops"], "the backward pass really got cheaper"
    flops = [row["flops"] for row in probe.rows]
    assert flops == sorted(flops, reverse=True), "each freeze only ever makes steps cheaper"
    assert trainer.state.model_version == 4
    state = trainer.state.optimizer.state
    assert len(state) == 2 and all("momentum_buffer" in s for s in state.values()), "the head keeps its momentum"


def test_plain_functions_keep_the_other_parameters_state() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    assert freezable_layers(model) == [model[0], model[2]]
    assert freeze_schedule(3, 0.5, 0.9) == pytest.approx([0.5, 0.7, 0.9])
    assert freeze_schedule(3, 0.5, 0.9, "cubic") == pytest.approx([0.5, 0.55, 0.9])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    kept = optimizer.state[model[2].weight]["momentum_buffer"]
    freeze_layers([model[0]], optimizer)
    assert not model[0].weight.requires_grad and model[0].weight.grad is None
    assert len(optimizer.param_groups[0]["params"]) == 4 and model[0].weight not in optimizer.state
    assert optimizer.state[model[2].weight]["momentum_buffer"] is kept
    before = model[0].weight.clone()
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    assert torch.equal(model[0].weight, before) and model[0].weight.grad is None


def test_layer_freezing_resumes_exactly(tmp_path) -> None:
    # the checkpoint in the middle is taken after the first layers froze
    assert_resumes_exactly("layer_freezing:freeze_start=0.3:freeze_end=0.7", tmp_path, budget="16ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"freeze_start": 0.8, "freeze_end": 0.5}, "freeze_start <= freeze_end"),
        ({"distribution": "log"}, "distribution"),
    ],
)
def test_bad_settings_are_usage_errors(settings, message) -> None:
    with pytest.raises(UsageError, match=message):
        build_method(MethodSpec(name="layer_freezing", settings=settings))
