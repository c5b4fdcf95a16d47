from __future__ import annotations

import pytest
import torch

from algospeed.core.callback import Callback
from algospeed.errors import UsageError
from algospeed.methods.model.stochastic_depth import StochasticBranch, apply_stochastic_depth, sample_drops
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.models import ResidualBlock, SmallResNet
from method_harness import assert_resumes_exactly


class CallCounter(Callback):
    """Counts how often each residual branch really runs, in training steps and in evaluation, and the
    FLOPs charged per step."""

    def __init__(self) -> None:
        self.train_calls: list[int] = []
        self.eval_calls: list[int] = []
        self.in_eval = False
        self.step_flops: list[float] = []
        self._flops = 0.0

    def on_init(self, state) -> None:
        branches = [m for m in state.model.modules() if isinstance(m, StochasticBranch)]
        self.train_calls = [0] * len(branches)
        self.eval_calls = [0] * len(branches)
        for index, branch in enumerate(branches):
            branch.branch.register_forward_hook(lambda *_, index=index: self._count(index))

    def _count(self, index: int) -> None:
        (self.eval_calls if self.in_eval else self.train_calls)[index] += 1

    def on_eval_start(self, state) -> None:
        self.in_eval = True

    def on_eval_end(self, state) -> None:
        self.in_eval = False

    def on_batch_end(self, state) -> None:
        self.step_flops.append(state.clock.flops - self._flops)
        self._flops = state.clock.flops


def test_residual_branches_are_skipped_on_some_steps_never_at_eval_and_skipped_steps_cost_less() -> None:
    counter = CallCounter()
    spec = RunSpec(workload="mnist5k", budget="6ba", methods="stochastic_depth:drop_rate=0.9", device="cpu")
    trainer = build_trainer(spec, callbacks=[counter])
    branches = [m for m in trainer.state.model.modules() if isinstance(m, StochasticBranch)]
    assert [b.drop_rate for b in branches] == pytest.approx([0.3, 0.6, 0.9]), "linear in depth up to drop_rate"
    trainer.fit()
    assert counter.train_calls[2] < 6, "the deepest branch was skipped on some steps"
    assert sum(counter.train_calls) < 18
    eval_batches = sum(1 for _ in trainer.eval_data.iter_epoch(0)) + sum(1 for _ in trainer.test_data.iter_epoch(0))
    assert counter.eval_calls == [eval_batches] * 3, "evaluation never skips a branch"
    full = max(counter.step_flops)
    assert min(counter.step_flops) < full, "steps that skip branches are charged fewer FLOPs"


def test_eval_scales_the_branch_and_training_skips_it() -> None:
    torch.manual_seed(0)
    block = ResidualBlock(4, 4)
    x = torch.randn(2, 4, 6, 6)
    block.eval()
    shortcut, residual = block.shortcut(x), block.residual(x)
    (branch,) = apply_stochastic_depth(block, drop_rate=0.25, distribution="uniform")
    assert torch.allclose(block(x), torch.relu(shortcut + 0.75 * residual), atol=1e-6)
    block.train()
    branch.dropped = True
    assert torch.equal(block(x), torch.relu(x)), "a skipped branch leaves the identity shortcut"
    inverted = ResidualBlock(4, 4).train()
    (branch,) = apply_stochastic_depth(inverted, drop_rate=0.5, distribution="uniform", inverted=True)
    expected = torch.relu(x + 2 * branch.branch(x))
    assert torch.allclose(inverted(x), expected, atol=1e-5)


def test_sample_drops_follows_the_rates_and_the_generator() -> None:
    model = SmallResNet(width=4)
    branches = apply_stochastic_depth(model, drop_rate=0.6)
    assert apply_stochastic_depth(model, drop_rate=0.6) == branches, "applying twice wraps nothing twice"
    draws = [sample_drops(branches, torch.Generator().manual_seed(s)) for s in range(400)]
    rates = torch.tensor(draws, dtype=torch.float32).mean(0)
    assert torch.allclose(rates, torch.tensor([0.2, 0.4, 0.6]), atol=0.08)
    assert sample_drops(branches, torch.Generator().manual_seed(3)) == draws[3]


def test_stochastic_depth_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("stochastic_depth:drop_rate=0.5", tmp_path, workload="mnist5k", budget="8ba")


@pytest.mark.parametrize(
    ("settings", "message"), [({"drop_rate": 1.0}, "drop_rate"), ({"distribution": "cubic"}, "distribution")]
)
def test_bad_settings_are_usage_errors(settings, message) -> None:
    with pytest.raises(UsageError, match=message):
        build_method(MethodSpec(name="stochastic_depth", settings=settings))
