"""The schema of one catalogue entry: a published method, its source, and its place on the axes.

The catalogue is data that people edit by hand, so the schema is strict (unknown fields, unknown
axis values and duplicate list items are errors) and its error messages name the valid values.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from algospeed.taxonomy.axes import How, Place, What, When, Where

SNAKE_CASE = r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$"
ARXIV_ID = r"^\d{4}\.\d{4,5}$"


class Task(str, Enum):
    """A family of tasks a method was shown to work on."""

    VISION = "vision"
    LANGUAGE = "language"
    SPEECH = "speech"
    MULTIMODAL = "multimodal"
    RECOMMENDATION = "recommendation"
    GRAPH = "graph"
    RL = "rl"
    GENERIC = "generic"


class Reference(BaseModel):
    """Where a method was published: enough for a reader to find the source and check the entry.

    A long author list may end with the item "et al.".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    authors: tuple[str, ...] = Field(min_length=1)
    year: int = Field(ge=1950, le=2100)
    title: str = Field(min_length=1)
    venue: str | None = None
    arxiv: str | None = Field(default=None, pattern=ARXIV_ID)
    url: str | None = None

    @model_validator(mode="after")
    def _findable(self) -> Reference:
        if self.venue is None and self.arxiv is None:
            raise ValueError("a reference needs a venue or an arXiv id")
        return self


class Entry(BaseModel):
    """One method of the literature, placed on the taxonomy's axes (see DESIGN.md).

    `where`, `what` and `when` are lists because a method may genuinely act twice (MixUp changes
    the data and the objective); `implemented_by` names the registered algospeed method, if any.
    `systems` marks a systems-level feature (the same computation laid out or scheduled differently,
    such as a memory format or recomputation): catalogued because algospeed implements it or because
    it trades memory for compute, but not an algorithmic speedup. `notes` says what a reader checking
    the entry should know (an unverified id, how a reported figure was measured). Both may be omitted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=SNAKE_CASE)
    name: str = Field(min_length=1)
    summary: str = Field(min_length=1, max_length=200)
    reference: Reference
    where: tuple[Where, ...] = Field(min_length=1)
    what: tuple[What, ...] = Field(min_length=1)
    how: How
    when: tuple[When, ...] = Field(min_length=1)
    mechanism: str = Field(pattern=SNAKE_CASE)
    tasks: tuple[Task, ...] = Field(min_length=1)
    reported_speedup: str | None = None
    implemented_by: str | None = None
    systems: bool = False
    notes: str | None = Field(default=None, min_length=1)

    @field_validator("summary", "reported_speedup", "notes")
    @classmethod
    def _one_line(cls, text: str | None) -> str | None:
        if text is not None and "\n" in text.strip():
            raise ValueError("must be a single line")
        return text

    @field_validator("where", "what", "when", "tasks")
    @classmethod
    def _no_repeats(cls, values: tuple[Enum, ...]) -> tuple[Enum, ...]:
        if len(set(values)) != len(values):
            raise ValueError("lists a value twice")
        return values

    @property
    def label(self) -> str:
        """The name as tables show it: a systems-level feature is marked so."""
        return f"{self.name} (systems)" if self.systems else self.name

    @property
    def place(self) -> Place:
        """The entry's place, in the form the implemented `Method` plug-ins use too."""
        return Place(where=self.where, what=self.what, how=self.how, when=self.when)


FIELD_ORDER: tuple[str, ...] = tuple(Entry.model_fields)
OPTIONAL_FIELDS: frozenset[str] = frozenset({"systems", "notes"})
"""Fields an entry may leave out (every other field is written, in `FIELD_ORDER`)."""
