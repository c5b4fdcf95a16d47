"""Diagnose where training time goes: per-phase and per-method timing, throughput, MFU against a
measured or datasheet peak, peak memory, a verdict (data-, overhead-, compute-, memory- or
communication-bound) and advice drawn from the taxonomy.

    >>> from algospeed.profile import Profiler, ProfileSchedule
    >>> from algospeed.run_spec import RunSpec, build_trainer
    >>> trainer = build_trainer(RunSpec(workload="digits", budget="30ba", device="cpu"))
    >>> profiler = Profiler(ProfileSchedule(skip_first=5, warmup=2, active=20)).attach(trainer)
    >>> _ = trainer.fit()
    >>> profile = profiler.report()
    >>> len(profile.steps), profile.verdict.kind in ("data-bound", "overhead-bound", "compute-bound", "memory-bound")
    (20, True)

A loop of one's own is profiled with `Profiler(schedule).attach_loop(model)`, `with profiler.phase(name)`
and `profiler.step(batch)` (`profile.loop`); a Lightning fit with `profile.lightning.ProfilerCallback`.
`algospeed profile` and `algospeed bottlenecks` are the command-line faces (`profile.cli`).
"""

from typing import Any

__all__ = ["Action", "ProfileSchedule", "Profiler"]


def __getattr__(name: str) -> Any:
    """Import lazily, so that mounting the CLI commands does not import torch."""
    if name == "Profiler":
        from algospeed.profile.profiler import Profiler

        return Profiler
    if name in ("Action", "ProfileSchedule"):
        from algospeed.profile import schedule

        return getattr(schedule, name)
    raise AttributeError(f"module 'algospeed.profile' has no attribute {name!r}")
