from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.errors import UsageError
from algospeed.methods.model.blurpool import BlurConv, BlurMaxPool, apply_blurpool, blur
from algospeed.methods.spec import MethodSpec, build_method
from method_harness import assert_resumes_exactly, trainer_for


def manual_blur_2d(x: torch.Tensor) -> torch.Tensor:
    """[1, 2, 1] / 4 in both directions, reflect padding, written out as shifted sums."""
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    taps = [0.25, 0.5, 0.25]
    height, width = x.shape[-2:]
    return sum(taps[i] * taps[j] * padded[..., i : i + height, j : j + width] for i in range(3) for j in range(3))


def test_strided_convs_become_blur_then_conv_and_the_model_costs_a_little_more() -> None:
    baseline = trainer_for("", budget="2ba")
    trainer = trainer_for("blurpool", budget="2ba")
    features = trainer.state.model.features
    assert isinstance(features[3], BlurConv), "the strided conv (32 input channels) is replaced"
    assert isinstance(features[0], nn.Conv2d), "the one-channel stem is left alone (min_channels)"
    conv = features[3].conv
    assert conv.stride == (2, 2)
    assert features[3].conv.weight is dict(trainer.state.model.named_parameters())["features.3.conv.weight"]
    optimized = {id(p) for group in trainer.state.optimizer.param_groups for p in group["params"]}
    assert id(conv.weight) in optimized

    x = torch.randn(4, 32, 8, 8)
    expected = F.conv2d(manual_blur_2d(x), conv.weight, stride=2, padding=1)
    assert torch.allclose(features[3](x), expected, atol=1e-5)
    assert not torch.allclose(features[3](x), conv(x), atol=1e-3), "the blur really changes the output"

    base_flops = baseline.fit().final.flops
    result = trainer.fit()
    assert result.status == "completed"
    assert base_flops < result.final.flops < 1.2 * base_flops


def test_blur_after_and_max_blur_pool_and_1d() -> None:
    conv = nn.Conv2d(16, 8, 3, stride=2, padding=1)
    reference = F.conv2d
    x = torch.randn(2, 16, 10, 10)
    weight, bias = conv.weight.detach().clone(), conv.bias.detach().clone()
    after = BlurConv(conv, blur_first=False)
    expected = manual_blur_2d(reference(x, weight, bias, stride=1, padding=1))[..., ::2, ::2]
    assert torch.allclose(after(x), expected, atol=1e-5)

    pool = BlurMaxPool(nn.MaxPool2d(2, stride=2))
    expected = manual_blur_2d(F.max_pool2d(x, 2, stride=1))[..., ::2, ::2]
    assert torch.allclose(pool(x), expected, atol=1e-6)
    assert pool(x).shape == F.max_pool2d(x, 2).shape

    signal = torch.randn(2, 3, 12)
    padded = F.pad(signal, (1, 1), mode="reflect")
    assert torch.allclose(blur(signal), 0.25 * padded[..., :-2] + 0.5 * padded[..., 1:-1] + 0.25 * padded[..., 2:])


def test_apply_blurpool_replaces_only_what_it_is_told_to() -> None:
    model = nn.Sequential(
        nn.Conv1d(1, 32, 5, padding=2),
        nn.Conv1d(32, 32, 3, stride=2, padding=1),
        nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 3, padding=1),
    )
    assert apply_blurpool(model, replace_maxpools=False) == 1
    assert isinstance(model[1], BlurConv) and isinstance(model[2], nn.MaxPool1d)
    assert apply_blurpool(model, replace_convs=False) == 1
    assert isinstance(model[2], BlurMaxPool)
    assert isinstance(model[3], nn.Conv1d), "stride-1 convs stay as they are"
    assert apply_blurpool(model) == 0, "already blurred layers are not wrapped twice"
    assert model(torch.randn(2, 1, 40)).shape == (2, 32, 10)


def test_blurpool_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("blurpool", tmp_path, budget="12ba")


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="nothing would change"):
        build_method(MethodSpec(name="blurpool", settings={"replace_convs": False, "replace_maxpools": False}))
    with pytest.raises(UsageError, match="min_channels"):
        build_method(MethodSpec(name="blurpool", settings={"min_channels": -1}))
