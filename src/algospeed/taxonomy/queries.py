"""Questions asked of the catalogue: the where x what grid, filters, research gaps, similar methods.

Every function takes the entries to query, so the same code answers for the packaged catalogue,
a filtered part of it, or a small catalogue written by a test.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

from algospeed.errors import UsageError
from algospeed.taxonomy.axes import How, What, When, Where
from algospeed.taxonomy.schema import Entry, Task

Cell = tuple[Where, What]
Value = TypeVar("Value", bound=Enum)

DEFAULT_THRESHOLD = 2
# Overlap weights for `similar`: a shared mechanism says most, the timing least.
WEIGHTS = {"mechanism": 3, "where": 2, "what": 2, "how": 1, "when": 1}


def parse(kind: type[Value], value: Value | str, axis: str) -> Value:
    """`value` as a member of `kind`; an unknown value is a usage error listing the valid ones."""
    if isinstance(value, kind):
        return value
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        valid = ", ".join(member.value for member in kind)
        raise UsageError(f"unknown {axis} value {value!r}; valid values: {valid}") from None


def cells() -> list[Cell]:
    """Every where x what cell, in the axes' order."""
    return [(where, what) for where in Where for what in What]


def grid(entries: Iterable[Entry]) -> dict[Cell, list[Entry]]:
    """Entries per where x what cell; an entry with two components or actions is in each cell."""
    table: dict[Cell, list[Entry]] = {cell: [] for cell in cells()}
    for entry in entries:
        for where in entry.where:
            for what in entry.what:
                table[(where, what)].append(entry)
    return table


def select(
    entries: Iterable[Entry],
    *,
    where: Where | str | None = None,
    what: What | str | None = None,
    how: How | str | None = None,
    when: When | str | None = None,
    task: Task | str | None = None,
    implemented: bool = False,
) -> list[Entry]:
    """Entries matching every given criterion.

    A list-valued axis matches if it holds the value; `how` matches entries paying off `both` ways
    too, since those also give cheaper (or fewer) steps.
    """
    wanted_where = None if where is None else parse(Where, where, "where")
    wanted_what = None if what is None else parse(What, what, "what")
    wanted_how = None if how is None else parse(How, how, "how")
    wanted_when = None if when is None else parse(When, when, "when")
    wanted_task = None if task is None else parse(Task, task, "task")
    return [
        entry
        for entry in entries
        if (wanted_where is None or wanted_where in entry.where)
        and (wanted_what is None or wanted_what in entry.what)
        and (wanted_how is None or entry.how in (wanted_how, How.BOTH))
        and (wanted_when is None or wanted_when in entry.when)
        and (wanted_task is None or wanted_task in entry.tasks)
        and (not implemented or entry.implemented_by is not None)
    ]


@dataclass(frozen=True)
class Gaps:
    """Where the literature is thin (research gaps) and where algospeed lags it (the backlog).

    `thin` holds every cell with at most `threshold` entries; `backlog` every cell whose
    catalogued methods are all unimplemented, largest first.
    """

    threshold: int
    thin: list[tuple[Cell, list[Entry]]]
    backlog: list[tuple[Cell, list[Entry]]]


def gaps(entries: Iterable[Entry], threshold: int = DEFAULT_THRESHOLD) -> Gaps:
    """The thin cells and the unimplemented cells of the grid."""
    if threshold < 0:
        raise UsageError(f"the gap threshold must be 0 or more, not {threshold}")
    table = grid(entries)
    thin = [(cell, found) for cell, found in table.items() if len(found) <= threshold]
    backlog = [
        (cell, found) for cell, found in table.items() if found and all(entry.implemented_by is None for entry in found)
    ]
    backlog.sort(key=lambda item: -len(item[1]))
    return Gaps(threshold=threshold, thin=thin, backlog=backlog)


@dataclass(frozen=True)
class Match:
    """A method similar to the one asked about: its overlap score and what they share."""

    entry: Entry
    score: int
    shared: tuple[str, ...]


def similar(entries: Sequence[Entry], target: Entry, limit: int = 10) -> list[Match]:
    """Entries sharing `target`'s component or mechanism, ranked by weighted overlap, then id.

    Overlap counts the shared mechanism, each shared value of where, what and when, and the
    payoff (`both` overlaps with either kind of step).
    """
    if limit < 1:
        raise UsageError(f"the limit must be 1 or more, not {limit}")
    matches = []
    for entry in entries:
        if entry.id == target.id:
            continue
        shared = _shared(target, entry)
        kinds = {item.split("=")[0] for item in shared}
        if kinds & {"mechanism", "where"}:
            score = sum(WEIGHTS[item.split("=")[0]] for item in shared)
            matches.append(Match(entry=entry, score=score, shared=shared))
    matches.sort(key=lambda match: (-match.score, match.entry.id))
    return matches[:limit]


def _shared(a: Entry, b: Entry) -> tuple[str, ...]:
    """What two entries have in common, as 'axis=value' items."""
    items = [] if a.mechanism != b.mechanism else [f"mechanism={a.mechanism}"]
    for axis in ("where", "what"):
        items += [f"{axis}={v.value}" for v in getattr(a, axis) if v in getattr(b, axis)]
    if a.how == b.how or How.BOTH in (a.how, b.how):
        narrower = b.how if a.how == How.BOTH else a.how
        items.append(f"how={narrower.value}")
    items += [f"when={v.value}" for v in a.when if v in b.when]
    return tuple(items)
