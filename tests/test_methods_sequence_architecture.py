"""The speedrun's architecture methods on a tiny GPT and a tiny text: each one's effect, causality kept under
every one, exact resume, composition, and refusal of models and data they cannot act on."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from algospeed.errors import UsageError
from algospeed.functional import (
    alibi_slopes,
    apply_alibi,
    apply_logit_softcap,
    apply_qk_norm,
    apply_relu_squared,
    apply_rotary,
    apply_swiglu,
    apply_unet_skips,
    apply_value_embeddings,
    rotate,
    softcap,
    untie_head,
)
from algospeed.methods.model.alibi import alibi_bias
from algospeed.methods.model.qk_norm import QKNorm
from algospeed.methods.model.rotary import Rotary
from algospeed.methods.model.swiglu import GatedMLP
from algospeed.methods.model.value_embeddings import ValueMix
from algospeed.methods.optimization.ema import averaged_copy
from algospeed.methods.shared.transformer import ChainedQK
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads.gpt import GPT
from method_harness import assert_resumes_exactly
from test_text_workloads import prose

VOCAB = 50
MODEL = {"context": 32, "layers": 4, "width": 32, "heads": 2, "eval_tokens": 1024}
PLAIN_FUNCTIONS = {
    "rotary": apply_rotary,
    "alibi": apply_alibi,
    "qk_norm": apply_qk_norm,
    "relu_squared": apply_relu_squared,
    "swiglu": apply_swiglu,
    "logit_softcap": apply_logit_softcap,
    "untied_head": untie_head,
    "value_embeddings": apply_value_embeddings,
    "unet_skips": apply_unet_skips,
}
METHODS = tuple(PLAIN_FUNCTIONS)
STACK = "rotary,qk_norm,relu_squared,untied_head,value_embeddings:tables=1,unet_skips,logit_softcap"


def gpt(**settings: int) -> GPT:
    torch.manual_seed(0)
    return GPT(VOCAB, **{"context": 16, "layers": 4, "width": 32, "heads": 4, **settings}).eval()


def token_ids(seed: int = 0, rows: int = 3, length: int = 16) -> torch.Tensor:
    return torch.randint(0, VOCAB, (rows, length), generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def text(tmp_path: Path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(prose(0, 6000), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------- every method
@pytest.mark.parametrize("name", METHODS)
def test_the_model_stays_causal_and_changes_under_each_method(name: str) -> None:
    model = gpt()
    ids = token_ids()
    plain = model(ids)
    PLAIN_FUNCTIONS[name](model)
    logits = model(ids)
    # A copied head computes the same function until it trains; every other method changes the function.
    assert torch.equal(logits, plain) == (name == "untied_head"), name
    for position in (0, 7, 15):
        changed = ids.clone()
        changed[:, position] = (changed[:, position] + 1) % VOCAB
        again = model(changed)
        assert torch.equal(again[:, :position], logits[:, :position]), f"{name}: the past saw the future"
        assert not torch.allclose(again[:, position], logits[:, position])


@pytest.mark.parametrize("name", METHODS)
def test_each_method_resumes_exactly(name: str, text: Path, tmp_path: Path) -> None:
    trainer = assert_resumes_exactly(
        name, tmp_path, workload="text-file", budget="2ep", options={"path": str(text), **MODEL}, batch_size=8
    )
    trained = {id(p) for group in trainer.state.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in trainer.state.model.parameters()}  # new parameters train, removed ones left


def test_the_speedrun_stack_composes_learns_and_resumes_exactly(text: Path, tmp_path: Path) -> None:
    trainer = assert_resumes_exactly(
        STACK, tmp_path, workload="text-file", budget="2ep", options={"path": str(text), **MODEL}, batch_size=8
    )
    model = trainer.state.model
    assert isinstance(model.positions, nn.Identity) and model.head.weight is not model.embedding.weight
    chain = model.blocks[0].attention.qk_transform
    assert isinstance(chain, ChainedQK) and [type(t) for t in chain.transforms] == [QKNorm, Rotary]
    first, last = trainer.state.curve[0], trainer.state.curve[-1]
    assert last.metrics["loss"] < first.metrics["loss"] - 0.3


@pytest.mark.parametrize("name", METHODS)
def test_an_image_workload_refuses_them_up_front(name: str) -> None:
    with pytest.raises(ValidationError, match=f"method '{name}' acts on tokens.*holds images"):
        RunSpec(workload="digits", methods=name)


@pytest.mark.parametrize("name", METHODS)
def test_a_model_without_the_interface_is_one_line_usage_error(name: str) -> None:
    with pytest.raises(UsageError, match=f"method '{name}' acts on a transformer") as caught:
        PLAIN_FUNCTIONS[name](nn.Sequential(nn.Embedding(VOCAB, 8), nn.Linear(8, VOCAB)))
    assert "\n" not in str(caught.value)


def test_rotary_and_alibi_both_replace_positions_so_they_are_refused_together() -> None:
    with pytest.raises(ValidationError, match="methods 'rotary' and 'alibi' cannot be combined"):
        RunSpec(workload="text-file", options={"path": "x"}, methods="rotary,alibi")


# ------------------------------------------------------------------------------------------ positions
def test_rotary_preserves_norms_and_its_scores_depend_only_on_the_offset() -> None:
    x = torch.randn(2, 3, 16, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(rotate(x).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(rotate(x)[..., 0, :], x[..., 0, :])  # position 0 is not rotated
    query, key = torch.randn(8), torch.randn(8)
    scores = rotate(query.expand(16, 8)) @ rotate(key.expand(16, 8)).T  # query at t, key at s
    for offset in range(-15, 16):  # constant along every diagonal: a function of t - s alone
        diagonal = scores.diagonal(offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert not torch.allclose(scores.diagonal(0)[0], scores.diagonal(3)[0])

    model = gpt()
    apply_rotary(model)
    assert isinstance(model.positions, nn.Identity)
    assert all(isinstance(b.attention.qk_transform, Rotary) for b in model.blocks)
    ids = token_ids()
    swapped = torch.cat([ids[:, :15].flip(1), ids[:, 15:]], dim=1)
    assert not torch.allclose(model(swapped)[:, -1], model(ids)[:, -1], atol=1e-3)  # order is seen again


def test_alibi_slopes_are_the_papers_geometric_sequence() -> None:
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0**-i for i in range(1, 9)]))
    assert torch.allclose(alibi_slopes(4), torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8]))
    six = [2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]  # 4 heads' slopes, then every other of 8
    assert torch.allclose(alibi_slopes(6), torch.tensor(six))


def test_alibi_biases_each_head_by_its_slope_times_the_distance() -> None:
    slopes = alibi_slopes(4)
    bias = alibi_bias(slopes, 5, 5)
    assert bias.shape == (4, 5, 5)
    for head in range(4):
        for i in range(5):
            for j in range(i + 1):
                assert bias[head, i, j].item() == pytest.approx(-slopes[head].item() * (i - j))

    model = gpt(layers=1)
    apply_alibi(model)
    assert isinstance(model.positions, nn.Identity) and not any("positions" in n for n, _ in model.named_parameters())
    attention = model.blocks[0].attention
    x = torch.randn(2, 16, 32, generator=torch.Generator().manual_seed(0))
    q, k, v = attention.qkv(x).view(2, 16, 3, 4, 8).permute(2, 0, 3, 1, 4)
    causal = torch.ones(16, 16, dtype=torch.bool).tril()
    scores = (q @ k.transpose(-1, -2) / math.sqrt(8) + alibi_bias(alibi_slopes(4), 16, 16)).masked_fill(
        ~causal, float("-inf")
    )
    expected = attention.proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 16, 32))
    assert torch.allclose(attention(x), expected, atol=1e-5)  # the scores carry exactly ALiBi's bias


# ---------------------------------------------------------------------------------------- attention
def test_qk_norm_normalizes_queries_and_keys_and_composes_with_rotary_in_either_order() -> None:
    q, k = torch.randn(2, 4, 16, 8) * 5, torch.randn(2, 4, 16, 8) * 5
    normed_q, normed_k = QKNorm("rms")(q, k)
    assert torch.allclose(normed_q.square().mean(-1), torch.ones(2, 4, 16), atol=1e-4)
    assert torch.allclose(normed_k.square().mean(-1), torch.ones(2, 4, 16), atol=1e-4)
    l2 = QKNorm("l2", temperature=3.0)
    unit_q, unit_k = l2(q, k)
    assert torch.allclose(unit_k.norm(dim=-1), torch.ones(2, 4, 16), atol=1e-5)
    assert torch.allclose(unit_q.norm(dim=-1), torch.full((2, 4, 16), 3.0 * math.sqrt(8)), atol=1e-4)

    orders = []
    for first, second in ((apply_rotary, apply_qk_norm), (apply_qk_norm, apply_rotary)):
        model = gpt()
        first(model)
        second(model)
        chain = model.blocks[0].attention.qk_transform
        assert [type(t) for t in chain.transforms] == [QKNorm, Rotary]
        orders.append(model(token_ids()))
    assert torch.equal(*orders)


def test_value_embeddings_reach_exactly_the_layers_they_should() -> None:
    for tables, readers in ((0, {0: 0, 1: 1, 2: 2, 3: 3}), (1, {0: 0, 3: 0}), (2, {0: 0, 1: 1, 2: 0, 3: 1})):
        model = gpt()
        source = apply_value_embeddings(model, tables)
        assert len(source.tables) == len(set(readers.values()))
        mixes = {i: b.attention.value_transform for i, b in enumerate(model.blocks)}
        assert {i: m.table for i, m in mixes.items() if m is not None} == readers
        F.cross_entropy(model(token_ids()).flatten(0, 1), token_ids(1).flatten()).backward()
        for table in source.tables:  # every table gets a gradient from the ids it embeds
            assert table.weight.grad is not None and table.weight.grad.abs().sum() > 0
        for layer, mix in mixes.items():
            if mix is not None:
                assert mix.weights.grad[1].abs() > 0, f"layer {layer}'s embedding does not reach the loss"
        assert source.ids is None  # the ids live for one forward
    with pytest.raises(UsageError, match="tables=3 need 6 layers"):
        apply_value_embeddings(gpt(), 3)


def test_value_embeddings_change_only_the_values_of_the_layers_that_read_them() -> None:
    model = gpt()
    apply_value_embeddings(model, 1)
    ids = token_ids()
    with_embeddings = model(ids)
    for block in (model.blocks[0], model.blocks[3]):
        mix: ValueMix = block.attention.value_transform
        with torch.no_grad():
            mix.weights.copy_(torch.tensor([1.0, 0.0]))  # v alone: the plain attention
    plain = gpt()
    assert torch.equal(model(ids), plain(ids))
    assert not torch.allclose(with_embeddings, plain(ids), atol=1e-4)


# --------------------------------------------------------------------------------------- MLP and head
def test_relu_squared_squares_the_positive_part_in_every_mlp() -> None:
    model = gpt()
    apply_relu_squared(model)
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    for block in model.blocks:
        assert torch.equal(block.mlp.activation(x), torch.tensor([0.0, 0.0, 0.0, 0.25, 9.0]))
    model.blocks[0].mlp = nn.Sequential(nn.Linear(32, 32))
    with pytest.raises(UsageError, match=r"method 'relu_squared' sets block\.mlp\.activation"):
        apply_relu_squared(model)


def test_swiglu_gates_the_mlp_and_keeps_the_parameter_count() -> None:
    model = gpt(width=96)
    before = sum(p.numel() for p in model.parameters())
    apply_swiglu(model)
    after = sum(p.numel() for p in model.parameters())
    assert after == pytest.approx(before, rel=0.001)
    mlp = model.blocks[0].mlp
    assert isinstance(mlp, GatedMLP) and mlp.up.out_features == 256  # 2/3 of 4 x 96
    x = torch.randn(3, 96)
    assert torch.allclose(mlp(x), mlp.down(F.silu(mlp.gate(x)) * mlp.up(x)))
    with torch.no_grad():
        mlp.gate.weight.zero_()  # a closed gate: silu(0) = 0 blocks every unit
    assert torch.equal(mlp(x), torch.zeros(3, 96))


def test_logit_softcap_bounds_the_logits_and_keeps_small_ones() -> None:
    model = gpt()
    with torch.no_grad():
        model.embedding.weight.mul_(2000)  # the tied head now gives logits far beyond the cap
    ids = token_ids()
    raw = model(ids)
    assert raw.abs().max() > 100
    apply_logit_softcap(model, cap=15.0)
    capped = model(ids)
    assert capped.abs().max() <= 15.0 and torch.allclose(capped, softcap(raw, 15.0), atol=1e-4)
    small = torch.tensor([0.01, -0.2, 0.5])
    assert torch.allclose(softcap(small, 15.0), small, atol=1e-3)
    with pytest.raises(UsageError, match="soft-capped already"):
        apply_logit_softcap(model)


def test_the_untied_head_is_a_separate_parameter_that_trains_apart(text: Path) -> None:
    trainer = build_trainer(
        RunSpec(workload="text-file", options={"path": str(text), **MODEL}, budget="3ba", methods="untied_head")
    )
    model = trainer.state.model
    head, embedding = model.head.weight, model.embedding.weight
    assert head is not embedding and torch.equal(head, embedding)  # a copy of the tied weight
    names = {name for name, _ in model.named_parameters()}
    assert {"head.weight", "embedding.weight"} <= names
    trainer.fit()
    assert not torch.equal(model.head.weight, model.embedding.weight)
    with pytest.raises(UsageError, match="this model's head is untied"):
        untie_head(model)


def test_unet_skips_add_each_early_output_to_its_mirror_blocks_input() -> None:
    model = gpt(layers=5)
    ids = token_ids()
    plain = model(ids)
    skips = apply_unet_skips(model)
    assert skips.weights.shape == (2,) and torch.equal(skips.weights, torch.ones(2))
    outputs, inputs = {}, {}
    for index, block in enumerate(model.blocks):  # registered after the skips': they see what the blocks see
        block.register_forward_pre_hook(lambda b, args, i=index: inputs.__setitem__(i, args[0]))
        block.register_forward_hook(lambda b, args, out, i=index: outputs.__setitem__(i, out))
    model(ids)
    assert torch.equal(inputs[3], outputs[2] + outputs[1])  # block 3 mirrors block 1
    assert torch.equal(inputs[4], outputs[3] + outputs[0])  # block 4 mirrors block 0
    assert torch.equal(inputs[2], outputs[1])  # the middle block has no pair
    assert skips.kept == {}  # nothing held between forwards
    with torch.no_grad():
        skips.weights.zero_()
    assert torch.equal(model(ids), plain)  # zero weights: the plain model


def test_an_averaged_copy_runs_its_own_hooked_modules() -> None:
    """EMA and SWA evaluate a deep copy: its value embeddings, skips and cap must be the copy's, not the
    trained model's."""
    model = gpt()
    for name in ("value_embeddings", "unet_skips", "logit_softcap"):
        PLAIN_FUNCTIONS[name](model)
    average = averaged_copy(model)
    ids = token_ids()
    assert torch.equal(average(ids), model(ids))
    with torch.no_grad():
        model.unet_skips.weights.zero_()
        model.value_embeddings.tables[0].weight.zero_()
    assert not torch.allclose(average(ids), model(ids), atol=1e-4)  # the copy kept its own weights
    assert average.blocks[0].attention.value_transform._source[0] is average.value_embeddings
