from __future__ import annotations

import pytest
import torch
from torch import nn

from algospeed.core.callback import Callback, check_composition
from algospeed.core.data import InMemoryLoader
from algospeed.core.trainer import Trainer
from algospeed.errors import UsageError
from algospeed.methods.model.progressive_growing import (
    Dormant,
    grow,
    growth_slots,
    growth_times,
    rebuild_keeping_state,
    shrink,
)
from algospeed.methods.spec import MethodSpec, build_method
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.models import SmallResNet
from method_harness import assert_resumes_exactly


class Probe(Callback):
    """Per step: the depth, whether each new block started as a copy of the one before it, whether the
    optimizer holds every parameter, and the FLOPs charged."""

    def __init__(self) -> None:
        self.depths: list[int] = []
        self.copies: list[bool] = []
        self.complete: list[bool] = []
        self.momentum_kept: list[bool] = []
        self.flops: list[float] = []
        self._before: list[nn.Module] = []
        self._buffers: dict[int, torch.Tensor] = {}
        self._total = 0.0

    def on_before_forward(self, state) -> None:  # after the method's after_dataloader
        blocks = list(state.model.blocks)
        self.depths.append(sum(not isinstance(b, Dormant) for b in blocks))
        for index, block in enumerate(blocks):
            if self._before and isinstance(self._before[index], Dormant) and not isinstance(block, Dormant):
                new, old = block.state_dict(), blocks[index - 1].state_dict()
                self.copies.append(all(torch.equal(new[k], old[k]) for k in old) and block is not blocks[index - 1])
        self._before = blocks
        optimized = {id(p) for g in state.optimizer.param_groups for p in g["params"]}
        self.complete.append(optimized == {id(p) for p in state.model.parameters()})
        kept = all(
            state.optimizer.state[p]["momentum_buffer"] is buffer
            for p in state.model.parameters()
            if (buffer := self._buffers.get(id(p))) is not None
        )
        self.momentum_kept.append(kept)

    def on_batch_end(self, state) -> None:
        self._buffers = {id(p): s["momentum_buffer"] for p, s in state.optimizer.state.items()}
        self.flops.append(state.clock.flops - self._total)
        self._total = state.clock.flops


def small_trainer(budget: str, *callbacks: Callback, blocks_per_stage: int = 3) -> Trainer:
    """A narrow SmallResNet with three blocks per stage on random 12x12 images (fast: no evaluation)."""
    generator = torch.Generator().manual_seed(0)
    loader = InMemoryLoader(torch.randn(96, 1, 12, 12, generator=generator), torch.arange(96) % 10, 16)
    torch.manual_seed(0)
    return Trainer(
        SmallResNet(width=4, blocks_per_stage=blocks_per_stage),
        loader,
        optimizer=lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
        budget=budget,
        callbacks=[build_method(MethodSpec(name="progressive_growing", settings={"grow_end": 0.5})), *callbacks],
        device="cpu",
    )


def test_depth_and_flops_grow_at_the_growth_points_from_copies_of_the_previous_block() -> None:
    probe = Probe()
    trainer = small_trainer("6ba", probe)
    assert sum(isinstance(b, Dormant) for b in trainer.state.model.blocks) == 4
    trainer.fit()
    # 4 slots grow at progress 0.125, 0.25, 0.375, 0.5; step s starts at progress s / 6
    assert probe.depths == [5, 6, 7, 9, 9, 9]
    assert probe.copies == [True] * 4
    assert all(probe.complete), "the optimizer holds every parameter, the new ones included"
    assert all(probe.momentum_kept), "old parameters keep their momentum across growths"
    assert probe.flops[0] < probe.flops[1] < probe.flops[2] < probe.flops[3] == probe.flops[5]
    assert trainer.state.model_version == 3
    full = SmallResNet(blocks_per_stage=3)
    assert trainer.state.model.state_dict().keys() == full.state_dict().keys(), "it ends as the full network"


def test_plain_functions() -> None:
    model = SmallResNet(width=4, blocks_per_stage=2)
    slots = growth_slots(model)
    assert slots == [("blocks", 1)], "only the first stage has two shape-preserving blocks in a row"
    shrink(model, slots)
    assert isinstance(model.blocks[1], Dormant) and model(torch.randn(2, 1, 12, 12)).shape == (2, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 1, 12, 12)).sum().backward()
    optimizer.step()
    block = grow(model, slots[0])
    assert model.blocks[1] is block and block is not model.blocks[0]
    x = torch.randn(2, 4, 6, 6)
    model.eval()
    assert torch.equal(block(x), model.blocks[0](x))
    assert growth_times(4, 0.5) == pytest.approx([0.125, 0.25, 0.375, 0.5])

    class Holder:
        pass

    holder = Holder()
    holder.model, holder.optimizer = model, optimizer
    holder.optimizer_factory = lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)
    holder.rebuild_optimizer = lambda: setattr(holder, "optimizer", holder.optimizer_factory(list(model.parameters())))
    buffer = optimizer.state[model.blocks[0].residual[0].weight]["momentum_buffer"]
    rebuild_keeping_state(holder)
    assert holder.optimizer is not optimizer
    assert holder.optimizer.state[model.blocks[0].residual[0].weight]["momentum_buffer"] is buffer
    assert block.residual[0].weight not in holder.optimizer.state
    assert sum(len(g["params"]) for g in holder.optimizer.param_groups) == len(list(model.parameters()))


def test_a_model_with_nothing_to_grow_is_left_alone() -> None:
    trainer = build_trainer(RunSpec(workload="mnist5k", budget="1ba", methods="progressive_growing", device="cpu"))
    assert not any(isinstance(m, Dormant) for m in trainer.state.model.modules())


def test_progressive_growing_resumes_exactly(tmp_path) -> None:
    # mnist5k with two blocks per stage has one block to grow, at progress 0.4; the middle checkpoint is after it
    assert_resumes_exactly(
        "progressive_growing:grow_end=0.4",
        tmp_path,
        workload="mnist5k",
        options={"blocks_per_stage": 2},
        budget="8ba",
        batch_size=16,
    )


def test_bad_settings_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="grow_end"):
        build_method(MethodSpec(name="progressive_growing", settings={"grow_end": 0}))
    for other in ("stochastic_depth", "layer_freezing"):
        methods = [build_method(MethodSpec(name=name)) for name in ("progressive_growing", other)]
        with pytest.raises(UsageError, match="cannot be combined"):
            check_composition(methods)
