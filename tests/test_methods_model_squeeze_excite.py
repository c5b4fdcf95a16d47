from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.errors import UsageError
from algospeed.methods.model.squeeze_excite import Excited, SqueezeExcite, apply_squeeze_excite
from algospeed.methods.model.stochastic_depth import apply_stochastic_depth
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.workloads.models import SmallResNet
from method_harness import assert_resumes_exactly, trainer_for


def test_gates_are_inserted_after_wide_convs_trained_and_really_rescale_channels() -> None:
    baseline = trainer_for("", budget="2ba")
    trainer = trainer_for("squeeze_excite:min_channels=64", budget="2ba")
    features = trainer.state.model.features
    assert isinstance(features[0], nn.Conv2d), "the 32-channel conv is below min_channels"
    assert isinstance(features[3], Excited) and isinstance(features[3][1], SqueezeExcite)
    se = features[3][1]
    optimized = {id(p) for g in trainer.state.optimizer.param_groups for p in g["params"]}
    assert {id(p) for p in se.parameters()} <= optimized, "the optimizer was rebuilt with the new parameters"
    before = se.expand.weight.detach().clone()
    base_flops = baseline.fit().final.flops
    flops = trainer.fit().final.flops
    assert not torch.equal(se.expand.weight, before), "the gate trains"
    assert base_flops < flops < 1.05 * base_flops

    x = torch.randn(5, 64, 4, 4)
    with torch.no_grad():
        gates = se.gate(x)
        assert gates.shape == (5, 64) and bool(((gates > 0) & (gates < 1)).all())
        assert gates.std() > 0, "the gates depend on the sample and channel"
        out = se(x)
    assert torch.allclose(out, x * gates[:, :, None, None]) and not torch.allclose(out, x)


def test_residual_blocks_get_the_gate_at_the_end_of_the_residual_branch_also_inside_stochastic_depth() -> None:
    model = SmallResNet(width=16)
    inserted = apply_squeeze_excite(model, min_channels=32, reduction=8)
    assert len(inserted) == 2 and [se.reduce.out_features for se in inserted] == [4, 8]
    assert isinstance(model.blocks[1].residual, Excited) and not isinstance(model.blocks[0].residual, Excited)
    assert apply_squeeze_excite(model, min_channels=32) == [], "nothing is gated twice"
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)

    dropped = SmallResNet(width=16)
    branches = apply_stochastic_depth(dropped, drop_rate=0.5)
    assert len(apply_squeeze_excite(dropped, min_channels=16)) == 3
    assert all(isinstance(branch.branch, Excited) for branch in branches)
    for branch in branches:
        branch.dropped = True
    assert dropped(torch.randn(2, 1, 28, 28)).shape == (2, 10), "a dropped branch skips its gate too"

    convs = nn.Sequential(nn.Conv1d(1, 32, 3), nn.ReLU(), nn.Conv1d(32, 8, 3))
    assert len(apply_squeeze_excite(convs, placement="convs")) == 1 and isinstance(convs[0], Excited)
    assert convs(torch.randn(2, 1, 20)).shape == (2, 8, 16)


def test_squeeze_excite_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("squeeze_excite", tmp_path, budget="12ba")


@pytest.mark.parametrize(
    ("settings", "message"),
    [({"reduction": 0}, "reduction"), ({"min_channels": 0}, "min_channels"), ({"placement": "heads"}, "placement")],
)
def test_bad_settings_are_usage_errors(settings, message) -> None:
    with pytest.raises(UsageError, match=message):
        build_method(MethodSpec(name="squeeze_excite", settings=settings))
