"""Grid, filters, gaps, similar, exports and the heatmap, on a small catalogue written by the test."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from algospeed.errors import UsageError
from algospeed.taxonomy.axes import What, Where
from algospeed.taxonomy.catalogue import Catalogue, load_catalogue
from algospeed.taxonomy.export import CSV_COLUMNS, export, to_csv, to_json, to_markdown
from algospeed.taxonomy.figure import heatmap
from algospeed.taxonomy.queries import cells, gaps, grid, select, similar
from algospeed.taxonomy.schema import Entry

# id, where, what, how, when, mechanism, tasks, implemented_by
ROWS = [
    (
        "sel_backprop",
        "[data]",
        "[remove]",
        "both",
        "[throughout]",
        "sample_selection",
        "[vision]",
        "selective_backprop",
    ),
    ("data_prune", "[data]", "[remove]", "fewer_steps", "[before]", "sample_selection", "[vision, language]", "null"),
    ("easy_first", "[data]", "[reorder]", "fewer_steps", "[scheduled]", "curriculum", "[language]", "null"),
    ("mix_pairs", "[data, optimization]", "[add]", "fewer_steps", "[throughout]", "sample_mixing", "[vision]", "mixup"),
    ("thin_layers", "[model]", "[shrink]", "cheaper_steps", "[throughout]", "low_rank", "[language]", "null"),
    (
        "adaptive",
        "[optimization]",
        "[replace]",
        "fewer_steps",
        "[throughout]",
        "adaptive_optimizer",
        "[generic]",
        "null",
    ),
    ("hard_points", "[data]", "[remove]", "fewer_steps", "[throughout]", "sample_selection", "[vision]", "null"),
]


def fixture_yaml() -> str:
    entries = []
    for key, where, what, how, when, mechanism, tasks, implemented_by in ROWS:
        entries.append(
            f"""- id: {key}
  name: "{key.replace("_", " ").title()}"
  summary: "The {key} method."
  reference:
    authors: ["A. Author", "et al."]
    year: 2021
    title: "On {key}"
    arxiv: "2101.0{len(entries) + 1:04d}"
  where: {where}
  what: {what}
  how: {how}
  when: {when}
  mechanism: {mechanism}
  tasks: {tasks}
  reported_speedup: "2x in the paper's setting"
  implemented_by: {implemented_by}
"""
        )
    return "\n".join(entries)


@pytest.fixture
def catalogue(tmp_path: Path) -> Catalogue:
    path = tmp_path / "small.yaml"
    path.write_text(fixture_yaml(), encoding="utf-8")
    return load_catalogue(path)


def ids(entries: list[Entry]) -> list[str]:
    return [entry.id for entry in entries]


def test_grid_places_each_entry_in_every_cell_it_spans(catalogue: Catalogue) -> None:
    counts = {(where.value, what.value): len(found) for (where, what), found in grid(catalogue.entries).items()}
    nonzero = {cell: count for cell, count in counts.items() if count}
    assert nonzero == {
        ("data", "remove"): 3,
        ("data", "reorder"): 1,
        ("data", "add"): 1,
        ("model", "shrink"): 1,
        ("optimization", "add"): 1,
        ("optimization", "replace"): 1,
    }
    assert len(counts) == 18 == len(cells())


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({"where": "data"}, ["sel_backprop", "data_prune", "easy_first", "mix_pairs", "hard_points"]),
        ({"where": "data", "what": "remove"}, ["sel_backprop", "data_prune", "hard_points"]),
        ({"where": "optimization"}, ["mix_pairs", "adaptive"]),
        ({"how": "cheaper_steps"}, ["sel_backprop", "thin_layers"]),
        ({"how": "both"}, ["sel_backprop"]),
        ({"when": "before"}, ["data_prune"]),
        ({"task": "LANGUAGE"}, ["data_prune", "easy_first", "thin_layers"]),
        ({"implemented": True}, ["sel_backprop", "mix_pairs"]),
        ({"where": Where.MODEL, "what": What.REPLACE}, []),
        ({}, [row[0] for row in ROWS]),
    ],
)
def test_filters(catalogue: Catalogue, criteria: dict, expected: list[str]) -> None:
    assert ids(select(catalogue.entries, **criteria)) == expected


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ({"where": "weights"}, "unknown where value 'weights'; valid values: data, model, optimization"),
        ({"what": "drop"}, "valid values: remove, shrink, reuse, reorder, add, replace"),
        ({"how": "faster"}, "valid values: cheaper_steps, fewer_steps, both"),
        ({"when": "early"}, "valid values: throughout, scheduled, before, late"),
        ({"task": "chess"}, "unknown task value 'chess'; valid values: vision, language, speech"),
    ],
)
def test_an_unknown_filter_value_lists_the_valid_ones(catalogue: Catalogue, criteria: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        select(catalogue.entries, **criteria)


def test_gaps_are_the_thin_cells_and_the_backlog_the_unimplemented_ones(catalogue: Catalogue) -> None:
    found = gaps(catalogue.entries)
    assert found.threshold == 2
    assert [cell for cell, _ in found.thin] == [cell for cell in cells() if cell != (Where.DATA, What.REMOVE)]
    assert [(cell[0].value, cell[1].value, ids(entries)) for cell, entries in found.backlog] == [
        ("data", "reorder", ["easy_first"]),
        ("model", "shrink", ["thin_layers"]),
        ("optimization", "replace", ["adaptive"]),
    ]
    assert len(gaps(catalogue.entries, threshold=0).thin) == 12
    assert [cell for cell, _ in gaps(catalogue.entries, threshold=3).thin] == cells()
    with pytest.raises(UsageError, match="threshold must be 0 or more"):
        gaps(catalogue.entries, threshold=-1)


def test_similar_ranks_by_shared_place_and_mechanism(catalogue: Catalogue) -> None:
    target = catalogue.entry("selective_backprop")  # found by its registry name
    matches = similar(catalogue.entries, target)
    assert [(m.entry.id, m.score) for m in matches] == [
        ("hard_points", 9),
        ("data_prune", 8),
        ("mix_pairs", 4),
        ("easy_first", 3),
    ]
    assert matches[1].shared == ("mechanism=sample_selection", "where=data", "what=remove", "how=fewer_steps")
    assert [m.entry.id for m in similar(catalogue.entries, target, limit=2)] == ["hard_points", "data_prune"]
    with pytest.raises(UsageError, match="limit must be 1 or more"):
        similar(catalogue.entries, target, limit=0)


def test_lookup_by_id_name_or_registry_name(catalogue: Catalogue) -> None:
    assert catalogue.entry("easy_first").id == "easy_first"
    assert catalogue.entry("Mix Pairs").id == "mix_pairs"
    assert catalogue.entry("mixup").id == "mix_pairs"
    assert catalogue.entry_for_method("mixup").id == "mix_pairs"
    with pytest.raises(UsageError, match=r"unknown method 'easy_frist'; did you mean easy_first\? valid ids: sel_"):
        catalogue.entry("easy_frist")


def test_json_export_round_trips_to_the_entries(catalogue: Catalogue) -> None:
    loaded = json.loads(to_json(catalogue.entries))
    assert [Entry.model_validate(item) for item in loaded] == list(catalogue.entries)


def test_csv_export_has_one_row_per_entry(catalogue: Catalogue) -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(catalogue.entries))))
    assert [row["id"] for row in rows] == [row[0] for row in ROWS]
    assert tuple(rows[0]) == CSV_COLUMNS
    mix = rows[3]
    assert (mix["where"], mix["authors"], mix["implemented_by"], mix["venue"]) == (
        "data; optimization",
        "A. Author; et al.",
        "mixup",
        "",
    )
    assert mix["arxiv"] == "2101.00004"


def test_markdown_export_has_the_grid_and_a_row_per_entry(catalogue: Catalogue) -> None:
    text = to_markdown(catalogue.entries)
    assert "| data | 3 | 0 | 0 | 1 | 1 | 0 |" in text
    assert "| optimization | 0 | 0 | 0 | 0 | 1 | 1 |" in text
    assert sum(line.startswith("| sel_backprop |") for line in text.splitlines()) == 1
    assert "[arXiv:2101.00001](https://arxiv.org/abs/2101.00001)" in text
    assert len([line for line in text.splitlines() if line.startswith("| ")]) == 1 + 3 + 1 + len(ROWS)


def test_export_dispatches_by_format_and_rejects_unknown_ones(catalogue: Catalogue) -> None:
    assert export(catalogue.entries, "JSON") == to_json(catalogue.entries)
    with pytest.raises(UsageError, match="unknown format 'xlsx'; valid formats: md, csv, json"):
        export(catalogue.entries, "xlsx")


def test_heatmap_writes_a_png(catalogue: Catalogue, tmp_path: Path) -> None:
    path = heatmap(catalogue.entries, tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


def test_heatmap_rejects_a_missing_folder_or_another_format(catalogue: Catalogue, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        heatmap(catalogue.entries, tmp_path / "absent" / "grid.png")
    with pytest.raises(UsageError, match=r"ending in \.png"):
        heatmap(catalogue.entries, tmp_path / "grid.svg")
