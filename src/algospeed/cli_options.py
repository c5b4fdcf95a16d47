"""Command-line options several commands share, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

PluginOption = Annotated[
    list[str] | None,
    typer.Option(
        "--plugin",
        help="A plugin file or module that registers methods and workloads (repeatable).",
        show_default=False,
    ),
]

LoggerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--logger",
        help="Record every curve point with a logger KIND:PATH: tensorboard, mlflow, csv or wandb (repeatable).",
        show_default=False,
    ),
]


def load_cli_plugins(plugin: list[str] | None) -> dict[str, str]:
    """Load the `--plugin` files and modules (relative paths from the current folder): ref -> sha256."""
    from algospeed.plugins import fingerprint, load_plugins

    return fingerprint(load_plugins(plugin or []))
