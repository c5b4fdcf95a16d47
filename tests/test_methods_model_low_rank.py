from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.errors import UsageError
from algospeed.methods.model.low_rank import LowRank, apply_low_rank, factorize_conv, factorize_linear
from algospeed.methods.spec import MethodSpec, build_method
from method_harness import assert_resumes_exactly, trainer_for


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameters_and_counted_flops_really_shrink() -> None:
    baseline = trainer_for("", budget="2ba")
    trainer = trainer_for("low_rank:rank_fraction=0.25", budget="2ba")
    model = trainer.state.model
    assert [type(m) for m in (model.features[0], model.features[3], model.head)] == [LowRank] * 3
    assert model.features[3][0].out_channels == 16  # ceil(0.25 * min(64, 32 * 3 * 3))
    assert count(model) < 0.5 * count(baseline.state.model)
    optimized = sum(p.numel() for g in trainer.state.optimizer.param_groups for p in g["params"])
    assert optimized == count(model), "the optimizer was rebuilt over the factors"
    base = baseline.fit().final.flops
    assert trainer.fit().final.flops < 0.6 * base

    kept = trainer_for("low_rank:rank_fraction=0.25:factorize_convs=false", budget="2ba").state.model
    assert isinstance(kept.features[3], nn.Conv2d) and isinstance(kept.head, LowRank)


def test_factors_reproduce_the_layer_at_full_rank_and_give_the_best_approximation_below() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(12, 7)
    x = torch.randn(5, 12)
    full = factorize_linear(layer, 7)
    assert torch.allclose(full(x), layer(x), atol=1e-5)
    low = factorize_linear(layer, 3)
    product = low[1].weight @ low[0].weight
    u, s, vh = torch.linalg.svd(layer.weight.detach())
    assert torch.allclose(product, (u[:, :3] * s[:3]) @ vh[:3], atol=1e-5), "the truncated SVD (Eckart-Young)"
    assert torch.allclose(low[0].weight.norm(dim=1) ** 2, s[:3], atol=1e-5), "singular values split evenly"

    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    images = torch.randn(2, 3, 9, 9)
    assert torch.allclose(factorize_conv(conv, 8)(images), conv(images), atol=1e-5)
    signal_conv = nn.Conv1d(4, 6, 5, padding=2, bias=False)
    signals = torch.randn(2, 4, 11)
    assert torch.allclose(factorize_conv(signal_conv, 6)(signals), signal_conv(signals), atol=1e-5)


def test_apply_skips_layers_where_factors_would_not_save_parameters() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(64, 64), nn.Conv2d(8, 8, 3, groups=2))
    assert apply_low_rank(model, rank_fraction=0.5) == 0, "square layers at half rank save nothing"
    assert apply_low_rank(model, rank_fraction=0.25) == 1, "2x2 at rank 1 saves nothing; grouped convs are skipped"
    assert isinstance(model[0], nn.Linear) and isinstance(model[1], LowRank) and isinstance(model[2], nn.Conv2d)
    assert apply_low_rank(model, rank_fraction=0.25) == 0, "factors are not factorized again"


def test_low_rank_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("low_rank", tmp_path, budget="12ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rank_fraction": 0.0}, "rank_fraction"),
        ({"rank_fraction": 1.5}, "rank_fraction"),
        ({"factorize_convs": False, "factorize_linears": False}, "nothing would change"),
    ],
)
def test_bad_settings_are_usage_errors(settings, message) -> None:
    with pytest.raises(UsageError, match=message):
        build_method(MethodSpec(name="low_rank", settings=settings))
