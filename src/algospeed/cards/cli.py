"""`algospeed methods`: the implemented methods, their cards, and the cards as Markdown for the docs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from algospeed.cli_options import PluginOption, load_cli_plugins
from algospeed.errors import UsageError
from algospeed.terminal import output_console, plain

app = typer.Typer(
    help="The implemented speedup methods and their cards.", invoke_without_command=True, add_completion=False
)


@app.callback()
def methods_command(
    ctx: typer.Context,
    plugin: PluginOption = None,
    markdown: Annotated[
        Path | None,
        typer.Option(help="Write every method's card as Markdown to this file ('-': to stdout), e.g. docs/methods.md."),
    ] = None,
) -> None:
    """List the implemented methods with their taxonomy place and the data they act on."""
    load_cli_plugins(plugin)
    if ctx.invoked_subcommand is not None:
        return
    console = output_console()
    if markdown is not None:
        _write_markdown(markdown)
        return
    from algospeed.cards.card import method_cards

    table = Table(title="methods (algospeed methods show NAME for a card)")
    for column in ("name", "where", "what", "how", "when", "data", "summary"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for card in method_cards():
        summary = card.summary if card.origin == "built-in" else f"{card.summary} (from {card.origin})"
        place = card.place
        table.add_row(
            *plain(
                card.name,
                ", ".join(v.value for v in place.where),
                ", ".join(v.value for v in place.what),
                place.how.value,
                ", ".join(v.value for v in place.when),
                card.data,
                summary,
            )
        )
    console.print(table)


@app.command("show")
def methods_show_command(name: Annotated[str, typer.Argument(help="Method name.")]) -> None:
    """Print a method's card: what it does, its paper, settings, how to use it, and the evidence for its settings."""
    from algospeed.cards.card import method_card
    from algospeed.cards.render import card_text

    output_console().print(card_text(method_card(name)), markup=False, highlight=False)


def _write_markdown(path: Path) -> None:
    from algospeed.cards.card import method_cards
    from algospeed.cards.render import cards_markdown

    cards = method_cards()
    text = cards_markdown(cards)
    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    if not path.parent.is_dir():
        raise UsageError(f"output folder {path.parent} does not exist")
    path.write_text(text, encoding="utf-8")
    output_console().print(f"wrote {len(cards)} method cards to {path}", markup=False)
