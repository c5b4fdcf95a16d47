"""The verdict: which bottleneck holds the run back, with the numbers that say so.

Training time (eval and checkpoints left out) is split into five parts that add up to it:

- data: waiting for the loader plus the host-to-device copy; when training runs on the CPU, also
  the loader worker processes' share of all CPU time, taken from the rest (they run on the same
  cores, so their work slows the compute phases down instead of showing up as waiting);
- communication (under DDP only): backward time beyond `BACKWARD_FORWARD_RATIO` x forward, an
  estimate of the time spent waiting for gradient all-reduce;
- overhead: the loop's own work and non-method callbacks (outside forward, backward and the
  optimizer), plus the step's fixed cost inside them: the operators the census counted times the
  seconds one takes at trivial size (Python, dispatch, autograd, kernel launches);
- memory and compute: the rest of forward/loss/backward/optimizer and the methods' own work, split
  by the roofline: in proportion to the step's ideal memory time (bytes moved to and from memory,
  from the census, over the bandwidth) and its ideal compute time (FLOPs over the peak).

The verdict is the largest part; any other part above its threshold is flagged as well, and so is
memory capacity near the device's limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from algospeed.profile.phases import CHECKPOINT, DATA, EVAL, H2D, OTHER

if TYPE_CHECKING:
    from algospeed.profile.record import Profile

DATA_BOUND = "data-bound"
OVERHEAD_BOUND = "overhead-bound"
COMPUTE_BOUND = "compute-bound"
MEMORY_BOUND = "memory-bound"
COMMUNICATION_BOUND = "communication-bound"
KINDS = (DATA_BOUND, OVERHEAD_BOUND, COMPUTE_BOUND, MEMORY_BOUND, COMMUNICATION_BOUND)

DATA_WAIT_SHARE = 0.05
"""The input pipeline is flagged when waiting for data (and the copy to the device) exceeds 5% of
training time: torch.profiler's TensorBoard plugin flagged the data loader above 5% of step time
(its old DataLoader recommendation rule)."""

BOTTLENECK_SHARE = 0.25
"""Overhead, memory traffic or communication is flagged at a quarter of training time: removing it
would then give at least 1/(1 - 0.25) = 1.33x (Amdahl's law), the size of gain a speedup method in
the catalogue is worth trying for. algospeed's choice."""

MEMORY_CAPACITY_SHARE = 0.90
"""Memory capacity is flagged when the peak reaches 90% of the device's memory: a larger batch or
model will not fit. algospeed's choice."""

METHOD_SHARE = 0.10
"""A method whose own work (its event handlers: extra passes, scoring, model surgery) takes over 10%
of training time is named, since that is its overhead to be repaid. algospeed's choice."""

EVAL_SHARE = 0.10
"""Evaluation or checkpointing above 10% of the wall-clock is named: it is not charged to training
but still costs the run. algospeed's choice."""

WELL_TUNED_MFU = 0.46
"""Context for MFU figures: PaLM (Chowdhery et al. 2022) reported 46.2% model FLOPs utilization for
large-model training on TPU v4, a well-tuned reference point."""

BACKWARD_FORWARD_RATIO = 2.0
"""The backward pass takes about twice the forward's FLOPs (gradients for inputs and for weights),
so under DDP backward time beyond twice the forward is attributed to waiting for gradient
all-reduce. An estimate: DDP overlaps communication with backward and the ratio varies by layer."""


@dataclass(frozen=True)
class Verdict:
    """The bottleneck (`kind`), each part's share of training time, the evidence, other kinds flagged
    above their thresholds (largest first), and notes (costly methods, eval, capacity)."""

    kind: str
    shares: dict[str, float]
    evidence: list[str]
    flagged: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "shares": self.shares,
            "evidence": self.evidence,
            "flagged": self.flagged,
            "notes": self.notes,
        }


def shares(profile: Profile) -> dict[str, float]:
    """Each bottleneck kind's share of training time (they add up to 1)."""
    train = profile.train_seconds
    if train <= 0:
        return dict.fromkeys(KINDS, 0.0)
    phases = profile.phases
    data = phases.get(DATA, 0.0) + phases.get(H2D, 0.0)
    work = profile.compute_seconds
    communication = 0.0
    if profile.world_size > 1:
        excess = phases.get("backward", 0.0) - BACKWARD_FORWARD_RATIO * phases.get("forward", 0.0)
        communication = min(max(excess, 0.0), work)
    outside = phases.get(OTHER, 0.0) + sum(phases[k] for k in profile.callback_keys)
    fixed = min(profile.fixed_seconds, work - communication)
    rest = work - communication - fixed
    memory_fraction = 0.0
    known = profile.machine
    moved = profile.memory_bytes
    if known is not None and moved and profile.steps:
        ideal_memory = moved / known.bandwidth
        ideal_compute = (profile.flops / len(profile.steps)) / known.peak_flops
        if ideal_memory + ideal_compute > 0:
            memory_fraction = ideal_memory / (ideal_memory + ideal_compute)
    parts = {
        DATA_BOUND: data / train,
        OVERHEAD_BOUND: (outside + fixed) / train,
        COMPUTE_BOUND: rest * (1 - memory_fraction) / train,
        MEMORY_BOUND: rest * memory_fraction / train,
        COMMUNICATION_BOUND: communication / train,
    }
    competing = profile.worker_cpu_fraction
    if competing > 0:  # the workers' share of the time not spent waiting moves to data
        waiting = parts[DATA_BOUND]
        parts = {kind: share * (1 - competing) for kind, share in parts.items()}
        parts[DATA_BOUND] = waiting + (1 - waiting) * competing
    return parts


THRESHOLDS = {
    DATA_BOUND: DATA_WAIT_SHARE,
    OVERHEAD_BOUND: BOTTLENECK_SHARE,
    MEMORY_BOUND: BOTTLENECK_SHARE,
    COMMUNICATION_BOUND: BOTTLENECK_SHARE,
}


def classify(profile: Profile) -> Verdict:
    """The largest part of training time is the bottleneck; the others above their thresholds are flagged."""
    parts = shares(profile)
    kind = max(KINDS, key=lambda k: parts[k])
    flagged = [k for k in sorted(THRESHOLDS, key=lambda k: -parts[k]) if k != kind and parts[k] >= THRESHOLDS[k]]
    capacity = _capacity_share(profile)
    if capacity is not None and capacity >= MEMORY_CAPACITY_SHARE and MEMORY_BOUND not in (kind, *flagged):
        flagged.append(MEMORY_BOUND)
    evidence = [f"{_pct(parts[k])} {k.removesuffix('-bound')}" for k in sorted(KINDS, key=lambda k: -parts[k])]
    evidence = ["share of training time: " + ", ".join(evidence)]
    for k in (kind, *flagged):
        evidence += _evidence(k, profile, parts, capacity)
    return Verdict(kind=kind, shares=parts, evidence=evidence, flagged=flagged, notes=_notes(profile))


def _capacity_share(profile: Profile) -> float | None:
    known = profile.machine
    if known is None or not known.memory_capacity:
        return None
    return profile.peak_memory / known.memory_capacity


def _evidence(kind: str, profile: Profile, parts: dict[str, float], capacity: float | None) -> list[str]:
    steps = max(len(profile.steps), 1)
    known = profile.machine
    lines: list[str] = []
    if kind == DATA_BOUND:
        lines.append(
            f"data-bound: waiting for data {_pct(profile.train_share(DATA))} and host-to-device copies "
            f"{_pct(profile.train_share(H2D))} of training time (flagged above {_pct(DATA_WAIT_SHARE)}, "
            "torch.profiler's old data-loader rule)"
        )
        if profile.worker_cpu_fraction > 0:
            lines.append(
                f"data-bound: loader worker processes used {profile.worker_cpu_seconds / steps * 1e3:.1f} ms of CPU "
                f"per step, {_pct(profile.worker_cpu_fraction)} of all CPU time, on the cores training runs on"
            )
    elif kind == OVERHEAD_BOUND:
        operators = profile.census.operators if profile.census else 0
        per_op = known.operator_seconds * 1e6 if known else 0.0
        lines.append(
            f"overhead-bound: loop and callbacks outside forward/backward/optimizer "
            f"{_pct(profile.train_share(OTHER, *profile.callback_keys))}; fixed cost {operators} operators/step x "
            f"{per_op:.1f} us = {profile.fixed_seconds / steps * 1e3:.2f} ms of a {profile.step_ms:.2f} ms step"
            + (f"; MFU {_pct(profile.mfu)}" if profile.mfu is not None else "")
        )
    elif kind == COMPUTE_BOUND:
        line = (
            f"compute-bound: forward, loss, backward, optimizer and methods' work "
            f"{_pct(profile.compute_seconds / profile.train_seconds if profile.train_seconds else 0)} of training time"
        )
        if profile.mfu is not None and known is not None:
            line += (
                f"; MFU {_pct(profile.mfu)} of {known.peak_flops / 1e12:.3g} TFLOP/s {known.dtype} "
                f"({known.peak_source}; well-tuned large-model training reaches ~{_pct(WELL_TUNED_MFU)})"
            )
        lines.append(line)
    elif kind == MEMORY_BOUND:
        intensity = profile.intensity
        if intensity is not None and known is not None and parts[MEMORY_BOUND] > 0:
            lines.append(
                f"memory-bound: {intensity:.1f} FLOPs per byte moved to and from memory (operators larger than "
                f"the {known.cache_bytes / 2**20:.0f} MiB cache, unfused) against the machine's balance of "
                f"{known.balance:.1f} FLOPs/byte ({known.peak_flops / 1e12:.3g} TFLOP/s over "
                f"{known.bandwidth / 1e9:.0f} GB/s)"
            )
        if capacity is not None and capacity >= MEMORY_CAPACITY_SHARE:
            lines.append(
                f"memory: peak {profile.peak_memory / 2**30:.2f} GiB ({profile.memory_kind}), "
                f"{_pct(capacity)} of the device's memory (flagged from {_pct(MEMORY_CAPACITY_SHARE)})"
            )
    elif kind == COMMUNICATION_BOUND:
        lines.append(
            f"communication-bound (estimate): backward exceeds {BACKWARD_FORWARD_RATIO:g}x forward by "
            f"{_pct(parts[COMMUNICATION_BOUND])} of training time, world size {profile.world_size}"
        )
    return lines


def _notes(profile: Profile) -> list[str]:
    notes = []
    for key in profile.method_keys:
        share = profile.train_share(key)
        if share >= METHOD_SHARE:
            notes.append(f"method {key.split(':', 1)[1]} spends {_pct(share)} of training time in its own work")
    for key, what in ((EVAL, "evaluation"), (CHECKPOINT, "checkpointing")):
        if profile.share(key) >= EVAL_SHARE:
            notes.append(f"{what} takes {_pct(profile.share(key))} of the wall-clock (not charged to training)")
    return notes


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%" if value >= 0.1 else f"{100 * value:.1f}%"
