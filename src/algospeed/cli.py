"""The `algospeed` command line: every user error is one line on stderr and exit code 2."""

from __future__ import annotations

import errno
import signal
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.markup import escape
from rich.table import Table

from algospeed.cards.cli import app as methods_app
from algospeed.cli_options import LoggerOption, PluginOption, load_cli_plugins
from algospeed.core.settings import parse_key_values
from algospeed.errors import AlgospeedError, CheckpointError, RunFailure, UsageError, usage_error_from_validation
from algospeed.profile.cli import bottlenecks_command, profile_command
from algospeed.study.cli import compare_command, recipe_search_command, recipes_command, report_command, study_command
from algospeed.taxonomy.cli import app as taxonomy_app
from algospeed.terminal import output_console, plain

app = typer.Typer(
    name="algospeed",
    help="Algorithmic speedups for deep-learning training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(taxonomy_app, name="taxonomy")
app.command("profile")(profile_command)
app.command("bottlenecks")(bottlenecks_command)
app.command("study")(study_command)
app.command("report")(report_command)
app.command("compare")(compare_command)
app.command("recipes")(recipes_command)
recipe_app = typer.Typer(help="Find recipes for a workload.", no_args_is_help=True, add_completion=False)
recipe_app.command("search")(recipe_search_command)
app.add_typer(recipe_app, name="recipe")
app.add_typer(methods_app, name="methods")
console = output_console()
err_console = output_console(stderr=True)


@app.command("workloads")
def workloads_command(plugin: PluginOption = None) -> None:
    """List the workloads with their data kind, metric, target and defaults."""
    from algospeed.workloads.registry import WORKLOADS, get_workload

    load_cli_plugins(plugin)
    workloads = [get_workload(name) for name in WORKLOADS.names()]
    table = Table(title="workloads")
    for column in ("name", "data", "metric", "target", "budget", "batch", "optimizer"):
        table.add_column(column, no_wrap=True)
    for w in workloads:
        metric = f"{w.metric.name} ({'max' if w.metric.higher_is_better else 'min'})"
        table.add_row(
            *plain(
                w.name, w.kind().value, metric, f"{w.target:g}", w.budget, w.batch_size, f"{w.optimizer.name} {w.lr:g}"
            )
        )
    console.print(table)
    for w in workloads:
        origin = WORKLOADS.origin(w.name)
        source = "" if origin == "built-in" else f" (from {_origin(origin)})"
        options = ", ".join(f"{k}={v}" for k, v in w.options.items())
        console.print(
            f"  [bold]{escape(w.name)}[/]: {escape(w.description + source)}"
            + (f"; options {escape(options)}" if options else "")
        )


def _origin(origin: str) -> str:
    from algospeed.plugins import display_ref

    return display_ref(origin)


@app.command("train")
def train_command(
    workload: Annotated[str | None, typer.Option(help="Workload name (see `algospeed workloads`).")] = None,
    budget: Annotated[
        str | None, typer.Option(help="Training budget, e.g. 20ep, 500ba, 3e4sp, 90s, 2.5e12flop.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (model init, data order, methods).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder for config, curve, summary and checkpoints.")] = Path(
        "runs/demo"
    ),
    methods: Annotated[
        str | None,
        typer.Option(help="Speedup methods in order, with settings: label_smoothing,blurpool:replace_maxpools=false"),
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="Workload option KEY=VALUE (repeatable)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the workload's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Peak learning rate (default: the workload's).")] = None,
    eval_every: Annotated[
        str | None, typer.Option(help="Eval interval in any unit, or a fraction like 0.1dur.")
    ] = None,
    checkpoint_every: Annotated[
        str | None, typer.Option(help="Checkpoint interval in any unit (default 0.1dur; a resumed run keeps its own).")
    ] = None,
    recipe: Annotated[
        str | None, typer.Option(help="A recipe (name or file): its methods and hyperparameters (`algospeed recipes`).")
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay (default: the workload's).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the run already in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress bar.")] = False,
    plugin: PluginOption = None,
    logger: LoggerOption = None,
) -> None:
    """Train one workload for one budget, writing curve.jsonl, summary.json and checkpoints."""
    from algospeed.integrations.loggers import logger_from_spec
    from algospeed.progress_bar import ProgressBar
    from algospeed.run_directory import CurveWriter, RunDirectory
    from algospeed.run_spec import RunSpec, build_trainer
    from algospeed.workloads.registry import get_workload

    if resume and overwrite:
        raise UsageError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    if recipe is not None and methods is not None:
        raise UsageError("--recipe brings its own methods: give --recipe or --methods, not both")
    directory = RunDirectory(out)
    loggers = [logger_from_spec(text) for text in logger or []]  # a bad logger is refused first
    given = {
        "plugins": load_cli_plugins(plugin) or None,
        "workload": workload,
        "budget": budget,
        "seed": seed,
        "options": parse_key_values(option or [], "--option") or None,
        "methods": methods,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "eval_interval": eval_every,
        "checkpoint_interval": checkpoint_every,
        "device": device,
    }
    given = {key: value for key, value in given.items() if value is not None}
    if recipe is not None:
        given = {**recipe_settings(recipe), **given}
    try:
        if resume:
            saved = directory.load_spec()
            spec = RunSpec.model_validate({**saved.model_dump(), **given})
            check_same_settings(saved, spec, given)
        else:
            spec = RunSpec.model_validate({"workload": "mnist1d", "checkpoint_interval": "0.1dur", **given})
    except ValidationError as error:
        raise usage_error_from_validation(error, "run settings") from None
    if not resume:
        directory.check_new(overwrite)
    bar = None if quiet else ProgressBar(f"{spec.workload} seed {spec.seed}", get_workload(spec.workload).metric.name)
    trainer = build_trainer(
        spec,
        callbacks=[CurveWriter(directory), *loggers, *([bar] if bar else [])],
        checkpoint_dir=directory.checkpoints,
    )
    if not resume:
        directory.start(spec, replace=overwrite)
    try:
        result = trainer.fit(resume_from=directory.checkpoints if resume else None)
    except OSError as error:  # found while training (a full disk, a vanished folder): exit 3
        raise RunFailure(os_error_line(error)) from None
    except UsageError as error:  # e.g. a file of the data that cannot be decoded, met while training
        if isinstance(error, CheckpointError):
            raise
        raise RunFailure(str(error)) from None
    finally:
        if bar is not None:
            bar.close()
    if result.status == "interrupted":
        name = signal.Signals(trainer.stop_signal or signal.SIGINT).name
        err_console.print(
            f"interrupted by {name} at step {trainer.state.clock.steps}; checkpoint saved in "
            f"{directory.checkpoints}; continue with: algospeed train --out {out} --resume",
            markup=False,
        )
        raise typer.Exit(128 + int(trainer.stop_signal or signal.SIGINT))
    summary = directory.finish(spec, result)
    final = result.final
    quality = ", ".join(f"{k} {v:.4f}" for k, v in final.metrics.items())
    reached = summary["target_reached_at"]
    console.print(
        f"done: {final.step} steps, {final.train_seconds:.1f}s training, {final.flops:.3g} FLOPs; {quality}; "
        + (
            f"target {summary['target']:g} reached at step {reached['step']} ({reached['train_seconds']:.1f}s)"
            if reached
            else f"target {summary['target']:g} not reached"
        ),
        markup=False,
    )
    console.print(f"wrote {directory.curve}, {directory.summary}", markup=False)


def recipe_settings(recipe: str) -> dict[str, Any]:
    """The run settings a recipe gives: its methods (with its method settings applied), its hyperparameters,
    and its workload (unless --workload names another)."""
    from algospeed.study.recipe import load_recipe

    found = load_recipe(recipe)
    values = found.hyperparameters
    return {
        "workload": found.workload,
        "methods": [m.model_dump() for m in values.apply(found.methods)],
        **values.run_fields(),
    }


def check_same_settings(saved: Any, resumed: Any, given: dict[str, Any]) -> None:
    """Settings given again with --resume must equal the saved ones (the device alone may change)."""
    differing = [
        f"{key} {getattr(resumed, key)!r} (saved: {getattr(saved, key)!r})"
        for key in given
        if key != "device" and getattr(resumed, key) != getattr(saved, key)
    ]
    if differing:
        raise UsageError(
            f"--resume continues the saved run, but {', '.join(differing)} "
            f"{'differs' if len(differing) == 1 else 'differ'}; drop them to resume, "
            "or start a new run in another --out"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Every error a user can cause is one line on stderr and an exit code: 2 for usage (also
    the framework's own: unknown options, bad values), 3 for a failure while training; `--verbose` adds the
    traceback, which nothing a user can cause needs otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in args
    args = [arg for arg in args if arg != "--verbose"]
    try:
        code = app(args=args, prog_name="algospeed", standalone_mode=False)
    except AlgospeedError as error:
        return _fail(str(error), error.exit_code, verbose)
    except OSError as error:
        return _fail(os_error_line(error), 2, verbose)
    except KeyboardInterrupt:
        return _fail("interrupted", 130, verbose)
    except Exception as error:  # the CLI framework's usage errors, and anything unexpected
        usage = getattr(error, "format_message", None)
        if usage is not None:
            return _fail(f"{usage()} (see algospeed --help)", getattr(error, "exit_code", 2) or 2, verbose)
        return _fail(f"internal error {type(error).__name__}: {error} (please report it; --verbose shows where)", 1,
                     verbose)  # fmt: skip
    return code if isinstance(code, int) else 0


MAX_MESSAGE = 2000  # an echoed value never floods the terminal


def _fail(message: str, code: int, verbose: bool) -> int:
    if verbose:
        traceback.print_exc()
    if "Traceback (most recent call last)" in message:  # re-raised from a worker process: its last line says it
        message = message.strip().splitlines()[-1]
    line = " ".join(message.split())
    line = line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE] + " ... (cut)"
    err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False, soft_wrap=True)
    return code


def os_error_line(error: OSError) -> str:
    """What the operating system refused, naming the path: a full disk says so."""
    where = f"{error.filename}: " if error.filename else ""
    if error.errno == errno.ENOSPC:
        return f"{where}the disk is full (no space left on the device)"
    return f"{where}{error.strerror or error}"


if __name__ == "__main__":
    sys.exit(main())
