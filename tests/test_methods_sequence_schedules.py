"""The speedrun's schedule and depth methods on a tiny text: each one's effect, causality kept, exact resume,
and refusal on images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from algospeed.core.batch import Batch
from algospeed.core.callback import Callback
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.functional import (
    apply_layer_drop,
    apply_token_dropping,
    crop_tokens,
    drop_tokens_through,
    keep_probabilities,
    kept_positions,
    set_window,
    stack_blocks,
    truncate_blocks,
)
from algospeed.methods.model.progressive_layer_drop import SkippableBlock
from algospeed.methods.model.token_dropping import TokenDroppingBlock
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.gpt import GPT, CausalSelfAttention
from method_harness import assert_resumes_exactly

MODEL = {"context": 32, "layers": 4, "width": 32, "heads": 2, "eval_tokens": 1024}
WORDS = ("the", "king", "and", "queen", "speak", "of", "love", "war", "honour", "while", "fool", "sings")
TOKEN_METHODS = (
    "sequence_length_warmup",
    "sliding_window",
    "token_dropping",
    "progressive_layer_drop",
    "depth_stacking",
)


@pytest.fixture
def text(tmp_path: Path) -> Path:
    """About 6000 characters of learnable text in one file."""
    words = np.random.default_rng(0).choice(WORDS, size=1200)
    path = tmp_path / "text.txt"
    path.write_text("\n".join(" ".join(words[i : i + 8]) for i in range(0, len(words), 8)) + "\n")
    return path


def spec(text: Path, methods: str, budget: str = "2ep", **extra: object) -> RunSpec:
    return RunSpec(
        workload="text-file",
        options={"path": str(text), **MODEL},
        budget=budget,
        methods=methods,
        batch_size=8,
        device="cpu",
        **extra,
    )


class Batches(Callback):
    """Records the (rows, length) of each training batch as the forward sees it, and the blocks' count."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.depths: list[int] = []

    def on_before_forward(self, state: State) -> None:
        self.shapes.append(tuple(state.batch.inputs.shape))
        self.depths.append(len(state.model.blocks))


def gpt(layers: int = 4) -> GPT:
    torch.manual_seed(0)
    return GPT(20, context=32, layers=layers, width=32, heads=2)


# ------------------------------------------------------------------------------ sequence-length warmup
def test_the_context_grows_with_progress_and_tokens_are_charged_as_used(text: Path) -> None:
    batches = Batches()
    trainer = build_trainer(
        spec(text, "sequence_length_warmup:ramp_end=0.8:multiple=8", budget="2e4tok"), callbacks=[batches]
    )
    trainer.fit()
    lengths = [length for _, length in batches.shapes]
    assert lengths[0] == 8 and lengths[-1] == 32  # a quarter of the context at first, all of it by the end
    assert lengths == sorted(lengths) and set(lengths) == {8, 16, 24, 32}  # multiples of 8
    assert trainer.state.clock.tokens == sum(rows * length for rows, length in batches.shapes)
    plain = build_trainer(spec(text, "", budget="2e4tok"))
    plain.fit()
    assert trainer.state.clock.steps > plain.state.clock.steps  # the same tokens buy more, shorter steps


def test_a_crop_keeps_next_token_targets_aligned_at_a_random_offset() -> None:
    ids = torch.arange(40).view(2, 20)
    batch = Batch(ids, ids + 1, mask=torch.ones_like(ids))
    offsets = set()
    for seed in range(8):
        cropped = crop_tokens(batch, 6, torch.Generator().manual_seed(seed))
        assert cropped.inputs.shape == (2, 6) and cropped.mask.shape == (2, 6)
        assert torch.equal(cropped.targets, cropped.inputs + 1)
        assert torch.equal(cropped.inputs[:, 1:], cropped.inputs[:, :-1] + 1)  # contiguous
        offsets.add(int(cropped.inputs[0, 0]))
    assert len(offsets) > 1
    assert crop_tokens(batch, 20) is batch


# ------------------------------------------------------------------------------------ sliding window
def test_a_window_hides_the_positions_beyond_it() -> None:
    torch.manual_seed(0)
    attention = CausalSelfAttention(16, 2)
    x = torch.randn(1, 12, 16)
    changed = x.clone()
    changed[:, 0] += 1.0
    attention.window = 4
    moved = (attention(changed) - attention(x)).abs().amax(dim=-1)[0]
    assert (moved[:4] > 0).all() and (moved[4:] == 0).all()  # only positions 0..3 still see position 0
    attention.window = None
    assert (attention(changed) - attention(x)).abs().amax(dim=-1)[0].gt(0).all()


def test_the_window_schedule_widens_the_mask_and_lifts_it_at_full_context(text: Path) -> None:
    trainer = build_trainer(spec(text, "sliding_window:multiple=8"))
    method, model = trainer.callbacks[0], trainer.state.model
    assert [method.window_at(p) for p in (0.0, 0.35, 0.7, 1.0)] == [8, 16, 32, 32]
    assert all(block.attention.window == 8 for block in model.blocks)
    ids = torch.randint(0, 10, (1, 32))
    narrow = model(ids)
    set_window(model, method.window_at(1.0))
    assert all(block.attention.window is None for block in model.blocks)  # plain causal attention again
    assert not torch.allclose(narrow, model(ids))


# ------------------------------------------------------------------------------------- token dropping
def test_dropped_tokens_skip_the_layer_and_come_back_in_their_places() -> None:
    seen: list[torch.Tensor] = []

    def layer(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return x * 10

    x = torch.arange(2 * 8, dtype=torch.float32).view(2, 8, 1).expand(2, 8, 3).contiguous()
    positions = kept_positions(2, 8, 3, torch.Generator().manual_seed(0))
    out = drop_tokens_through(layer, x, positions)
    assert seen[0].shape == (2, 3, 3)  # the layer saw only the kept tokens
    for row in range(2):
        kept = positions[row]
        assert torch.equal(kept, kept.sort().values)  # in their causal order
        assert torch.equal(seen[0][row, :, 0], x[row, kept, 0])
        dropped = torch.tensor([i for i in range(8) if i not in kept.tolist()])
        assert torch.equal(out[row, kept], x[row, kept] * 10)
        assert torch.equal(out[row, dropped], x[row, dropped])  # untouched, in place


def test_only_the_middle_layers_drop_tokens_and_only_in_training(text: Path) -> None:
    trainer = build_trainer(spec(text, "token_dropping", budget="4ba"))
    blocks = trainer.state.model.blocks
    assert [isinstance(b, TokenDroppingBlock) for b in blocks] == [False, True, True, False]
    lengths: dict[int, list[int]] = {i: [] for i in range(4)}
    for i, block in enumerate(blocks):
        inner = block.block if isinstance(block, TokenDroppingBlock) else block
        inner.register_forward_pre_hook(lambda m, args, i=i: lengths[i].append(args[0].shape[1]))
    trainer.fit()
    assert lengths[0][0] == 32 and lengths[3][0] == 32
    assert lengths[1][0] == 16 and lengths[2][0] == 16  # half the tokens at the start
    trainer.state.model.eval()
    for values in lengths.values():
        values.clear()
    trainer.state.model(torch.zeros(1, 32, dtype=torch.long))
    assert all(values == [32] for values in lengths.values())


# ------------------------------------------------------------------------------ progressive layer drop
def test_layer_drop_skips_layers_only_in_training() -> None:
    model = gpt()
    layers = apply_layer_drop(model)
    calls = []
    for i, layer in enumerate(layers):
        layer.block.register_forward_pre_hook(lambda m, args, i=i: calls.append(i))
    layers[1].dropped = layers[3].dropped = True
    ids = torch.randint(0, 20, (2, 16))
    model.train()
    model(ids)
    assert calls == [0, 2]
    calls.clear()
    model.eval()
    model(ids)
    assert calls == [0, 1, 2, 3]
    skip = SkippableBlock(torch.nn.Linear(4, 4))
    skip.dropped = True
    x = torch.randn(3, 4)
    assert skip(x) is x


def test_the_keep_probability_falls_with_progress_and_depth() -> None:
    assert keep_probabilities(4, 0.0) == [1.0, 1.0, 1.0, 1.0]
    late = keep_probabilities(4, 1.0, theta=0.5, gamma=10.0)
    assert late == sorted(late, reverse=True) and late[-1] == pytest.approx(0.5, abs=1e-4)
    assert keep_probabilities(4, 0.2)[-1] > late[-1]


def test_layer_drop_skips_deep_layers_more_often_as_training_advances(text: Path) -> None:
    trainer = build_trainer(spec(text, "progressive_layer_drop:gamma=50", budget="40ba", eval_interval="40ba"))
    calls = [0, 0, 0, 0]

    def count(i: int, module: torch.nn.Module) -> None:
        calls[i] += module.training

    for i, layer in enumerate(trainer.state.model.blocks):
        layer.block.register_forward_pre_hook(lambda m, args, i=i: count(i, m))
    trainer.fit()
    assert calls[0] > calls[3] and calls[3] < 40  # the deepest layer is skipped most
    assert sum(calls) < 4 * 40


# ------------------------------------------------------------------------------------ depth stacking
class Growth(Callback):
    """At the first step after growth: copies of the trained blocks, and what the optimizer holds."""

    def __init__(self) -> None:
        self.copies_equal: list[bool] = []
        self.shared: bool = True
        self.optimizer_covers: bool = False
        self.new_have_state: bool = True
        self.old_have_state: bool = False
        self.depths: list[int] = []

    def on_before_forward(self, state: State) -> None:
        blocks = state.model.blocks
        self.depths.append(len(blocks))
        if len(blocks) != 4 or self.copies_equal:
            return
        pairs = [(blocks[0], blocks[2]), (blocks[1], blocks[3])]
        self.copies_equal = [
            all(torch.equal(a, b) for a, b in zip(x.state_dict().values(), y.state_dict().values(), strict=True))
            for x, y in pairs
        ]
        self.shared = any(a is b for x, y in pairs for a, b in zip(x.parameters(), y.parameters(), strict=True))
        held = {id(p) for group in state.optimizer.param_groups for p in group["params"]}
        self.optimizer_covers = held == {id(p) for p in state.model.parameters()}
        self.new_have_state = any(p in state.optimizer.state for b in blocks[2:] for p in b.parameters())
        self.old_have_state = all(p in state.optimizer.state for b in blocks[:2] for p in b.parameters())


def test_stacking_duplicates_the_trained_layers_and_the_optimizer_covers_the_copies(text: Path) -> None:
    growth = Growth()
    trainer = build_trainer(spec(text, "depth_stacking:grow_at=0.5", budget="20ba"), callbacks=[growth])
    assert len(trainer.state.model.blocks) == 2
    trainer.fit()
    assert growth.depths == [2] * 10 + [4] * 10
    assert growth.copies_equal == [True, True] and not growth.shared  # exact copies, their own parameters
    assert growth.optimizer_covers and growth.old_have_state and not growth.new_have_state
    blocks = trainer.state.model.blocks
    assert not torch.equal(blocks[0].mlp.up.weight, blocks[2].mlp.up.weight)  # the copies trained apart


def test_stack_blocks_repeats_the_trained_stack_in_order() -> None:
    model = gpt(layers=6)
    truncate_blocks(model, 2)
    new = stack_blocks(model, 6)
    assert len(model.blocks) == 6 and len(new) == 4
    for index in range(6):
        source = model.blocks[index % 2]
        assert torch.equal(model.blocks[index].attention.qkv.weight, source.attention.qkv.weight)


# ----------------------------------------------------------------------------------- batch-size warmup
def test_the_batch_grows_under_the_runs_own_schedule(text: Path) -> None:
    batches = Batches()
    trainer = build_trainer(spec(text, "batch_size_warmup:ramp_end=0.5", budget="3e4tok"), callbacks=[batches])
    assert isinstance(trainer.state.schedule, WarmupLinearDecay)  # the learning-rate schedule is kept
    trainer.fit()
    rows = [r for r, _ in batches.shapes]
    assert rows[0] == 2 and rows[-1] == 8 and rows == sorted(rows) and len(set(rows)) == 4


# ------------------------------------------------------------------------------- across the methods
def _causal(model: torch.nn.Module) -> bool:
    """Changing the last token changes no earlier position's logits."""
    ids = torch.randint(0, 20, (2, 32), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 20
    return torch.equal(model(ids)[:, :-1], model(changed)[:, :-1])


def test_every_method_keeps_the_model_causal_in_training() -> None:
    model = gpt()
    model.train()
    set_window(model, 8)
    for layer in apply_token_dropping(model):
        layer.keep, layer.seed = 12, 5
    dropping = gpt()
    dropping.train()
    for layer in apply_layer_drop(dropping):
        layer.dropped = layer is dropping.blocks[2]
    stacked = gpt(layers=4)
    truncate_blocks(stacked, 2)
    stack_blocks(stacked, 4)
    assert _causal(model) and _causal(dropping) and _causal(stacked.train())


@pytest.mark.parametrize(
    "methods",
    [
        "sequence_length_warmup:ramp_end=0.9",
        "sliding_window:ramp_end=0.9",
        "token_dropping:ramp_end=0.9",
        "progressive_layer_drop",
        "depth_stacking",
        "batch_size_warmup:ramp_end=0.9",
        "batch_size_warmup:ramp_end=0.9,sequence_length_warmup:ramp_end=0.9,sliding_window,token_dropping",
        "muon,rotary,depth_stacking",  # a combined optimizer rebuilt at growth, rotary copied with the blocks
    ],
)
def test_each_resumes_exactly(methods: str, text: Path, tmp_path: Path) -> None:
    assert_resumes_exactly(
        methods, tmp_path, workload="text-file", budget="2ep", options={"path": str(text), **MODEL}, batch_size=8
    )


@pytest.mark.parametrize("name", TOKEN_METHODS)
def test_an_image_workload_refuses_them_up_front(name: str) -> None:
    with pytest.raises(ValueError, match=f"method '{name}' acts on tokens; workload 'digits' holds images"):
        build_trainer(RunSpec(workload="digits", methods=name, budget="1ba"))


def test_a_model_without_the_sequence_interface_is_one_clear_error() -> None:
    with pytest.raises(UsageError, match="method 'token_dropping' acts on a transformer exposing embedding"):
        apply_token_dropping(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_the_lm_preset_compares_the_stack_and_each_part_alone_with_equal_tuning() -> None:
    from algospeed.study.presets import preset
    from algospeed.study.spec import validate_study_spec

    spec = validate_study_spec(preset("lm"))
    assert spec.workload == "shakespeare-char" and spec.arms["baseline"].methods == []
    stack = [method.name for method in spec.arms["stack"].methods]
    assert {"muon", "sequence_length_warmup", "batch_size_warmup"} <= set(stack)
    for name in stack:
        assert [method.name for method in spec.arms[name].methods] == [name]
    assert len(spec.arms) == len(stack) + 2 and spec.tuning is not None and spec.tuning.shared == ["lr"]
