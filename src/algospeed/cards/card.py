"""A method's card as one typed record, built from the method's class, the catalogue, the integrations'
support table and the shipped recipes (see the package docstring)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from algospeed.cards.evidence import Evidence, shipped_evidence
from algospeed.cards.support import LoopSupport, loop_support
from algospeed.cards.usage import PlainFunction, example_workload, plain_functions
from algospeed.core.data_kind import ALL_KINDS
from algospeed.errors import UsageError
from algospeed.methods.registry import METHODS, method_class
from algospeed.methods.spec import method_settings
from algospeed.plugins import display_ref
from algospeed.taxonomy.axes import Place
from algospeed.taxonomy.catalogue import entry_for_method
from algospeed.taxonomy.schema import Entry


@dataclass(frozen=True)
class Setting:
    """One constructor setting: `name:key=value` in a method spec."""

    name: str
    type: str
    default: object


@dataclass(frozen=True)
class MethodCard:
    """What a user needs to pick a method and use it, and the evidence for how to set it."""

    name: str
    summary: str
    description: str
    origin: str  # "built-in", or the plugin that registered it
    place: Place
    data_kinds: tuple[str, ...]
    conflicts: tuple[str, ...]
    requires: tuple[str, ...]
    notes: tuple[str, ...]
    settings: tuple[Setting, ...]
    tuned: tuple[str, ...]
    entry: Entry | None
    workload: str | None
    functions: tuple[PlainFunction, ...]
    loops: tuple[LoopSupport, ...] | None
    evidence: tuple[Evidence, ...]

    @property
    def data(self) -> str:
        """The data kinds it acts on, or "any"."""
        return ", ".join(self.data_kinds) or "any"


def method_card(name: str) -> MethodCard:
    """The card of the registered method `name` (an unknown name is a usage error listing the valid ones)."""
    cls = method_class(name)
    summary, _, description = inspect.cleandoc(cls.__doc__ or "").partition("\n")
    module = METHODS.origin(name)
    origin = module if module == "built-in" else display_ref(module)
    evidence = shipped_evidence(name)
    return MethodCard(
        name=name,
        summary=summary.strip(),
        description=description.strip(),
        origin=origin,
        place=cls.place,
        data_kinds=() if cls.data_kinds == ALL_KINDS else tuple(sorted(kind.value for kind in cls.data_kinds)),
        conflicts=tuple(sorted(cls.conflicts)),
        requires=tuple(sorted(cls.requires)),
        notes=_notes(cls),
        settings=tuple(
            Setting(key, getattr(kind, "__name__", str(kind)), default)
            for key, (kind, default) in method_settings(cls).items()
        ),
        tuned=tuple(cls.search_space),
        entry=_entry(name),
        workload=evidence[0].workload if evidence else example_workload(name, cls.data_kinds, module),
        functions=plain_functions(cls.__module__),
        loops=loop_support().get(name) if origin == "built-in" else None,
        evidence=evidence,
    )


def method_cards() -> list[MethodCard]:
    """Every registered method's card, by name."""
    return [method_card(name) for name in METHODS.names()]


def _entry(name: str) -> Entry | None:
    try:
        return entry_for_method(name)
    except UsageError:  # a plugin's method, not catalogued
        return None


def _notes(cls: type) -> tuple[str, ...]:
    """What the method's flags mean for a user comparing runs."""
    notes = []
    if cls.extra_compute:
        notes.append("does extra work (a second pass, a proxy run, statistics), charged to the run's FLOPs and seconds")
    if cls.changes_evaluation:
        notes.append("changes what evaluation measures (other weights or inputs): its quality is not the raw model's")
    if cls.anytime:
        notes.append("every curve point is a finished run (no decay phase is needed)")
    return tuple(notes)
