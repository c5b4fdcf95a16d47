"""Build a `Profile` from what a profiler measured: look the machine up (or measure it), classify, advise.

An MFU above 100% is not believed: a peak measured here is measured once more (a peak measured while
the machine was busy is too low, and measuring again keeps the best of both); if the figure is still
above 100%, the profile gives no MFU and says why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from algospeed.profile.advice import advise
from algospeed.profile.peak import Machine, machine
from algospeed.profile.record import Profile
from algospeed.profile.verdict import classify

if TYPE_CHECKING:
    from algospeed.profile.profiler import Profiler


def build_profile(profiler: Profiler, known: Machine | None = None) -> Profile:
    """The profile of what `profiler` measured; the machine is looked up or measured when not given."""
    state = profiler.state
    assert state is not None
    measured = profiler.measured
    census = profiler.census
    dtype = census.dtype if census is not None else profiler.default_dtype()
    if known is None and measured.steps:
        known = machine(state.device, dtype, profiler.peak)
    peak_memory, memory_kind = profiler.peak_memory()
    profile = Profile(
        device=str(state.device),
        steps=list(measured.steps),
        step_seconds=list(measured.step_seconds),
        phases=dict(measured.phases),
        samples=measured.samples,
        tokens=measured.tokens,
        flops=measured.flops,
        machine=known,
        census=census,
        peak_memory=peak_memory,
        memory_kind=memory_kind,
        world_size=_world_size(),
        main_cpu_seconds=measured.main_cpu,
        worker_cpu_seconds=measured.worker_cpu,
    )
    measured_mfu = profile.measured_mfu
    if known is not None and known.peak_measured and measured_mfu is not None and measured_mfu > 1:
        profile.machine = machine(state.device, known.dtype, "measured", remeasure=True)
        profile.remeasured = True
    profile.verdict = classify(profile)
    profile.advice = advise(
        [profile.verdict.kind, *profile.verdict.flagged], data_kind=profiler.data_kind, methods=profiler.methods
    )
    return profile


def _world_size() -> int:
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size()
    return 1
