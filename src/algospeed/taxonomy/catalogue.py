"""The catalogue: every entry, loaded from YAML, validated once, and looked up by id or method.

The packaged catalogue (`catalogue.yaml`, shipped as package data) is parsed once per process;
another file with the same layout can be loaded with `load_catalogue`, e.g. to extend it.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from algospeed.errors import UsageError
from algospeed.taxonomy.schema import Entry

PACKAGED = "catalogue.yaml"
# libyaml's loader when PyYAML was built with it: parsing the catalogue is ~10x faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class Catalogue(BaseModel):
    """All entries, with unique ids and at most one entry linked to each implemented method."""

    model_config = ConfigDict(frozen=True)

    entries: tuple[Entry, ...]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        for field in ("id", "implemented_by"):
            values = [getattr(e, field) for e in self.entries if getattr(e, field) is not None]
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{field} must be unique; repeated: {', '.join(repeated)}")
        return self

    def entry(self, key: str) -> Entry:
        """The entry with this id, registry name or display name (case-insensitive)."""
        wanted = key.strip().lower()
        for entry in self.entries:
            if wanted in (entry.id, entry.implemented_by, entry.name.lower()):
                return entry
        ids = [e.id for e in self.entries]
        close = difflib.get_close_matches(wanted, ids, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise UsageError(f"unknown method {key!r}; {hint}valid ids: {', '.join(ids)}")

    def entry_for_method(self, name: str) -> Entry:
        """The entry linked to the registered method `name` (its `implemented_by`)."""
        for entry in self.entries:
            if entry.implemented_by == name:
                return entry
        linked = sorted(e.implemented_by for e in self.entries if e.implemented_by)
        raise UsageError(
            f"no catalogue entry is linked to method {name!r}; linked methods: {', '.join(linked) or '(none yet)'}"
        )


def parse_catalogue(text: str, source: str) -> Catalogue:
    """Parse and validate catalogue YAML; a malformed file is a usage error naming the entry."""
    try:
        raw = yaml.load(text, Loader=SAFE_LOADER)
    except yaml.YAMLError as error:
        raise UsageError(f"{source}: not valid YAML: {error}") from None
    if not isinstance(raw, list):
        raise UsageError(f"{source}: expected a list of entries at the top level")
    try:
        return Catalogue(entries=tuple(raw))
    except ValidationError as error:
        raise UsageError(f"{source}: {_describe(error, raw)}") from None


def load_catalogue(path: Path) -> Catalogue:
    """Load a catalogue file laid out like the packaged one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"cannot read catalogue {path}: {error.strerror}") from None
    return parse_catalogue(text, str(path))


@cache
def packaged_catalogue() -> Catalogue:
    """The catalogue shipped with algospeed, parsed once per process."""
    text = resources.files("algospeed.taxonomy").joinpath(PACKAGED).read_text(encoding="utf-8")
    return parse_catalogue(text, PACKAGED)


def entry_for_method(name: str) -> Entry:
    """The packaged entry linked to the registered method `name`."""
    return packaged_catalogue().entry_for_method(name)


def _describe(error: ValidationError, raw: list[Any]) -> str:
    """One line per problem, naming the entry by its id where the YAML gives one."""
    lines = []
    for problem in error.errors():
        location = list(problem["loc"])
        if location[:1] == ["entries"] and len(location) > 1 and isinstance(location[1], int):
            index = location[1]
            item = raw[index] if index < len(raw) else None
            label = item.get("id") if isinstance(item, dict) else None
            where = f"entry {index} ({label})" if label else f"entry {index}"
            location = [where, *location[2:]]
        lines.append(f"{'.'.join(str(part) for part in location)}: {problem['msg']}")
    return "; ".join(lines)
