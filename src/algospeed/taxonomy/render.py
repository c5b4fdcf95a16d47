"""Rich tables for the terminal views of the catalogue: the grid, entry lists, gaps, similar methods."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from rich.table import Table

from algospeed.taxonomy.axes import What, Where
from algospeed.taxonomy.queries import Cell, Gaps, Match, grid
from algospeed.taxonomy.schema import Entry


def grid_table(entries: Sequence[Entry]) -> Table:
    """Counts per where x what cell; '(k)' marks k of them implemented in algospeed."""
    table = Table(
        title=f"{len(entries)} methods: where they act x what they do",
        caption="(k) = k of them implemented in algospeed",
    )
    table.add_column("where \\ what", style="bold")
    for what in What:
        table.add_column(what.value, justify="right")
    counts = grid(entries)
    for where in Where:
        row = []
        for what in What:
            found = counts[(where, what)]
            done = sum(entry.implemented_by is not None for entry in found)
            row.append(f"{len(found)} ({done})" if done else str(len(found)))
        table.add_row(where.value, *row)
    return table


def entries_table(entries: Sequence[Entry], title: str) -> Table:
    """One row per entry with its place, mechanism and implementation; systems-level entries are marked."""
    table = Table(title=title, caption="(systems) = a systems-level feature, not an algorithmic speedup")
    for column in ("id", "method", "where", "what", "how", "when", "mechanism", "implemented"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            e.id,
            e.label,
            _joined(e.where),
            _joined(e.what),
            e.how.value,
            _joined(e.when),
            e.mechanism,
            e.implemented_by or "",
        )
    return table


def gaps_tables(found: Gaps) -> tuple[Table, Table]:
    """The thin cells (research gaps), then the cells algospeed implements nothing of (backlog)."""
    thin = Table(title=f"Research gaps: cells with at most {found.threshold} methods")
    backlog = Table(title="Backlog: cells whose catalogued methods are all unimplemented")
    for table in (thin, backlog):
        table.add_column("cell")
        table.add_column("methods", justify="right")
        table.add_column("ids")
    for cell, entries in found.thin:
        thin.add_row(_cell_name(cell), str(len(entries)), ", ".join(e.id for e in entries))
    for cell, entries in found.backlog:
        backlog.add_row(_cell_name(cell), str(len(entries)), ", ".join(e.id for e in entries))
    return thin, backlog


def similar_table(target: Entry, matches: Sequence[Match]) -> Table:
    """Methods ranked by overlap with `target`, with what each shares with it."""
    table = Table(title=f"Methods similar to {target.id} ({target.mechanism})")
    for column in ("id", "method", "score", "shared"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for match in matches:
        table.add_row(match.entry.id, match.entry.name, str(match.score), ", ".join(match.shared))
    return table


def _cell_name(cell: Cell) -> str:
    return f"{cell[0].value} / {cell[1].value}"


def _joined(values: Sequence[Enum]) -> str:
    return ", ".join(str(value.value) for value in values)
