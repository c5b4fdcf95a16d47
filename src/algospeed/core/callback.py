"""Callbacks and methods: plug-ins that react to events and resume exactly from a checkpoint."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, ClassVar

from algospeed.core.data_kind import ALL_KINDS, DataKind
from algospeed.core.events import Event
from algospeed.errors import UsageError
from algospeed.taxonomy.axes import Place

EVENT_NAMES = frozenset(event.value for event in Event)


class Callback:
    """Reacts to events through methods named `on_<event>(state)`.

    Whatever a callback keeps across steps belongs in `state_dict`, so that a resumed run continues
    exactly where the interrupted one stopped. A method named `on_<something>` that is no event
    (a misspelt handler, which would silently never run) is a `TypeError` when the class is defined.
    """

    name: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for attribute, value in vars(cls).items():
            if attribute.startswith("on_") and callable(value) and attribute[3:] not in EVENT_NAMES:
                close = difflib.get_close_matches(attribute[3:], EVENT_NAMES, n=1)
                hint = f"; did you mean on_{close[0]}?" if close else ""
                events = ", ".join(sorted(EVENT_NAMES))
                raise TypeError(f"{cls.__name__}.{attribute} handles no event{hint} (events: {events})")

    @property
    def key(self) -> str:
        """The name its state is stored under in a checkpoint."""
        return self.name or type(self).__name__

    def handlers(self) -> dict[Event, Any]:
        """The bound `on_<event>` handlers this callback defines."""
        return {
            event: getattr(self, f"on_{event.value}")
            for event in Event
            if callable(getattr(self, f"on_{event.value}", None))
        }

    def state_dict(self) -> dict[str, Any]:
        """Everything this callback keeps across steps (tensors, numbers, strings, lists, dicts)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state:
            raise NotImplementedError(f"{self.key} saved state but does not load it")


class Method(Callback):
    """A speedup method: a callback with a taxonomy place, the data kinds it can act on, and declared
    conflicts and needs."""

    place: ClassVar[Place]
    data_kinds: ClassVar[frozenset[DataKind]] = ALL_KINDS
    conflicts: ClassVar[frozenset[str]] = frozenset()
    requires: ClassVar[frozenset[str]] = frozenset()
    # Does work beyond one forward and backward of the training batch (extra passes, a proxy run)?
    # Its cost is charged in FLOPs and seconds; the fairness checks warn when a study's currency
    # (steps, samples) cannot see it.
    extra_compute: ClassVar[bool] = False
    # Does it change what evaluation measures (other weights, such as an average, or other inputs, such
    # as test-time views)? Its quality is then not the raw model's on the plain eval data, which a
    # report should say beside its numbers.
    changes_evaluation: ClassVar[bool] = False
    # Is every point of its run a finished run (schedule-free training evaluates an average of the weights),
    # so that it needs no learning rate decaying to zero at the end of the budget?
    anytime: ClassVar[bool] = False
    # The main settings a recipe search tunes beside the learning rate, as tuning ranges of `study.tuning`.
    search_space: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "place", None) and not cls.__dict__.get("abstract", False):
            raise TypeError(f"method {cls.__name__} must declare its taxonomy `place`")


def check_composition(methods: Sequence[Method]) -> None:
    """Fail up front, naming both, when methods conflict, repeat, or lack what they need."""
    names = [method.key for method in methods]
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"method {name!r} is listed twice")
        seen.add(name)
    for method in methods:
        for other in names:
            if other in method.conflicts:
                raise UsageError(f"methods {method.key!r} and {other!r} cannot be combined")
        missing = sorted(method.requires - seen)
        if missing:
            raise UsageError(f"method {method.key!r} needs {', '.join(map(repr, missing))} as well")
