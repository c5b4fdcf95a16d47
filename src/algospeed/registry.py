"""Named registries (methods, workloads) that plugins extend: one mechanism for both.

Every entry remembers its origin: `built-in` for algospeed's own, the plugin that registered it, or
the Python module of user code that registered it directly. A second entry under a taken name is a
`RegistrationError` saying which is which, so a plugin can neither register a name twice nor
silently shadow a built-in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, TypeVar

from algospeed.errors import UsageError

T = TypeVar("T")
BUILT_IN = "built-in"
_ORIGIN: ContextVar[str | None] = ContextVar("algospeed_registering_origin", default=None)


class RegistrationError(UsageError):
    """A name registered twice, or a built-in shadowed."""


@contextmanager
def registering_as(origin: str) -> Iterator[None]:
    """Entries registered inside are attributed to `origin` (the plugin being loaded)."""
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


class Registry(Generic[T]):
    """Entries of one `kind` by name; the built-in ones are imported on first use by `load_builtins`."""

    def __init__(self, kind: str, load_builtins: Callable[[], None]) -> None:
        self.kind = kind
        self._load_builtins = load_builtins
        self._loading = False
        self._loaded = False
        self._entries: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def ensure_builtins(self) -> None:
        if not self._loaded and not self._loading:
            self._loading = True
            try:
                with registering_as(BUILT_IN):
                    self._load_builtins()
            finally:
                self._loading = False
            self._loaded = True

    def add(self, name: str, entry: T, module: str = "") -> None:
        """Register `entry` as `name`; the origin is the plugin being loaded, else `module`."""
        origin = _ORIGIN.get() or (BUILT_IN if module.startswith("algospeed.") else module or "user code")
        if origin != BUILT_IN:
            self.ensure_builtins()
        if name in self._entries:
            taken = self._origins[name]
            if taken == BUILT_IN and origin != BUILT_IN:
                raise RegistrationError(f"{self.kind} {name!r} shadows the built-in {self.kind} of that name")
            where = "" if taken == origin else f" (already registered by {taken})"
            raise RegistrationError(f"{self.kind} {name!r} is registered twice{where}")
        self._entries[name] = entry
        self._origins[name] = origin

    def remove_origin(self, origin: str) -> None:
        """Forget everything `origin` registered (before a changed plugin is loaded again)."""
        for name in [name for name, taken in self._origins.items() if taken == origin]:
            del self._entries[name], self._origins[name]

    def get(self, name: str) -> T:
        """The entry called `name`; an unknown one is a usage error listing the valid names."""
        self.ensure_builtins()
        try:
            return self._entries[name]
        except KeyError:
            valid = ", ".join(sorted(self._entries)) or "(none yet)"
            raise UsageError(f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}") from None

    def names(self) -> list[str]:
        self.ensure_builtins()
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        self.ensure_builtins()
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        self.ensure_builtins()
        return name in self._entries
