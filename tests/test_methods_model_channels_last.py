from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.core.callback import Callback
from algospeed.errors import UsageError
from algospeed.methods.model.channels_last import batch_to_channels_last, to_channels_last
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly

CL = torch.channels_last


class Probe(Callback):
    """Records the layout of the batch and the 4D weights the forward pass really sees."""

    def __init__(self) -> None:
        self.batches: list[bool] = []
        self.strictly: list[bool] = []  # channels-last and not NCHW-contiguous (needs more than one channel)
        self.weights: list[bool] = []

    def on_before_forward(self, state) -> None:
        self.batches.append(state.batch.inputs.is_contiguous(memory_format=CL))
        inputs = state.batch.inputs
        self.strictly.append(inputs.is_contiguous(memory_format=CL) and not inputs.is_contiguous())
        self.weights.append(all(p.is_contiguous(memory_format=CL) for p in state.model.parameters() if p.dim() == 4))


def test_weights_and_batches_really_are_channels_last() -> None:
    probe = Probe()
    spec = RunSpec(workload="digits", budget="3ba", methods="channels_last", device="cpu")
    trainer = build_trainer(spec, callbacks=[probe])
    params = list(trainer.state.model.parameters())
    optimized = [p for group in trainer.state.optimizer.param_groups for p in group["params"]]
    assert [id(p) for p in params] == [id(p) for p in optimized], "the optimizer still holds the model's parameters"
    result = trainer.fit()
    assert result.status == "completed" and probe.batches == [True] * 3 and probe.weights == [True] * 3
    assert all(not p.is_contiguous() for p in trainer.state.model.parameters() if p.dim() == 4 and p.shape[1] > 1)

    baseline_probe = Probe()
    baseline = build_trainer(spec.model_copy(update={"methods": []}), callbacks=[baseline_probe])
    assert baseline.fit().final.flops == result.final.flops, "a layout change does not change the FLOPs counted"

    # digits has one channel, for which both layouts coincide; with three channels the batch really moves
    color = Probe()
    options = {"shape": "3x8x8", "samples": 640}
    spec = RunSpec(workload="synthetic", options=options, budget="2ba", methods="channels_last", device="cpu")
    build_trainer(spec, callbacks=[color]).fit()
    assert color.strictly == [True, True]
    untouched = Probe()
    build_trainer(spec.model_copy(update={"methods": []}), callbacks=[untouched]).fit()
    assert untouched.strictly == [False, False]


def test_plain_functions() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    weight = model[0].weight
    assert to_channels_last(model) is model and model[0].weight is weight
    assert weight.is_contiguous(memory_format=CL) and not weight.is_contiguous()
    images, labels, signal = torch.randn(2, 3, 5, 5), torch.tensor([0, 1]), torch.randn(2, 3, 5)
    converted = batch_to_channels_last((images, labels, {"signal": signal, "more": [images]}))
    assert converted[0].is_contiguous(memory_format=CL) and not converted[0].is_contiguous()
    assert torch.equal(converted[0], images) and converted[1] is labels and converted[2]["signal"] is signal
    assert converted[2]["more"][0].is_contiguous(memory_format=CL)


def test_channels_last_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("channels_last", tmp_path, budget="12ba")


def test_it_has_no_settings() -> None:
    with pytest.raises(UsageError, match="has no setting"):
        build_method(MethodSpec(name="channels_last", settings={"enabled": True}))
