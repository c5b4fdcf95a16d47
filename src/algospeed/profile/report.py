"""Build a `Profile` from what a profiler measured: look the machine up (or measure it) and classify."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

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
    profile.verdict = classify(profile)
    return profile


def _world_size() -> int:
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_world_size()
    return 1
