"""Consoles for command output: in a terminal they fit its width; into a file or a pipe they keep every
line whole (rich would otherwise wrap tables at 80 columns, folding their values into fragments)."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

PIPED_WIDTH = 4096


def plain(*cells: object) -> list[Text]:
    """Table cells shown as they are: a user's names (`[/bold]`, `[red]5`) are never read as markup."""
    return [Text(str(cell)) for cell in cells]


def output_console(stderr: bool = False) -> Console:
    """A console for stdout (or stderr) that does not wrap when the output is not a terminal."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=PIPED_WIDTH)
