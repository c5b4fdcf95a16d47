"""`algospeed taxonomy`, driven through its typer app on the packaged catalogue."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from algospeed.errors import UsageError
from algospeed.taxonomy.axes import What, Where
from algospeed.taxonomy.catalogue import packaged_catalogue
from algospeed.taxonomy.cli import app
from algospeed.taxonomy.queries import gaps, grid, select, similar

WIDE = {"COLUMNS": "400"}  # rich wraps tables to the terminal width; keep each row on one line


def run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def table_rows(output: str) -> list[list[str]]:
    """The cells of each row of the rich tables in `output`."""
    return [
        [cell.strip() for cell in re.split(r"[│┃]", line)[1:-1]]
        for line in output.splitlines()
        if line.startswith(("│", "┃"))
    ]


def test_default_view_is_the_grid_with_counts() -> None:
    output = ok()
    counts = grid(packaged_catalogue().entries)
    rows = {cells[0]: cells[1:] for cells in table_rows(output)}
    assert rows["where \\ what"] == [what.value for what in What]
    for where in Where:
        shown = [int(cell.split()[0]) for cell in rows[where.value]]  # a cell reads "n" or "n (k)"
        assert shown == [len(counts[(where, what)]) for what in What]
    assert f"{len(packaged_catalogue().entries)} methods" in output


def test_filters_list_the_matching_entries() -> None:
    output = ok("--where", "data", "--what", "remove")
    expected = select(packaged_catalogue().entries, where="data", what="remove")
    assert f"{len(expected)} matching methods" in output
    for entry in expected:
        assert entry.id in output
    assert "mixup" not in output and "adamw" not in output


def test_implemented_lists_only_linked_entries() -> None:
    output = ok("--implemented")
    linked = select(packaged_catalogue().entries, implemented=True)
    if linked:
        assert f"{len(linked)} matching methods" in output
        assert all(entry.id in output for entry in linked)
    else:
        assert "No catalogued method matches these filters." in output


def test_gaps_show_thin_cells_and_backlog() -> None:
    output = ok("--gaps", "--threshold", "3")
    found = gaps(packaged_catalogue().entries, threshold=3)
    assert "at most 3 methods" in output
    for (where, what), _ in found.thin + found.backlog:
        assert f"{where.value} / {what.value}" in output


def test_export_json_to_a_file_parses_to_the_entries(tmp_path: Path) -> None:
    out = tmp_path / "catalogue.json"
    output = ok("export", "--format", "json", "--out", str(out))
    loaded = json.loads(out.read_text(encoding="utf-8"))
    assert [item["id"] for item in loaded] == [e.id for e in packaged_catalogue().entries]
    assert f"wrote {len(loaded)} methods" in output


def test_export_csv_to_stdout_honours_filters() -> None:
    output = ok("--task", "graph", "export", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(output)))
    assert [row["id"] for row in rows] == [e.id for e in select(packaged_catalogue().entries, task="graph")]
    assert rows and all("graph" in row["tasks"] for row in rows)


def test_export_markdown_is_the_default() -> None:
    assert ok("export").startswith("# Taxonomy of training speedups")


def test_figure_writes_a_png(tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert "wrote" in ok("figure", "--out", str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_similar_lists_the_best_matches_first() -> None:
    output = ok("similar", "selective_backprop", "--limit", "3")
    entries = packaged_catalogue().entries
    expected = [m.entry.id for m in similar(entries, packaged_catalogue().entry("selective_backprop"), limit=3)]
    assert [cells[0] for cells in table_rows(output)][1:] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--where", "weights"), "unknown where value 'weights'; valid values: data, model, optimization"),
        (("--what", "delete", "--gaps"), "valid values: remove, shrink, reuse, reorder, add, replace"),
        (("--how", "faster"), "valid values: cheaper_steps, fewer_steps, both"),
        (("--when", "early"), "valid values: throughout, scheduled, before, late"),
        (("--task", "chess", "export"), "unknown task value 'chess'"),
        (("--gaps", "--threshold", "-1"), "threshold must be 0 or more"),
        (("similar", "mixupp"), "unknown method 'mixupp'; did you mean mixup"),
        (("export", "--format", "xlsx"), "valid formats: md, csv, json"),
        (("export", "--out", "{tmp}/absent/out.md"), "output folder .*absent does not exist"),
        (("figure", "--out", "{tmp}/absent/grid.png"), "output folder .*absent does not exist"),
        (("figure", "--out", "{tmp}/grid.svg"), r"ending in \.png"),
    ],
)
def test_bad_input_is_one_usage_error_naming_the_valid_values(
    args: tuple[str, ...], message: str, tmp_path: Path
) -> None:
    result = run(*(arg.replace("{tmp}", str(tmp_path)) for arg in args))
    assert result.exit_code != 0
    assert isinstance(result.exception, UsageError)
    assert re.search(message, str(result.exception))
    assert "\n" not in str(result.exception)


def test_systems_level_entries_are_marked_in_tables_and_markdown() -> None:
    listed = ok("--where", "model", "--what", "add")
    assert "Gradient checkpointing (systems)" in listed and "a systems-level feature" in listed
    markdown = ok("--where", "model", "export", "--format", "md")
    assert "| channels_last | Channels-last memory format (systems) |" in markdown
