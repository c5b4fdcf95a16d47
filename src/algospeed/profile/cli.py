"""`algospeed profile` and `algospeed bottlenecks`: the commands, mounted by the main CLI.

Heavy imports wait until a command runs, so that the CLI starts fast. Bad input raises `UsageError`,
which the main CLI prints as one line with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from algospeed.cli_options import PluginOption, load_cli_plugins
from algospeed.errors import UsageError
from algospeed.terminal import output_console


def profile_command(
    workload: Annotated[str, typer.Option(help="Workload name (see `algospeed workloads`).")] = "mnist1d",
    methods: Annotated[
        str | None, typer.Option(help="Speedup methods in order, with settings, e.g. data_echoing:factor=2.")
    ] = None,
    steps: Annotated[int, typer.Option(help="Training steps to run (the budget).")] = 200,
    skip: Annotated[int, typer.Option(help="Steps run before profiling (FLOP counting, warm-up).")] = 10,
    warmup: Annotated[int, typer.Option(help="Profiled steps discarded (the first takes the operator census).")] = 2,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Workload option KEY=VALUE (repeatable).")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the workload's).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if available).")] = None,
    eval_every: Annotated[
        str | None, typer.Option(help="Eval interval (default: the workload's); eval shows as its own phase.")
    ] = None,
    peak: Annotated[
        str,
        typer.Option(help="Peak FLOP/s for MFU: auto (datasheet for known GPUs, else measured), measured, datasheet."),
    ] = "auto",
    trace: Annotated[
        Path | None, typer.Option(help="Write a Chrome/Perfetto trace of the profiled steps (torch.profiler) here.")
    ] = None,
    remeasure: Annotated[
        bool,
        typer.Option("--remeasure", help="Measure this machine's peak again (the cached one may be from a busy time)."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the profile as JSON.")] = False,
    plugin: PluginOption = None,
) -> None:
    """Profile a short run: time per phase and method, MFU, the bottleneck, and methods that address it."""
    from pydantic import ValidationError

    from algospeed.core.settings import parse_key_values
    from algospeed.errors import usage_error_from_validation
    from algospeed.profile.advice import advise
    from algospeed.profile.peak import PEAK_SOURCES, machine
    from algospeed.profile.profiler import Profiler
    from algospeed.profile.render import print_profile
    from algospeed.profile.schedule import ProfileSchedule
    from algospeed.run_spec import RunSpec, build_trainer
    from algospeed.workloads.registry import get_workload

    if steps < 1:
        raise UsageError(f"--steps must be at least 1, got {steps}")
    if skip < 0 or warmup < 0:
        raise UsageError("--skip and --warmup must be 0 or more")
    active = steps - skip - warmup
    if active < 1:
        raise UsageError(
            f"--steps {steps} leaves no step to measure after --skip {skip} and --warmup {warmup}; "
            f"use --steps {skip + warmup + 1} or more"
        )
    if peak not in PEAK_SOURCES:
        raise UsageError(f"unknown --peak {peak!r}; valid: {', '.join(PEAK_SOURCES)}")
    if trace is not None:
        check_writable(trace)
    given = {
        "plugins": load_cli_plugins(plugin),
        "workload": workload,
        "budget": f"{steps}ba",
        "seed": seed,
        "options": parse_key_values(option or [], "--option") or None,
        "methods": methods,
        "batch_size": batch_size,
        "eval_interval": eval_every,
        "device": device,
    }
    try:
        spec = RunSpec.model_validate({key: value for key, value in given.items() if value is not None})
    except ValidationError as error:
        raise usage_error_from_validation(error, "profile settings") from None
    chosen = get_workload(spec.workload)
    err = output_console(stderr=True)
    if not json_output:
        err.print(
            f"profiling {spec.workload}: {steps} steps, measuring {skip + warmup}..{steps - 1}",
            highlight=False,
            markup=False,
        )
    trainer = build_trainer(spec)
    kind = chosen.kind(spec.options)
    schedule = ProfileSchedule(skip_first=skip, warmup=warmup, active=active)
    profiler = Profiler(schedule, trace=trace, peak=peak, data_kind=kind)
    profiler.attach(trainer)
    trainer.fit()
    known = None
    if remeasure:
        dtype = profiler.census.dtype if profiler.census else profiler.default_dtype()
        known = machine(trainer.state.device, dtype, peak, remeasure=True)
    profile = profiler.report(machine=known)
    if profile.verdict is not None:  # advice again, with the commands that train this workload
        profile.advice = advise(
            [profile.verdict.kind, *profile.verdict.flagged],
            workload=spec.workload,
            data_kind=kind,
            plugins=plugin or [],
            methods=[str(method) for method in spec.methods],
            options=spec.options,
            workload_options=list(chosen.options),
        )
    if trace is not None and (not trace.is_file() or trace.stat().st_size == 0):
        raise UsageError(f"no trace was written to {trace} (the profiling window measured no step?)")
    if json_output:
        payload = {"workload": spec.workload, "methods": [str(m) for m in spec.methods], **profile.to_dict()}
        if trace is not None:
            payload["trace"] = str(trace)
        typer.echo(json.dumps(payload, indent=2))
        return
    console = output_console()
    print_profile(profile, console, title=f"profile of {spec.workload}" + (f" with {methods}" if methods else ""))
    if trace is not None:
        console.print(
            f"\ntrace: {trace} (open in https://ui.perfetto.dev or chrome://tracing)", highlight=False, markup=False
        )


def check_writable(path: Path) -> None:
    """A usage error, before any work, when `path` cannot be written (missing folder, no permission)."""
    if not path.resolve().parent.is_dir():
        raise UsageError(f"cannot write --trace {path}: {path.parent} is not a folder")
    existed = path.exists()
    try:
        with open(path, "a"):
            pass
    except OSError as error:
        raise UsageError(f"cannot write --trace {path}: {error.strerror}") from None
    if not existed:
        path.unlink()


def bottlenecks_command(
    workload: Annotated[str, typer.Option(help="Workload held in memory (see `algospeed workloads`).")] = "mnist5k",
    costs: Annotated[str, typer.Option(help="CPU augmentation cost per sample, in ms, comma-separated.")] = "0,1,4",
    workers: Annotated[str, typer.Option(help="Loader worker processes to try, comma-separated.")] = "0,1,2",
    echo: Annotated[str, typer.Option(help="Data echoing factors to try (1 = none), comma-separated.")] = "1,2",
    steps: Annotated[int, typer.Option(help="Training steps per configuration.")] = 20,
    skip: Annotated[int, typer.Option(help="Steps per configuration before measuring (worker start-up).")] = 5,
    batch_size: Annotated[int | None, typer.Option(help="Batch size (default: the workload's).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda ... (default: cuda if available).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for bottlenecks.png, bottlenecks.md and bottlenecks.csv.")] = Path(
        "runs/bottlenecks"
    ),
    plugin: PluginOption = None,
) -> None:
    """Reproduce the data-loading bottleneck: throughput as augmentation cost, loader workers and data
    echoing vary; writes a plot and a table."""
    from algospeed.profile.bottlenecks import Grid, run_grid, write_outputs

    load_cli_plugins(plugin)
    grid = Grid.parse(costs=costs, workers=workers, echo=echo, steps=steps, skip=skip)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    err = output_console(stderr=True)
    result = run_grid(
        workload,
        grid,
        batch_size=batch_size,
        device=device,
        progress=lambda line: err.print(line, highlight=False, markup=False),
    )
    paths = write_outputs(result, out)
    console = output_console()
    console.print(result.markdown(), markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {', '.join(str(path) for path in paths)}", highlight=False, markup=False)
