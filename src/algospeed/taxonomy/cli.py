"""`algospeed taxonomy`: browse the catalogue from the command line.

The main CLI mounts `app` as `taxonomy`. Without a subcommand it prints the where x what grid;
with filters it lists the matching methods, with --gaps the thin and unimplemented cells. The
filters also narrow what `export`, `figure` and `similar` see. Bad input raises `UsageError`,
which the main CLI prints as one line with exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from algospeed.errors import UsageError
from algospeed.taxonomy.catalogue import packaged_catalogue
from algospeed.taxonomy.export import FORMATS, export
from algospeed.taxonomy.figure import heatmap
from algospeed.taxonomy.queries import DEFAULT_THRESHOLD, gaps, select, similar
from algospeed.taxonomy.render import entries_table, gaps_tables, grid_table, similar_table
from algospeed.taxonomy.schema import Entry
from algospeed.terminal import output_console

app = typer.Typer(
    name="taxonomy",
    help="The catalogue of published training-speedup methods, placed on the taxonomy's axes.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def overview(
    ctx: typer.Context,
    where: Annotated[str | None, typer.Option(help="Only methods acting on: data, model, optimization.")] = None,
    what: Annotated[
        str | None,
        typer.Option(help="Only methods whose action is: remove, shrink, reuse, reorder, add, replace."),
    ] = None,
    how: Annotated[
        str | None, typer.Option(help="Only methods paying off by: cheaper_steps, fewer_steps, both.")
    ] = None,
    when: Annotated[str | None, typer.Option(help="Only methods acting: throughout, scheduled, before, late.")] = None,
    task: Annotated[str | None, typer.Option(help="Only methods shown on this task family, e.g. vision.")] = None,
    implemented: Annotated[bool, typer.Option("--implemented", help="Only methods algospeed implements.")] = False,
    show_gaps: Annotated[bool, typer.Option("--gaps", help="Show thin cells (research gaps) and the backlog.")] = False,
    threshold: Annotated[
        int, typer.Option(help="With --gaps: a cell with at most this many methods is thin.")
    ] = DEFAULT_THRESHOLD,
) -> None:
    """Print the where x what grid of method counts, or the methods matching the filters."""
    entries = packaged_catalogue().entries
    chosen = select(entries, where=where, what=what, how=how, when=when, task=task, implemented=implemented)
    ctx.obj = chosen
    if ctx.invoked_subcommand is not None:
        return
    console = output_console()
    if show_gaps:
        for table in gaps_tables(gaps(chosen, threshold)):
            console.print(table)
    elif implemented or any(value is not None for value in (where, what, how, when, task)):
        if chosen:
            console.print(entries_table(chosen, title=f"{len(chosen)} matching methods"))
        else:
            console.print("No catalogued method matches these filters.")
    else:
        console.print(grid_table(entries))


@app.command("export")
def export_command(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", "-f", help=f"One of: {', '.join(FORMATS)}.")] = "md",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of to stdout.")] = None,
) -> None:
    """Export the (filtered) catalogue as Markdown, CSV or JSON."""
    entries: list[Entry] = ctx.obj
    text = export(entries, fmt)
    if out is None:
        typer.echo(text, nl=False)
        return
    if not out.parent.is_dir():
        raise UsageError(f"output folder {out.parent} does not exist")
    out.write_text(text, encoding="utf-8")
    output_console().print(f"wrote {len(entries)} methods to {out}")


@app.command("figure")
def figure_command(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG file to write.")] = Path("taxonomy-grid.png"),
) -> None:
    """Draw the (filtered) where x what grid as a PNG heatmap."""
    entries: list[Entry] = ctx.obj
    output_console().print(f"wrote {heatmap(entries, out)}")


@app.command("similar")
def similar_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A method's id, registry name or name.")],
    limit: Annotated[int, typer.Option(help="Show at most this many methods.")] = 10,
) -> None:
    """List the methods sharing a method's place or mechanism, most overlap first."""
    target = packaged_catalogue().entry(name)
    output_console().print(similar_table(target, similar(ctx.obj, target, limit)))
