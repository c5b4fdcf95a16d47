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
from algospeed.taxonomy.schema import FIELD_ORDER, Reference

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
        assert tuple(raw) == FIELD_ORDER, raw.get("id")
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
