"""The `algospeed` command line: every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from algospeed.errors import AlgospeedError

app = typer.Typer(
    name="algospeed",
    help="Algorithmic speedups for deep-learning training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; turn algospeed errors into one clear line and their exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except AlgospeedError as error:
        err_console.print(f"[bold red]error:[/] {error}", highlight=False, soft_wrap=True)
        return error.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except Exception as error:  # click's usage errors carry their own exit code
        import click

        if isinstance(error, click.exceptions.ClickException):
            error.show()
            return error.exit_code
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
