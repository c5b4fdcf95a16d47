from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.errors import UsageError
from algospeed.methods.model.weight_standardization import (
    WSConv1d,
    WSConv2d,
    apply_weight_standardization,
    standardize_weight,
)
from algospeed.methods.spec import MethodSpec, build_method
from method_harness import assert_resumes_exactly, trainer_for


def test_convolutions_really_use_standardized_weights() -> None:
    trainer = trainer_for("weight_standardization", budget="3ba")
    model = trainer.state.model
    convs = [model.features[0], model.features[3]]
    assert all(isinstance(conv, WSConv2d) for conv in convs)
    optimized = [p for g in trainer.state.optimizer.param_groups for p in g["params"]]
    assert [id(p) for p in model.parameters()] == [id(p) for p in optimized], "the same parameters train"
    before = convs[1].weight.detach().clone()
    trainer.fit()
    assert not torch.equal(convs[1].weight, before), "the raw weights train"

    x = torch.randn(2, 32, 8, 8)
    conv = convs[1]
    raw = conv.weight.detach()
    assert raw.flatten(1).mean(1).abs().max() > 1e-4, "the raw weights are not standardized themselves"
    effective = standardize_weight(raw)
    per_channel = effective.flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(64), atol=1e-5)
    assert torch.allclose(per_channel.var(1, unbiased=False), torch.ones(64), atol=1e-3)
    with torch.no_grad():
        assert torch.allclose(conv(x), F.conv2d(x, effective, stride=2, padding=1), atol=1e-5)
        assert not torch.allclose(conv(x), F.conv2d(x, raw, stride=2, padding=1), atol=1e-2)


def test_plain_function_shares_parameters_and_handles_1d() -> None:
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1, bias=True), nn.ReLU(), nn.Conv1d(4, 4, 3, groups=2))
    weight, bias = model[0].weight, model[0].bias
    assert apply_weight_standardization(model) == 2
    assert isinstance(model[0], WSConv1d) and model[0].weight is weight and model[0].bias is bias
    assert model[2].groups == 2
    assert apply_weight_standardization(model) == 0, "already standardized convs are left alone"
    x = torch.randn(3, 2, 10)
    expected = F.conv1d(x, standardize_weight(weight), bias, padding=1)
    assert torch.allclose(model[0](x), expected, atol=1e-6)
    moved = standardize_weight(5 * weight.detach() + 3)
    assert torch.allclose(moved, standardize_weight(weight.detach()), atol=1e-4), "invariant to scale and shift"
    fan_in = 2 * 3
    scaled = standardize_weight(weight.detach(), scaled=True).flatten(1)
    assert torch.allclose(scaled.var(1, unbiased=False), torch.full((4,), 1 / fan_in), atol=1e-4)


def test_weight_standardization_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("weight_standardization", tmp_path, budget="12ba")


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="eps must be positive"):
        build_method(MethodSpec(name="weight_standardization", settings={"eps": 0}))
