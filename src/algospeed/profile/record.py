"""A profile: the measured phases of the active steps, throughput, MFU, peak memory and the verdict (a record)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from algospeed.profile.census import Census
from algospeed.profile.phases import CHECKPOINT, COMPUTE_PHASES, DATA, EVAL, H2D, OTHER, PHASE_LABELS

if TYPE_CHECKING:
    from algospeed.profile.advice import AdviceSection
    from algospeed.profile.peak import Machine
    from algospeed.profile.verdict import Verdict


@dataclass(frozen=True)
class PhaseRow:
    """One line of the phase table."""

    key: str
    label: str
    seconds: float
    ms_per_step: float
    share: float


@dataclass
class Profile:
    """What the profiler measured over its active steps, on which machine, and what it concludes.

    Shares are of the measured wall-clock (they sum to 1); throughput and MFU are over training time,
    that is without eval and checkpoints.
    """

    device: str
    steps: list[int]
    step_seconds: list[float]
    phases: dict[str, float]
    samples: int
    tokens: int
    flops: float
    machine: Machine | None
    census: Census | None
    peak_memory: float
    memory_kind: str
    world_size: int = 1
    remeasured: bool = False  # the peak was measured again because the MFU came out above 100%
    main_cpu_seconds: float = 0.0
    worker_cpu_seconds: float = 0.0
    verdict: Verdict | None = None
    advice: list[AdviceSection] = field(default_factory=list)

    # ------------------------------------------------------------------------------ derived
    @property
    def total_seconds(self) -> float:
        return sum(self.phases.values())

    @property
    def train_seconds(self) -> float:
        return self.total_seconds - self.phases.get(EVAL, 0.0) - self.phases.get(CHECKPOINT, 0.0)

    def share(self, *keys: str) -> float:
        """The share of the wall-clock spent in these phases."""
        total = self.total_seconds
        return sum(self.phases.get(key, 0.0) for key in keys) / total if total > 0 else 0.0

    def train_share(self, *keys: str) -> float:
        """The share of training time (eval and checkpoints left out) spent in these phases."""
        train = self.train_seconds
        return sum(self.phases.get(key, 0.0) for key in keys) / train if train > 0 else 0.0

    @property
    def method_keys(self) -> list[str]:
        return sorted((k for k in self.phases if k.startswith("method:")), key=lambda k: -self.phases[k])

    @property
    def callback_keys(self) -> list[str]:
        return sorted((k for k in self.phases if k.startswith("callback:")), key=lambda k: -self.phases[k])

    @property
    def compute_seconds(self) -> float:
        """Forward, loss, backward and optimizer time, plus the methods' own work (extra passes)."""
        return sum(self.phases.get(k, 0.0) for k in (*COMPUTE_PHASES, *self.method_keys))

    @property
    def step_ms(self) -> float:
        """Median wall-clock of a measured step, in milliseconds."""
        return statistics.median(self.step_seconds) * 1e3 if self.step_seconds else 0.0

    @property
    def worker_cpu_fraction(self) -> float:
        """On CPU training: the share of all CPU time its loader worker processes used (they compete
        with training for the same cores); 0 on a GPU, where they do not."""
        total = self.main_cpu_seconds + self.worker_cpu_seconds
        if not self.device.startswith("cpu") or total <= 0:
            return 0.0
        return self.worker_cpu_seconds / total

    @property
    def samples_per_second(self) -> float:
        return self.samples / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def achieved_flops(self) -> float:
        """FLOP/s over training time (FLOPs as counted by the trainer's `FlopCounterMode` meter)."""
        return self.flops / self.train_seconds if self.train_seconds > 0 else 0.0

    @property
    def measured_mfu(self) -> float | None:
        """Achieved FLOP/s over the device's dense peak for the dtype in use, as measured (even above 1)."""
        if self.machine is None or self.machine.peak_flops <= 0:
            return None
        return self.achieved_flops / self.machine.peak_flops

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilization; None above 100%, which no device reaches: then the peak or the FLOP
        count is wrong, and `mfu_unreliable` says why the figure is not given."""
        value = self.measured_mfu
        return None if value is None or value > 1 else value

    @property
    def mfu_unreliable(self) -> str | None:
        """Why no MFU is given when the measured one is above 100%; None otherwise."""
        value = self.measured_mfu
        if value is None or value <= 1 or self.machine is None:
            return None
        known = self.machine
        why = (
            "the peak was measured while the machine was busy, or the FLOP count is too high"
            if known.peak_measured
            else "the FLOP count is too high for what the device ran"
        )
        again = ", measured again" if self.remeasured else ""
        return (
            f"the run's {self.achieved_flops / 1e9:.3g} GFLOP/s exceed the {known.peak_flops / 1e9:.3g} GFLOP/s "
            f"{known.dtype} peak ({known.peak_source}{again}): {why}"
        )

    @property
    def fixed_seconds(self) -> float:
        """The per-step fixed cost over the measured steps: operators x seconds per trivial operator."""
        if self.census is None or self.machine is None:
            return 0.0
        return self.census.operators * self.machine.operator_seconds * len(self.steps)

    @property
    def memory_bytes(self) -> float | None:
        """Bytes a step moves to and from memory (the census's operators too large for the cache)."""
        if self.census is None:
            return None
        return self.census.memory_bytes(self.machine.cache_bytes if self.machine else 0.0)

    @property
    def intensity(self) -> float | None:
        """FLOPs per byte moved to and from memory; None when nothing is (or no census was taken)."""
        moved = self.memory_bytes
        if not moved or not self.steps:
            return None
        return (self.flops / len(self.steps)) / moved

    def rows(self) -> list[PhaseRow]:
        """The phase table: data, copy, compute phases, each method and callback, eval, checkpoint, other."""
        steps = max(len(self.steps), 1)
        keys = [
            DATA,
            H2D,
            *COMPUTE_PHASES,
            *self.method_keys,
            *self.callback_keys,
            EVAL,
            CHECKPOINT,
            OTHER,
        ]
        keys += sorted(set(self.phases) - set(keys))
        return [
            PhaseRow(
                key=key,
                label=PHASE_LABELS.get(key, key),
                seconds=self.phases.get(key, 0.0),
                ms_per_step=self.phases.get(key, 0.0) / steps * 1e3,
                share=self.share(key),
            )
            for key in keys
        ]

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-able values."""
        mfu = self.mfu
        return {
            "device": self.device,
            "steps": len(self.steps),
            "profiled_steps": self.steps,
            "step_ms_median": self.step_ms,
            "total_seconds": self.total_seconds,
            "train_seconds": self.train_seconds,
            "phases": [
                {"phase": row.key, "label": row.label, "ms_per_step": row.ms_per_step, "share": row.share}
                for row in self.rows()
            ],
            "throughput": {
                "samples_per_second": self.samples_per_second,
                "tokens_per_second": self.tokens_per_second if self.tokens else None,
                "flops_per_step": self.flops / len(self.steps) if self.steps else 0.0,
                "achieved_flops_per_second": self.achieved_flops,
            },
            "mfu": mfu,
            "mfu_unreliable": self.mfu_unreliable,
            "machine": self.machine.to_dict() if self.machine else None,
            "census": self.census.to_dict() if self.census else None,
            "fixed_ms_per_step": self.fixed_seconds / max(len(self.steps), 1) * 1e3,
            "intensity_flops_per_byte": self.intensity,
            "memory": {"peak_bytes": self.peak_memory, "kind": self.memory_kind},
            "cpu_ms_per_step": {
                "main_process": self.main_cpu_seconds / max(len(self.steps), 1) * 1e3,
                "loader_workers": self.worker_cpu_seconds / max(len(self.steps), 1) * 1e3,
            },
            "world_size": self.world_size,
            "verdict": self.verdict.to_dict() if self.verdict else None,
            "advice": [section.to_dict() for section in self.advice],
        }
