"""A profile as text: the phase table, throughput and MFU, the verdict with its evidence, and the advice."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from algospeed.profile.record import Profile
from algospeed.terminal import output_console, plain


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def print_profile(profile: Profile, console: Console | None = None, title: str = "profile") -> None:
    """Print everything `profile` holds, for a person (on stdout unless `console` is given)."""
    console = console or output_console()
    say = lambda text="": console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    steps = profile.steps
    if not steps:
        say(f"{title}: no step was measured (the run ended before the profiling window)")
        return
    first, last = steps[0], steps[-1]
    say(
        f"{title} on {profile.device} ({profile.machine.device if profile.machine else '?'}): "
        f"{len(steps)} steps measured ({first}..{last}), median step {profile.step_ms:.2f} ms"
    )
    table = Table(show_edge=True)
    for column, justify in (("phase", "left"), ("ms/step", "right"), ("share", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in profile.rows():
        table.add_row(*plain(row.label, f"{row.ms_per_step:.2f}", f"{100 * row.share:.1f}%"))
    table.add_row("total", f"{profile.total_seconds / len(steps) * 1e3:.2f}", "100.0%", style="bold")
    console.print(table)
    tokens = f", {_si(profile.tokens_per_second, 'tokens/s')}" if profile.tokens else ""
    say(
        f"throughput: {profile.samples_per_second:,.0f} samples/s{tokens}; "
        f"{_si(profile.flops / len(steps), 'FLOP')}/step, {_si(profile.achieved_flops, 'FLOP/s')} achieved"
    )
    known = profile.machine
    if known is not None and profile.mfu is not None:
        say(
            f"MFU: {100 * profile.mfu:.1f}% of {_si(known.peak_flops, 'FLOP/s')} dense {known.dtype} "
            f"({known.peak_source})"
        )
    elif profile.mfu_unreliable is not None:
        say(f"MFU: not given, the figure is unreliable: {profile.mfu_unreliable}")
    census = profile.census
    if census is not None and known is not None:
        intensity = profile.intensity
        say(
            f"per step: {census.operators} operators (fixed cost ~{profile.fixed_seconds / len(steps) * 1e3:.2f} ms "
            f"at {known.operator_seconds * 1e6:.1f} us each), {_si(census.bytes, 'B')} of operands, "
            f"{_si(profile.memory_bytes or 0.0, 'B')} beyond the {known.cache_bytes / 2**20:.0f} MiB cache"
            + (f", {intensity:.1f} FLOP/byte (machine balance {known.balance:.1f})" if intensity else "")
        )
    say(f"peak memory: {profile.peak_memory / 2**20:,.0f} MiB ({profile.memory_kind})")
    if profile.main_cpu_seconds or profile.worker_cpu_seconds:
        say(
            f"CPU time per step: training process {profile.main_cpu_seconds / len(steps) * 1e3:.1f} ms, "
            f"loader workers {profile.worker_cpu_seconds / len(steps) * 1e3:.1f} ms"
        )
    verdict = profile.verdict
    if verdict is None:
        return
    say()
    say(f"verdict: {verdict.kind.upper()}" + (f" (also {', '.join(verdict.flagged)})" if verdict.flagged else ""))
    for line in verdict.evidence:
        say(f"  {line}")
    for note in verdict.notes:
        say(f"  note: {note}")
    for section in profile.advice:
        say()
        say(f"advice for {section.kind}: {section.why}")
        implemented = [m for m in section.methods if m.implemented]
        catalogued = [m for m in section.methods if not m.implemented]
        if implemented:
            say("  implemented methods to try:")
            for method in implemented:
                say(f"    {method.name}: {method.reason}")
                say(f"      $ {method.command}")
        if catalogued:
            say("  catalogued, not implemented yet:")
            for method in catalogued:
                reference = f" ({method.reference})" if method.reference else ""
                say(f"    {method.name}{reference}: {method.summary}")
        if section.other:
            say("  besides methods:")
            for text, command in section.other:
                say(f"    {text}" + (f"\n      $ {command}" if command else ""))
