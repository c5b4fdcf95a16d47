from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.core.callback import Callback
from algospeed.errors import UsageError
from algospeed.methods.model.ghost_batchnorm import GhostBatchNorm1d, GhostBatchNorm2d, apply_ghost_batchnorm
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from method_harness import assert_resumes_exactly


def manual_ghost_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Normalize each consecutive chunk of `sizes` samples by its own per-channel mean and (biased) variance."""
    parts = []
    for chunk in x.split(sizes):
        dims = [0, *range(2, x.dim())]
        mean = chunk.mean(dims, keepdim=True)
        var = chunk.var(dims, unbiased=False, keepdim=True)
        shape = [1, -1] + [1] * (x.dim() - 2)
        parts.append((chunk - mean) / torch.sqrt(var + 1e-5) * weight.view(shape) + bias.view(shape))
    return torch.cat(parts)


class Recorder(Callback):
    """Keeps the input and output of the first batch norm in the first training step and in evaluation."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def on_init(self, state) -> None:
        def hook(module, args, output) -> None:
            self.seen.setdefault("train" if module.training else "eval", (args[0].detach(), output.detach()))

        state.model.features[1].register_forward_hook(hook)


def test_training_normalizes_each_ghost_batch_by_its_own_statistics_and_eval_is_unchanged() -> None:
    recorder = Recorder()
    spec = RunSpec(workload="digits", budget="1ba", methods="ghost_batchnorm:ghost_batch_size=8", device="cpu")
    trainer = build_trainer(spec, callbacks=[recorder])
    model = trainer.state.model
    norm = model.features[1]
    assert isinstance(norm, GhostBatchNorm2d) and isinstance(model.features[4], GhostBatchNorm2d)
    weight, bias = norm.weight.detach().clone(), norm.bias.detach().clone()
    trainer.fit()

    x, y = recorder.seen["train"]
    assert x.shape[0] == 32
    assert torch.allclose(y, manual_ghost_norm(x, weight, bias, [8, 8, 8, 8]), atol=1e-4)
    assert not torch.allclose(y, manual_ghost_norm(x, weight, bias, [32]), atol=1e-2), "not whole-batch statistics"
    x, y = recorder.seen["eval"]
    running = (x - norm.running_mean.view(1, -1, 1, 1)) / torch.sqrt(norm.running_var.view(1, -1, 1, 1) + 1e-5)
    expected = running * norm.weight.detach().view(1, -1, 1, 1) + norm.bias.detach().view(1, -1, 1, 1)
    assert torch.allclose(y, expected, atol=1e-4), "eval uses the running statistics"


def test_apply_shares_parameters_and_buffers_and_uneven_batches_use_near_equal_chunks() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2))
    original = model[1]
    with torch.no_grad():
        original.weight.uniform_(0.5, 2)
        original.bias.uniform_(-1, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    assert apply_ghost_batchnorm(model, ghost_batch_size=4) == 1
    ghost = model[1]
    assert isinstance(ghost, GhostBatchNorm1d)
    assert ghost.weight is original.weight and ghost.running_mean is original.running_mean
    assert ghost.weight is optimizer.param_groups[0]["params"][2]
    assert apply_ghost_batchnorm(model, ghost_batch_size=4) == 0, "ghosts are not replaced again"

    x = torch.randn(10, 6)
    out = ghost(x)  # 10 samples in chunks of at most 4: ceil(10 / 4) = 3 near-equal chunks
    assert torch.allclose(out, manual_ghost_norm(x, ghost.weight.detach(), ghost.bias.detach(), [4, 4, 2]), atol=1e-5)
    reference = nn.BatchNorm1d(6, momentum=0.1)
    reference(x)
    assert ghost.running_mean.norm() > 0 and torch.allclose(ghost.running_mean, reference.running_mean, atol=0.05)
    assert ghost.momentum == 0.1, "the momentum is restored after the chunked update"
    small = torch.randn(4, 6)
    assert torch.allclose(ghost(small), manual_ghost_norm(small, ghost.weight, ghost.bias, [4]), atol=1e-5)


def test_ghost_batchnorm_resumes_exactly(tmp_path) -> None:
    assert_resumes_exactly("ghost_batchnorm:ghost_batch_size=8", tmp_path, budget="12ba")


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="ghost_batch_size must be at least 2"):
        build_method(MethodSpec(name="ghost_batchnorm", settings={"ghost_batch_size": 1}))
