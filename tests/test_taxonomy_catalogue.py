"""The packaged catalogue: valid, big enough, free of copies, and consistent with the method registry."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

import pytest
import yaml

from algospeed.errors import UsageError
from algospeed.methods.registry import method_names
from algospeed.taxonomy.axes import Place, What, Where
from algospeed.taxonomy.catalogue import (
    SAFE_LOADER,
    entry_for_method,
    load_catalogue,
    packaged_catalogue,
    parse_catalogue,
)
from algospeed.taxonomy.queries import grid
from algospeed.taxonomy.schema import FIELD_ORDER, OPTIONAL_FIELDS, Reference

GOOD_ENTRY = """\
- id: good_method
  name: "Good method"
  summary: "Does one thing."
  reference:
    authors: ["A. Author"]
    year: 2020
    title: "A title"
    venue: "ICML 2020"
  where: [data]
  what: [remove]
  how: fewer_steps
  when: [before]
  mechanism: sample_selection
  tasks: [vision]
  reported_speedup: null
  implemented_by: null
"""


@cache
def raw_entries() -> list[dict]:
    text = resources.files("algospeed.taxonomy").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    return yaml.load(text, Loader=SAFE_LOADER)


def test_packaged_catalogue_validates_and_has_at_least_150_entries() -> None:
    catalogue = packaged_catalogue()
    assert len(catalogue.entries) >= 150
    assert len(catalogue.entries) == len(raw_entries())
    assert packaged_catalogue() is catalogue  # parsed once per process


def test_ids_titles_and_arxiv_ids_are_unique() -> None:
    entries = packaged_catalogue().entries
    for key in (lambda e: e.id, lambda e: e.reference.title.lower(), lambda e: e.reference.arxiv):
        values = [key(e) for e in entries if key(e) is not None]
        assert len(values) == len(set(values)), sorted(v for v in values if values.count(v) > 1)


def test_every_entry_keeps_the_fixed_field_order() -> None:
    for raw in raw_entries():
        assert tuple(raw) == tuple(f for f in FIELD_ORDER if f in raw), raw.get("id")
        assert set(FIELD_ORDER) - set(raw) <= OPTIONAL_FIELDS, raw.get("id")
        reference_order = [field for field in Reference.model_fields if field in raw["reference"]]
        assert list(raw["reference"]) == reference_order, raw["id"]


def test_every_entry_has_a_valid_place_and_a_findable_source() -> None:
    for entry in packaged_catalogue().entries:
        assert isinstance(entry.place, Place)
        assert entry.reference.venue or entry.reference.arxiv, entry.id


def test_every_link_names_a_registered_method() -> None:
    registered = set(method_names())
    links = [e.implemented_by for e in packaged_catalogue().entries if e.implemented_by is not None]
    assert sorted(set(links) - registered) == []
    assert len(links) == len(set(links))


def test_every_registered_method_has_exactly_one_entry() -> None:
    entries = packaged_catalogue().entries
    for name in method_names():
        linked = [e for e in entries if e.implemented_by == name]
        assert len(linked) == 1, f"registered method {name!r} has {len(linked)} catalogue entries"
        assert entry_for_method(name) is linked[0]


def test_entry_for_an_unlinked_method_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no catalogue entry is linked to method 'no_such_method'"):
        entry_for_method("no_such_method")


def test_grid_counts_match_the_entries() -> None:
    entries = packaged_catalogue().entries
    table = grid(entries)
    assert len(table) == len(Where) * len(What)
    assert sum(len(found) for found in table.values()) == sum(len(e.where) * len(e.what) for e in entries)
    for (where, what), found in table.items():
        assert {e.id for e in found} == {e.id for e in entries if where in e.where and what in e.what}


def test_a_good_fixture_loads_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text(GOOD_ENTRY, encoding="utf-8")
    (entry,) = load_catalogue(path).entries
    assert (entry.id, entry.where, entry.how.value) == ("good_method", (Where.DATA,), "fewer_steps")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("where: [data]", "where: [dataset]"), "entry 0 (good_method).where.0: Input should be 'data', 'model'"),
        (("what: [remove]", "what: [delete]"), "Input should be 'remove', 'shrink', 'reuse', 'reorder'"),
        (("how: fewer_steps", "how: faster"), "Input should be 'cheaper_steps', 'fewer_steps' or 'both'"),
        (("when: [before]", "when: []"), "when: Tuple should have at least 1 item"),
        (("tasks: [vision]", "tasks: [vision, vision]"), "tasks: Value error, lists a value twice"),
        (('    venue: "ICML 2020"\n', ""), "a reference needs a venue or an arXiv id"),
        (("id: good_method", "id: Good-Method"), "String should match pattern"),
        (("mechanism: sample_selection", "mechanism: sample selection"), "mechanism: String should match"),
        (("  implemented_by: null", "  speedup: 2x"), "speedup: Extra inputs are not permitted"),
    ],
)
def test_the_schema_rejects_a_bad_entry_naming_it(change: tuple[str, str], message: str) -> None:
    bad = GOOD_ENTRY.replace(*change)
    assert bad != GOOD_ENTRY
    with pytest.raises(UsageError) as error:
        parse_catalogue(bad, "bad.yaml")
    assert str(error.value).startswith("bad.yaml: ")
    assert message in str(error.value)


def test_duplicate_ids_and_links_are_rejected() -> None:
    with pytest.raises(UsageError, match="id must be unique; repeated: good_method"):
        parse_catalogue(GOOD_ENTRY + GOOD_ENTRY, "twice.yaml")
    linked = GOOD_ENTRY.replace("implemented_by: null", "implemented_by: mixup")
    with pytest.raises(UsageError, match="implemented_by must be unique; repeated: mixup"):
        parse_catalogue(linked + linked.replace("id: good_method", "id: other_method"), "links.yaml")


def test_unreadable_or_malformed_files_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read catalogue"):
        load_catalogue(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match="not valid YAML"):
        parse_catalogue("- id: [unclosed", "broken.yaml")
    with pytest.raises(UsageError, match="expected a list of entries"):
        parse_catalogue("id: lonely", "mapping.yaml")


def test_systems_level_entries_are_marked_and_memory_savers_do_not_claim_cheaper_steps() -> None:
    catalogue = packaged_catalogue()
    assert catalogue.entry("channels_last").systems and catalogue.entry("gradient_checkpointing").systems
    assert catalogue.entry("gradient_checkpointing").label == "Gradient checkpointing (systems)"
    assert not catalogue.entry("mixup").systems and catalogue.entry("mixup").label == "MixUp"
    for entry in catalogue.entries:
        if entry.mechanism == "activation_memory":
            assert entry.how.value != "cheaper_steps" and entry.notes, entry.id


@pytest.mark.parametrize(
    ("entry_id", "arxiv", "reports"),
    [
        ("adam_mini", "2406.16793", True),
        ("muon_at_scale", "2502.16982", True),
        ("value_residual", "2410.17897", True),
        ("prodigy", "2306.06101", False),
        ("cautious_optimizers", "2411.16085", True),
        ("depth_mup", "2310.02244", False),
        ("expert_choice_moe", "2202.09368", True),
        ("dclm_filtering", "2406.11794", True),
        ("small_reference_perplexity_pruning", "2405.20541", True),
        ("regmix", "2407.01492", True),
        ("min_snr_weighting", "2303.09556", True),
        ("repa", "2410.06940", True),
        ("maskdit", "2306.09305", True),
        ("clipa", "2305.07017", True),
    ],
)
def test_the_methods_issue_11_asks_for_are_catalogued(entry_id: str, arxiv: str, reports: bool) -> None:
    entry = packaged_catalogue().entry(entry_id)
    assert entry.reference.arxiv == arxiv
    assert (entry.reported_speedup is not None) == reports


def test_optional_fields_may_be_left_out_but_not_left_empty() -> None:
    (entry,) = parse_catalogue(GOOD_ENTRY, "good.yaml").entries
    assert (entry.systems, entry.notes) == (False, None)
    noted = GOOD_ENTRY + '  systems: true\n  notes: "checked against the paper"\n'
    (entry,) = parse_catalogue(noted, "noted.yaml").entries
    assert entry.systems and entry.notes == "checked against the paper"
    with pytest.raises(UsageError, match="notes: String should have at least 1 character"):
        parse_catalogue(GOOD_ENTRY + '  notes: ""\n', "empty.yaml")
