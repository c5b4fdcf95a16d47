"""Which methods work in the Lightning and Hugging Face loops: the support table of docs/integrations.md.

That table is the one place the claims live (each row is checked by a real run in the integration
tests), so cards read it rather than repeat it; outside a source checkout it is absent and cards say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

INTEGRATIONS_DOC = Path(__file__).resolve().parents[3] / "docs" / "integrations.md"
LOOPS = ("Lightning", "Hugging Face")
ROW = re.compile(r"^\| `(?P<name>[^`]+)` \| (?P<lightning>yes|no) \| (?P<hf>yes|no) \| (?P<why>.*) \|$")


@dataclass(frozen=True)
class LoopSupport:
    """Whether a method works as a callback in another library's loop, and why not where it does not."""

    loop: str
    works: bool
    why: str


def parse_support(text: str) -> dict[str, tuple[LoopSupport, ...]]:
    """Method name -> its support in each loop of `LOOPS`, from the Markdown table's rows."""
    table = {}
    for line in text.splitlines():
        row = ROW.match(line.strip())
        if row:
            why = row["why"].strip()
            table[row["name"]] = (
                LoopSupport(LOOPS[0], row["lightning"] == "yes", why),
                LoopSupport(LOOPS[1], row["hf"] == "yes", why),
            )
    return table


@cache
def loop_support() -> dict[str, tuple[LoopSupport, ...]]:
    """The support table of this checkout's docs/integrations.md; empty where the file is not there."""
    if not INTEGRATIONS_DOC.is_file():
        return {}
    return parse_support(INTEGRATIONS_DOC.read_text(encoding="utf-8"))
