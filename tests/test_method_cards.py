"""Method cards: what they are built from (class, catalogue, support table, recipes), `algospeed methods show`,
the Markdown catalogue of cards (and docs/methods.md kept up to date with it), and tables that stay whole
when piped."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from algospeed import functional
from algospeed.cards.card import method_card, method_cards
from algospeed.cards.evidence import describe_measured, recipe_evidence
from algospeed.cards.render import (
    MARKDOWN_COMMAND,
    card_text,
    cards_markdown,
    evidence_lines,
    loop_limits,
    suggested_spec,
    usage,
)
from algospeed.cards.support import parse_support
from algospeed.cli import main
from algospeed.methods.registry import method_class, method_names
from algospeed.methods.spec import method_settings
from algospeed.plugins import load_plugin, unload_plugin
from algospeed.run_spec import RunSpec, build_trainer
from algospeed.study.recipe import Measured, Recipe
from algospeed.taxonomy.axes import Where
from algospeed.taxonomy.catalogue import entry_for_method, packaged_catalogue
from algospeed.taxonomy.queries import gaps, select

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"
PLANTED = Path(__file__).with_name("planted_plugin.py")
RECIPE = Recipe.model_validate(
    {
        "name": "digits-fast",
        "version": 3,
        "workload": "digits",
        "methods": ["label_smoothing:smoothing=0.05", "ema"],
        "hyperparameters": {"lr": 0.03, "settings": {"ema.decay": 0.95}},
        "measured": {"speedup": 1.4, "low": 1.1, "high": 1.8, "interval": "95% bootstrap", "currency": "reference",
                     "quality": 0.97, "metric": "accuracy", "seeds": 5, "study": "studies/digits-fast"},
    }
)  # fmt: skip
# Small token models, so that each text method's example trains in about a second.
SMALL_TEXT = {"eval_tokens": 512, "layers": 2, "width": 32, "context": 32}


def test_a_card_holds_the_methods_own_declarations_and_its_catalogue_entry() -> None:
    card = method_card("ema")
    assert card.summary == method_class("ema").__doc__.strip().splitlines()[0]
    assert "Helps:" in card.description and "Hurts:" in card.description
    assert [s.name for s in card.settings] == list(method_settings(method_class("ema")))
    assert card.tuned == ("decay",)
    assert card.entry == entry_for_method("ema")
    assert card.conflicts == ("schedule_free", "swa") and card.data == "any"
    assert {f.name for f in card.functions} == {"ema_update", "averaged_copy"}


def test_every_plain_function_shown_is_the_one_its_method_uses() -> None:
    shown = 0
    for card in method_cards():
        for function in card.functions:
            assert getattr(functional, function.name).__module__ == method_class(card.name).__module__
            assert function.signature.startswith(f"{function.name}(") and "'" not in function.signature.split("=")[0]
            shown += 1
    assert shown >= 40


def test_lightning_and_hugging_face_usage_follow_the_support_table() -> None:
    ema, muon, freezing = (method_card(name) for name in ("ema", "muon", "layer_freezing"))
    assert {way for way, _ in usage(ema)} >= {"CLI", "Python trainer", "plain function", "Lightning", "Hugging Face"}
    assert loop_limits(ema) == []
    assert not {"Lightning", "Hugging Face"} & {way for way, _ in usage(muon)}
    (limit,) = loop_limits(muon)
    assert limit.startswith("not in the Lightning or Hugging Face loop: replaces the optimizer")
    assert "Lightning" in {way for way, _ in usage(freezing)}
    assert loop_limits(freezing) == [f"not in the Hugging Face loop: {freezing.loops[1].why}"]


def test_a_method_missing_from_the_support_table_says_so() -> None:
    card = dataclasses.replace(method_card("ema"), loops=None)
    assert loop_limits(card) == ["Lightning and Hugging Face: not in docs/integrations.md's support table yet"]
    assert not {"Lightning", "Hugging Face"} & {way for way, _ in usage(card)}


def test_a_plugins_method_card_names_the_plugin_and_trains_on_its_workload() -> None:
    load_plugin(str(PLANTED))
    try:
        card = method_card("standardize")
        assert card.origin.endswith("planted_plugin.py") and card.entry is None and card.workload == "planted"
        assert dict(usage(card))["CLI"] == [
            f"algospeed train --plugin {card.origin} --workload planted --methods standardize"
        ]
        assert card_text(card).startswith(f"standardize (from {card.origin})\n{card.summary}\n\nplace:")
        assert "paper: not in the catalogue" in card_text(card)
    finally:
        unload_plugin(str(PLANTED))


def test_the_support_table_parser_reads_each_loop_and_skips_other_lines() -> None:
    text = "| method | Lightning | Hugging Face | why |\n| `ema` | yes | yes | averages |\n| `sam` | no | yes | x |\n"
    table = parse_support(text)
    assert list(table) == ["ema", "sam"]
    assert [(s.loop, s.works) for s in table["sam"]] == [("Lightning", False), ("Hugging Face", True)]


def test_evidence_comes_from_a_recipe_with_its_applied_settings_and_its_stack() -> None:
    evidence = recipe_evidence(RECIPE, "ema")
    assert evidence is not None
    assert (evidence.recipe, evidence.workload, evidence.spec) == ("digits-fast v3", "digits", "ema:decay=0.95")
    assert evidence.stacked_with == ("label_smoothing:smoothing=0.05",)
    assert evidence.measured == "1.40x [1.10, 1.80] (95% bootstrap) in reference to accuracy 0.97, 5 seeds"
    assert recipe_evidence(RECIPE, "mixup") is None
    card = dataclasses.replace(method_card("ema"), evidence=(evidence,), workload=evidence.workload)
    text = card_text(card)
    assert "--workload digits --methods ema:decay=0.95" in text
    assert "ema:decay=0.95 in recipe digits-fast v3 on digits, stacked with label_smoothing:smoothing=0.05" in text
    assert "study studies/digits-fast" in text and "no measured evidence" not in text


def test_the_paper_line_names_its_source_and_the_catalogues_notes_follow() -> None:
    soap = card_text(method_card("soap"))
    assert 'paper: Nikhil Vyas, Depen Morwani et al. (2024), "SOAP: Improving and Stabilizing Shampoo' in soap
    assert "arXiv:2409.11321 (catalogue: soap); paper reports: large-batch language models" in soap
    layout = card_text(method_card("channels_last"))
    assert (
        "catalogue: a systems-level feature" in layout and "\ncatalogue: a memory layout, not an algorithmic" in layout
    )
    assert not any(line.startswith("catalogue:") for line in card_text(method_card("ema")).splitlines())


def test_a_method_without_a_recipe_says_there_is_no_evidence_yet() -> None:
    card = dataclasses.replace(method_card("sam"), evidence=())
    (line,) = evidence_lines(card)
    assert line.startswith("no measured evidence yet: no shipped recipe uses sam")
    unmeasured = Measured(speedup=None, currency="reference", quality=0.9, metric="accuracy", seeds=3)
    assert describe_measured(unmeasured) == "no speedup measured to accuracy 0.9 (3 seeds)"
    assert describe_measured(None) == "not measured"


def test_methods_show_prints_the_card(capsys) -> None:
    assert main(["methods", "show", "muon"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == card_text(method_card("muon"))
    for part in ("how to use:", "algospeed train --workload mnist1d --methods muon", "from algospeed.functional import",
                 "paper: Keller Jordan", "suggested settings (measured):"):  # fmt: skip
        assert part in out


def test_an_unknown_method_is_one_line_and_exit_2(capsys) -> None:
    assert main(["methods", "show", "warp_drive"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warp_drive" in err


def test_markdown_goes_to_a_file_or_stdout(tmp_path: Path, capsys) -> None:
    path = tmp_path / "methods.md"
    assert main(["methods", "--markdown", str(path)]) == 0
    expected = cards_markdown(method_cards())
    assert path.read_text() == expected
    assert f"wrote {len(method_names())} method cards" in capsys.readouterr().out
    assert main(["methods", "--markdown", "-"]) == 0
    assert capsys.readouterr().out == expected
    assert main(["methods", "--markdown", str(tmp_path / "missing" / "methods.md")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_markdown_has_an_index_row_and_a_section_per_method() -> None:
    text = cards_markdown(method_cards())
    for name in method_names():
        assert f"| [`{name}`](#{name}) |" in text
        assert f'<a id="{name}"></a>\n\n## {name}\n' in text
    assert text.count("```") % 2 == 0


def test_docs_methods_md_is_up_to_date() -> None:
    built_in = [card for card in method_cards() if card.origin == "built-in"]  # not another test's plugin
    assert DOC.read_text(encoding="utf-8") == cards_markdown(built_in), f"regenerate it: {MARKDOWN_COMMAND}"


def _expected_rows(command: list[str]) -> int:
    entries = packaged_catalogue().entries
    if command == ["methods"]:
        return len(method_names())
    if "--gaps" in command:
        found = gaps(entries)
        return len(found.thin) + len(found.backlog)
    return len(select(entries, where=command[-1])) if "--where" in command else len(Where)


@pytest.mark.parametrize(
    "command", [["methods"], ["taxonomy"], ["taxonomy", "--where", "data"], ["taxonomy", "--gaps"]]
)
def test_piped_tables_keep_every_row_on_one_line(command: list[str], capsys) -> None:
    assert main(command) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("│")]
    assert len(rows) == _expected_rows(command)  # a value folded onto a second line would add a row line
    if command == ["methods"]:
        for card, row in zip(method_cards(), rows, strict=True):
            assert card.name in row and card.summary in row, card.name


@pytest.mark.slow
@pytest.mark.parametrize("name", method_names())
def test_every_cards_example_trains(name: str) -> None:
    card = method_card(name)
    assert card.workload is not None
    options = SMALL_TEXT if card.workload == "shakespeare-char" else {}
    spec = RunSpec(workload=card.workload, options=options, budget="2ba", methods=suggested_spec(card), device="cpu")
    assert build_trainer(spec).fit().final.step == 2
