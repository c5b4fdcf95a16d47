"""The catalogue as text for other tools: Markdown for reading, CSV for spreadsheets, JSON for code.

JSON round-trips exactly (each object validates back into its entry); CSV has one row per entry
with the reference spread over its own columns and list values joined by "; ".
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from enum import Enum

from algospeed.errors import UsageError
from algospeed.taxonomy.axes import What, Where
from algospeed.taxonomy.queries import grid
from algospeed.taxonomy.schema import FIELD_ORDER, Entry, Reference

LIST_SEPARATOR = "; "
CSV_COLUMNS: tuple[str, ...] = tuple(
    column for field in FIELD_ORDER for column in (Reference.model_fields if field == "reference" else (field,))
)


def to_json(entries: Sequence[Entry]) -> str:
    """A JSON array of entries, in the catalogue's field order."""
    return json.dumps([e.model_dump(mode="json") for e in entries], indent=2, ensure_ascii=False)


def to_csv(entries: Sequence[Entry]) -> str:
    """One CSV row per entry, under a header of `CSV_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        flat = {**entry.model_dump(exclude={"reference"}), **entry.reference.model_dump()}
        writer.writerow({column: _cell(flat[column]) for column in CSV_COLUMNS})
    return buffer.getvalue()


def to_markdown(entries: Sequence[Entry]) -> str:
    """The where x what counts, then one table row per entry with its reference."""
    table = grid(entries)
    lines = [
        "# Taxonomy of training speedups",
        "",
        f"{len(entries)} methods. Rows: where a method acts; columns: what it does.",
        "",
        "| where \\ what | " + " | ".join(w.value for w in What) + " |",
        "|---" * (len(What) + 1) + "|",
    ]
    for where in Where:
        counts = " | ".join(str(len(table[(where, what)])) for what in What)
        lines.append(f"| {where.value} | {counts} |")
    lines += [
        "",
        "| id | method | where | what | how | when | mechanism | tasks | reference | implemented |",
        "|---" * 10 + "|",
    ]
    for e in entries:
        row = [
            e.id,
            e.label,
            _cell(e.where),
            _cell(e.what),
            e.how.value,
            _cell(e.when),
            e.mechanism,
            _cell(e.tasks),
            _citation(e.reference),
            e.implemented_by or "",
        ]
        lines.append("| " + " | ".join(text.replace("|", "\\|") for text in row) + " |")
    return "\n".join(lines) + "\n"


FORMATS: dict[str, Callable[[Sequence[Entry]], str]] = {
    "md": to_markdown,
    "csv": to_csv,
    "json": to_json,
}


def export(entries: Sequence[Entry], fmt: str) -> str:
    """The entries in format `fmt` (one of `FORMATS`)."""
    try:
        render = FORMATS[fmt.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}") from None
    return render(entries)


def _cell(value: object) -> str:
    """A field as flat text: lists joined, enums by value, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return LIST_SEPARATOR.join(_cell(item) for item in value)
    if isinstance(value, Enum):
        return str(value.value)
    return str(value)


def _citation(ref: Reference) -> str:
    """Authors (year). Title. Venue, with a link to arXiv or the source where known."""
    authors = ", ".join(ref.authors)
    text = f"{authors} ({ref.year}). *{ref.title}*."
    if ref.venue:
        text += f" {ref.venue}."
    if ref.arxiv:
        text += f" [arXiv:{ref.arxiv}](https://arxiv.org/abs/{ref.arxiv})"
    elif ref.url:
        text += f" <{ref.url}>"
    return text
