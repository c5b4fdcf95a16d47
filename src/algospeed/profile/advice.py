"""Advice for a verdict, drawn from the taxonomy: the methods whose place addresses the bottleneck.

The mapping is data (`taxonomy/bottlenecks.yaml`): per verdict, taxonomy filters in order of
directness and advice that is not a method. Candidates are the registered methods (placed by their
own `place`, and by their catalogue entry's mechanism where one is linked) and the catalogue's
entries; implemented methods come first, each with the command that tries it.

Advice fits the workload's data kind: a registered method must declare the kind among its
`data_kinds`, and a catalogued one must have been shown on a task of that kind (`TASKS_FOR_KIND`), so
an image classifier is not advised token dropping. Catalogued methods that work on sequences of tokens
(`TOKEN_MECHANISMS`) are advised for token data only: on images they need a vision transformer, which
a profile cannot tell from a convolutional network.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from algospeed.core.data_kind import DataKind
from algospeed.errors import UsageError
from algospeed.taxonomy.axes import How, What, When, Where
from algospeed.taxonomy.catalogue import PACKAGED, SAFE_LOADER, packaged_catalogue
from algospeed.taxonomy.schema import SNAKE_CASE, Entry, Task

BOTTLENECKS_FILE = "bottlenecks.yaml"
PLANNED = re.compile(r"implemented_by:\s*null\s*#\s*planned:\s*([a-z0-9_]+)")

TASKS_FOR_KIND: dict[DataKind, frozenset[Task]] = {
    DataKind.IMAGES: frozenset({Task.VISION, Task.GENERIC}),
    DataKind.TOKENS: frozenset({Task.LANGUAGE, Task.GENERIC}),
    DataKind.SIGNALS: frozenset({Task.SPEECH, Task.GENERIC}),
    DataKind.TABULAR: frozenset({Task.RECOMMENDATION, Task.GENERIC}),
}
"""The catalogue's tasks whose methods apply to each kind of data (a catalogue entry names the tasks it
was shown on). Multimodal methods need images and text together, so they fit no single kind."""

TOKEN_MECHANISMS = frozenset(
    {"token_reduction", "sequence_packing", "sequence_length_schedule", "efficient_attention", "positional_encoding"}
)
"""The catalogue's mechanisms that act on a sequence of tokens (dropping, merging or packing them,
attention, positions)."""


class Filter(BaseModel):
    """A taxonomy filter: a method matches when it agrees on every axis named."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    where: Where | None = None
    what: What | None = None
    how: How | None = None
    when: When | None = None
    mechanism: str | None = Field(default=None, pattern=SNAKE_CASE)
    note: str = ""

    def matches(self, candidate: Candidate) -> bool:
        return (
            (self.where is None or self.where in candidate.where)
            and (self.what is None or self.what in candidate.what)
            and (self.how is None or candidate.how in (self.how, How.BOTH))
            and (self.when is None or self.when in candidate.when)
            and (self.mechanism is None or self.mechanism == candidate.mechanism)
        )


class OtherAdvice(BaseModel):
    """Advice that is not a method, with an optional command template."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    command: str | None = None
    needs_options: tuple[str, ...] = ()


class Remedy(BaseModel):
    """What mitigates one verdict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    why: str
    filters: tuple[Filter, ...] = Field(min_length=1)
    settings: dict[str, str] = Field(default_factory=dict)
    other: tuple[OtherAdvice, ...] = ()


@cache
def remedies() -> dict[str, Remedy]:
    """The packaged verdict -> remedy mapping, parsed and validated once."""
    text = resources.files("algospeed.taxonomy").joinpath(BOTTLENECKS_FILE).read_text(encoding="utf-8")
    raw = yaml.load(text, Loader=SAFE_LOADER)
    if not isinstance(raw, dict):
        raise UsageError(f"{BOTTLENECKS_FILE}: expected a mapping of verdicts at the top level")
    try:
        return {str(kind): Remedy.model_validate(value) for kind, value in raw.items()}
    except ValidationError as error:
        raise UsageError(f"{BOTTLENECKS_FILE}: {error}") from None


# ------------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Candidate:
    """A method that advice may name: implemented (a registry name) or only catalogued (an entry id)."""

    name: str
    implemented: bool
    where: tuple[Where, ...]
    what: tuple[What, ...]
    how: How
    when: tuple[When, ...]
    mechanism: str | None
    summary: str
    reference: str | None
    data_kinds: frozenset[DataKind]


def entry_kinds(entry: Entry) -> frozenset[DataKind]:
    """The data kinds a catalogue entry applies to, from the tasks it was shown on and its mechanism."""
    kinds = frozenset(kind for kind, tasks in TASKS_FOR_KIND.items() if tasks & set(entry.tasks))
    return kinds & {DataKind.TOKENS} if entry.mechanism in TOKEN_MECHANISMS else kinds


@cache
def planned_links() -> dict[str, str]:
    """Registry name -> catalogue id from the catalogue's `# planned: NAME` comments (the documented
    marker of the entry a method is meant to link, used until `implemented_by` is set)."""
    text = resources.files("algospeed.taxonomy").joinpath(PACKAGED).read_text(encoding="utf-8")
    links: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("- id:"):
            current = line.split(":", 1)[1].strip()
        elif current and (found := PLANNED.search(line)):
            links.setdefault(found.group(1), current)
    return links


def candidates() -> list[Candidate]:
    """Every registered method, then every catalogue entry not linked to one."""
    from algospeed.methods.registry import method_class, method_names

    entries = packaged_catalogue().entries
    by_id = {entry.id: entry for entry in entries}
    linked = {entry.implemented_by: entry for entry in entries if entry.implemented_by}
    planned = planned_links()
    found: list[Candidate] = []
    used: set[str] = set()
    for name in method_names():
        cls = method_class(name)
        entry = linked.get(name) or by_id.get(name) or by_id.get(planned.get(name, ""))
        if entry is not None:
            used.add(entry.id)
        place = cls.place
        found.append(
            Candidate(
                name=name,
                implemented=True,
                where=place.where,
                what=place.what,
                how=place.how,
                when=place.when,
                mechanism=entry.mechanism if entry else None,
                summary=_first_line(cls.__doc__) or (entry.summary if entry else ""),
                reference=_reference(entry) if entry else None,
                data_kinds=frozenset(cls.data_kinds),
            )
        )
    for entry in entries:
        if entry.id not in used:
            found.append(
                Candidate(
                    name=entry.id,
                    implemented=False,
                    where=entry.where,
                    what=entry.what,
                    how=entry.how,
                    when=entry.when,
                    mechanism=entry.mechanism,
                    summary=entry.summary,
                    reference=_reference(entry),
                    data_kinds=entry_kinds(entry),
                )
            )
    return found


def _first_line(text: str | None) -> str:
    stripped = (text or "").strip()
    return stripped.splitlines()[0] if stripped else ""


def _reference(entry: Entry) -> str:
    authors = entry.reference.authors
    lead = authors[0].split()[-1]
    return f"{lead}{' et al.' if len(authors) > 1 else ''} {entry.reference.year}"


# ---------------------------------------------------------------------------------------- advice
@dataclass(frozen=True)
class Suggestion:
    """A method to try: why it fits, and for an implemented one, the command that tries it (or, for a
    loop of one's own, the command that shows its card: how to use it there)."""

    name: str
    implemented: bool
    summary: str
    reason: str
    command: str | None
    reference: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class AdviceSection:
    """The advice for one verdict."""

    kind: str
    why: str
    methods: list[Suggestion] = field(default_factory=list)
    other: list[tuple[str, str | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "why": self.why,
            "methods": [method.to_dict() for method in self.methods],
            "other": [{"text": text, "command": command} for text, command in self.other],
        }


def advise(
    kinds: Sequence[str],
    *,
    workload: str | None = None,
    data_kind: DataKind | None = None,
    methods: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
    workload_options: Sequence[str] = (),
    plugins: Sequence[str] = (),
    implemented_limit: int = 8,
    catalogued_limit: int = 5,
) -> list[AdviceSection]:
    """Advice for each verdict in `kinds`: ranked methods (implemented first) and other advice.

    `workload`: the registered workload the commands train (None: a loop of one's own, whose advice
    points to each method's card); `data_kind`: only methods for that kind of data are advised;
    `methods` are the run's own method specs (kept in the suggested commands, not suggested again);
    `options` the run's workload options; `workload_options` the options the workload accepts;
    `plugins` the plugin files or modules the commands load (where the workload is registered).
    """
    table = remedies()
    pool = candidates()
    in_use = {spec.split(":", 1)[0] for spec in methods}
    sections = []
    for kind in kinds:
        remedy = table.get(kind)
        if remedy is None:
            raise UsageError(f"no advice for verdict {kind!r}; known: {', '.join(table)}")
        ranked: list[tuple[bool, int, int, Candidate]] = []
        for order, candidate in enumerate(pool):
            if candidate.name in in_use or (data_kind is not None and data_kind not in candidate.data_kinds):
                continue
            index = next((i for i, f in enumerate(remedy.filters) if f.matches(candidate)), None)
            if index is not None:
                ranked.append((not candidate.implemented, index, order, candidate))
        ranked.sort(key=lambda item: item[:3])
        implemented = [item for item in ranked if not item[0]][:implemented_limit]
        catalogued = [item for item in ranked if item[0]][:catalogued_limit]
        suggestions = [
            Suggestion(
                name=candidate.name,
                implemented=candidate.implemented,
                summary=candidate.summary,
                reason=remedy.filters[index].note,
                command=_try_command(candidate, _workload_args(workload, plugins), methods, options, remedy.settings),
                reference=candidate.reference,
            )
            for _, index, _, candidate in implemented + catalogued
        ]
        other = [
            (item.text, _fill(item.command, _workload_args(workload, plugins), options, item.needs_options))
            for item in remedy.other
            if workload is None or not item.needs_options or set(item.needs_options) <= set(workload_options)
        ]
        sections.append(AdviceSection(kind=kind, why=remedy.why, methods=suggestions, other=other))
    return sections


def _try_command(
    candidate: Candidate,
    workload_args: str | None,
    methods: Sequence[str],
    options: Mapping[str, Any] | None,
    settings: Mapping[str, str],
) -> str | None:
    if not candidate.implemented:
        return None
    if workload_args is None:
        return f"algospeed methods show {candidate.name}"
    return train_command(workload_args, [*methods, _spec(candidate.name, settings)], options)


def _workload_args(workload: str | None, plugins: Sequence[str]) -> str | None:
    """`--workload`'s value in a command, followed by the plugins that register it."""
    if workload is None:
        return None
    return " ".join([shlex.quote(workload), *(f"--plugin {shlex.quote(plugin)}" for plugin in plugins)])


def _spec(name: str, settings: Mapping[str, str]) -> str:
    extra = settings.get(name, "")
    return f"{name}:{extra}" if extra else name


def _option_args(options: Mapping[str, Any] | None, leave_out: Sequence[str] = ()) -> str:
    return "".join(
        f"--option {shlex.quote(f'{key}={value}')} "
        for key, value in sorted((options or {}).items())
        if key not in leave_out
    )


def train_command(workload_args: str, methods: Sequence[str], options: Mapping[str, Any] | None = None) -> str:
    """The `algospeed train` command line that runs a workload (`--workload`'s quoted arguments) with `methods`."""
    methods_arg = shlex.quote(",".join(methods))
    return f"algospeed train --workload {workload_args} {_option_args(options)}--methods {methods_arg}"


def _fill(
    template: str | None, workload_args: str | None, options: Mapping[str, Any] | None, overridden: Sequence[str]
) -> str | None:
    if template is None or workload_args is None:
        return None
    return template.format(workload=workload_args, options=_option_args(options, overridden))
