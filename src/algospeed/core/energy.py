"""Energy as a cost currency: measured by the hardware's own counters where the machine allows, never invented.

Two counters are read: a GPU's total energy from NVML (`nvmlDeviceGetTotalEnergyConsumption`, millijoules
since the driver loaded; Volta and newer) and each CPU package's from RAPL
(`/sys/class/powercap/intel-rapl:N/energy_uj`, microjoules, wrapping at `max_energy_range_uj`). Both
count the whole device, every process on it, not this run alone. Where neither can be read (no GPU,
a container that hides or locks RAPL) there is no energy figure, and `reason` says why. No estimate
(such as TDP times utilisation) is offered: a figure here is always a measurement.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

RAPL_ROOT = Path("/sys/class/powercap")
_PACKAGE_ZONE = re.compile(r"intel-rapl:\d+")  # top-level zones only: sub-zones (core, dram) are inside them


class EnergySource(Protocol):
    """One hardware energy counter."""

    name: str

    def read(self) -> float | None:
        """Joules counted since this source was opened (None when the counter cannot be read now)."""
        ...


class RaplZone:
    """A CPU package's RAPL counter, with its wrap-around undone (read it more often than it wraps: at
    100 W a 2^32 uJ range wraps every 43 s, the usual 2^38 uJ one every 45 minutes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"cpu {(folder / 'name').read_text().strip()} (RAPL)"
        self.range_uj = int((folder / "max_energy_range_uj").read_text())
        self._last = self._raw()
        self._total_uj = 0

    def _raw(self) -> int:
        return int((self.folder / "energy_uj").read_text())

    def read(self) -> float | None:
        try:
            raw = self._raw()
        except (OSError, ValueError):
            return None
        step = raw - self._last
        if step < 0:  # the counter wrapped (once: read it more often than that)
            step += self.range_uj
        self._last = raw
        self._total_uj += step
        return self._total_uj / 1e6


class NvmlDevice:
    """A GPU's NVML energy counter (it does not wrap in practice: 64 bits of millijoules)."""

    def __init__(self, pynvml: Any, handle: Any, label: str) -> None:
        self._nvml = pynvml
        self._handle = handle
        self.name = f"gpu {label} (NVML)"
        self._start = self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)

    def read(self) -> float | None:
        try:
            return (self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle) - self._start) / 1e3
        except self._nvml.NVMLError:
            return None


def rapl_zones(root: Path = RAPL_ROOT) -> tuple[list[RaplZone], str]:
    """The readable CPU package zones under `root`, and why there are none when there are none."""
    if not root.is_dir():
        return [], f"no RAPL: {root} does not exist (no powercap driver, or a container that hides it)"
    folders = sorted(p for p in root.iterdir() if _PACKAGE_ZONE.fullmatch(p.name))
    zones, problems = [], []
    for folder in folders:
        try:
            if not (folder / "name").read_text().startswith("package"):
                continue  # psys (the whole platform) contains the packages: counting it too would count twice
            zones.append(RaplZone(folder))
        except (OSError, ValueError) as error:
            problems.append(f"{folder / 'energy_uj'}: {getattr(error, 'strerror', None) or error}")
    if zones:
        return zones, ""
    if problems:
        return [], "RAPL is not readable (root only since Linux 5.10): " + "; ".join(problems)
    return [], f"no RAPL: {root} has no CPU package zone"


def nvml_device(index: int, uuid: str | None = None) -> tuple[NvmlDevice | None, str]:
    """The NVML counter of GPU `index` (found by `uuid` when given, so that CUDA_VISIBLE_DEVICES does not
    mismatch NVML's numbering), and why there is none when there is none."""
    try:
        import pynvml
    except ImportError:
        return None, "no GPU energy: nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    try:
        pynvml.nvmlInit()
        handle = (
            pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid is not None else pynvml.nvmlDeviceGetHandleByIndex(index)
        )
        return NvmlDevice(pynvml, handle, str(index)), ""
    except pynvml.NVMLError as error:
        return None, f"no GPU energy for cuda:{index}: NVML says {error} (the counter needs a Volta or newer GPU)"


class EnergyMeter:
    """The energy spent by the machine's measurable parts: every CPU package with readable RAPL and, when
    training on a GPU, that GPU. `joules()` is cumulative since the meter was made; `lap()` and `restart()`
    let a loop charge only the intervals it trains in, as it does with seconds."""

    def __init__(self, sources: Sequence[EnergySource], reasons: Sequence[str] = ()) -> None:
        self.sources = list(sources)
        self.reason = "; ".join(reason for reason in reasons if reason)
        self._mark = self.joules()

    @classmethod
    def for_device(cls, device: torch.device, rapl_root: Path | None = None) -> EnergyMeter:
        """The meter for a run on `device`: RAPL always, NVML for a CUDA device."""
        sources: list[EnergySource] = []
        zones, reason = rapl_zones(RAPL_ROOT if rapl_root is None else rapl_root)
        sources.extend(zones)
        reasons = [reason]
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
            gpu, why = nvml_device(index, None if uuid is None else f"GPU-{uuid}")
            if gpu is not None:
                sources.append(gpu)
            reasons.append(why)
        return cls(sources, reasons)

    @property
    def available(self) -> bool:
        """Whether there is anything to measure (else `joules()` is None and `reason` says why)."""
        return bool(self.sources)

    @property
    def source_names(self) -> list[str]:
        return [source.name for source in self.sources]

    def joules(self) -> float | None:
        """Joules spent since the meter was made, summed over its sources; None when any cannot be read
        (a figure missing a part would understate the cost)."""
        if not self.sources:
            return None
        total = 0.0
        for source in self.sources:
            reading = source.read()
            if reading is None:
                return None
            total += reading
        return total

    def lap(self) -> float | None:
        """Joules since the last `lap` or `restart` (None when either reading failed)."""
        if not self.sources:
            return None
        now = self.joules()
        spent = None if now is None or self._mark is None else now - self._mark
        self._mark = now
        return spent

    def restart(self) -> None:
        """Start the next lap now: what was spent since the last one is not charged (eval, checkpoints)."""
        if self.sources:
            self._mark = self.joules()
