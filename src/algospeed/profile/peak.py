"""What the machine can do: peak dense FLOP/s for a dtype, memory bandwidth, and the time of one operator
at trivial size (the per-operator fixed cost), from a datasheet for known GPUs or measured here.

Measurements take about a second, so they are cached per machine (CPU or GPU model, host, thread
count, torch version) in `$ALGOSPEED_CACHE/machine.json` (default `~/.cache/algospeed`). No common
tool reports MFU on CPU, so on CPU the peak is always measured: the best of a few dense matmuls.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from algospeed.errors import UsageError
from algospeed.profile.census import OperatorCounter
from algospeed.workloads.cache import cache_dir

CACHE_FILE = "machine.json"
MATMUL_SECONDS = 0.25  # the longest single matmul the peak measurement may run
PEAK_SOURCES = ("auto", "measured", "datasheet")
MEASURED = "measured"
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


@dataclass(frozen=True)
class Datasheet:
    """A GPU's dense (no sparsity) tensor throughput in TFLOP/s per dtype and its memory bandwidth in TB/s."""

    pattern: str
    tflops: dict[str, float]
    terabytes_per_second: float


# NVIDIA's published dense figures (the sparsity-doubled ones halved); "tf32" is used for fp32 matmuls
# when torch allows TF32. First match wins, so the more specific names come first.
DATASHEETS: tuple[Datasheet, ...] = (
    Datasheet(r"H100 PCIe", {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}, 2.0),
    Datasheet(r"H100", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}, 3.35),
    Datasheet(r"H200", {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}, 4.8),
    Datasheet(r"A100-SXM4-80GB", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}, 2.039),
    Datasheet(r"A100 80GB PCIe", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}, 1.935),
    Datasheet(r"A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}, 1.555),
    Datasheet(r"L40S", {"fp32": 91.6, "tf32": 183.0, "bf16": 362.05, "fp16": 362.05}, 0.864),
    Datasheet(r"\bL4\b", {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0}, 0.3),
    Datasheet(r"\bA10\b", {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0}, 0.6),
    Datasheet(r"V100", {"fp32": 15.7, "fp16": 125.0}, 0.9),
    Datasheet(r"\bT4\b", {"fp32": 8.1, "fp16": 65.0}, 0.32),
    Datasheet(r"RTX 4090", {"fp32": 82.6, "tf32": 82.6, "bf16": 165.2, "fp16": 165.2}, 1.008),
)


@dataclass(frozen=True)
class Machine:
    """The device's limits for one dtype: peak FLOP/s, memory bandwidth (bytes/s), seconds per operator
    at trivial size, memory capacity and last-level cache (bytes), each with where it came from."""

    device: str
    dtype: str
    peak_flops: float
    peak_source: str
    bandwidth: float
    bandwidth_source: str
    operator_seconds: float
    memory_capacity: float | None = None
    cache_bytes: float = 0.0

    @property
    def peak_measured(self) -> bool:
        """Whether the peak was measured here (so measuring again may raise it), not from a datasheet."""
        return self.peak_source.startswith(MEASURED)

    @property
    def balance(self) -> float:
        """FLOPs per byte at which the roofline's ridge lies: below it a kernel is memory-bound."""
        return self.peak_flops / self.bandwidth

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def datasheet(name: str) -> Datasheet | None:
    """The datasheet entry for a GPU named `name`, if it is a known one."""
    return next((sheet for sheet in DATASHEETS if re.search(sheet.pattern, name)), None)


def _tf32_allowed() -> bool:
    return bool(torch.backends.cuda.matmul.allow_tf32) or torch.get_float32_matmul_precision() != "highest"


def machine(device: torch.device, dtype: str = "fp32", source: str = "auto", remeasure: bool = False) -> Machine:
    """The machine's limits for `dtype` on `device`: a known GPU's datasheet under `auto` or
    `datasheet`, else (and always on CPU) measured here once and cached. `remeasure` measures again
    and keeps the best of both (a busy machine only ever makes a measurement worse)."""
    if source not in PEAK_SOURCES:
        raise UsageError(f"unknown peak source {source!r}; valid: {', '.join(PEAK_SOURCES)}")
    if dtype not in TORCH_DTYPES:
        raise UsageError(f"no peak for dtype {dtype!r}; known: {', '.join(TORCH_DTYPES)}")
    name = device_name(device)
    sheet = datasheet(name) if device.type == "cuda" else None
    if source == "datasheet" and sheet is None:
        what = "a CPU" if device.type != "cuda" else f"GPU {name!r}"
        raise UsageError(f"no datasheet peak for {what}; use --peak measured (or auto)")
    measured = _cached_measurements(device, name, dtype, remeasure)
    capacity = _memory_capacity(device)
    cache = _cache_bytes(device)
    if sheet is not None and source != "measured":
        key = "tf32" if dtype == "fp32" and _tf32_allowed() and "tf32" in sheet.tflops else dtype
        if key in sheet.tflops:
            return Machine(
                device=name,
                dtype=dtype,
                peak_flops=sheet.tflops[key] * 1e12,
                peak_source=f"datasheet: {name}, dense {key}",
                bandwidth=sheet.terabytes_per_second * 1e12,
                bandwidth_source=f"datasheet: {name}",
                operator_seconds=measured["operator_seconds"],
                memory_capacity=capacity,
                cache_bytes=cache,
            )
    return Machine(
        device=name,
        dtype=dtype,
        peak_flops=measured["peak_flops"],
        peak_source=f"{MEASURED}: best of dense {measured['matmul_size']}^3 {dtype} matmuls here",
        bandwidth=measured["bandwidth"],
        bandwidth_source="measured: best of large tensor copies here",
        operator_seconds=measured["operator_seconds"],
        memory_capacity=capacity,
        cache_bytes=cache,
    )


def _memory_capacity(device: torch.device) -> float | None:
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _cache_bytes(device: torch.device) -> float:
    """The last-level cache: the GPU's L2, or the CPU's highest-level cache (Linux sysfs); 0 if unknown."""
    if device.type == "cuda":
        return float(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
    best = (0, 0.0)
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            size = float(text.rstrip("KMG")) * scale
        except ValueError:
            continue
        best = max(best, (level, size))
    return best[1]


# ----------------------------------------------------------------------------------- measurement
def machine_key(device: torch.device, name: str, dtype: str) -> str:
    """What a cached measurement is valid for."""
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    return f"{platform.node()}|{name}|{device.type}|{dtype}|threads={threads}|torch={torch.__version__}"


def _cached_measurements(device: torch.device, name: str, dtype: str, remeasure: bool = False) -> dict[str, float]:
    path = cache_dir() / CACHE_FILE
    key = machine_key(device, name, dtype)
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    if not isinstance(stored, dict):
        stored = {}
    found = stored.get(key)
    valid = isinstance(found, dict) and {"peak_flops", "bandwidth", "operator_seconds", "matmul_size"} <= set(found)
    if valid and not remeasure:
        return found
    fresh = measure(device, dtype)
    if valid:
        if found["peak_flops"] > fresh["peak_flops"]:
            fresh["peak_flops"], fresh["matmul_size"] = found["peak_flops"], found["matmul_size"]
        fresh["bandwidth"] = max(fresh["bandwidth"], found["bandwidth"])
        fresh["operator_seconds"] = min(fresh["operator_seconds"], found["operator_seconds"])
    stored[key] = found = fresh
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(stored, indent=1, sort_keys=True))
        os.replace(temporary, path)
    except OSError:
        pass  # an unwritable cache only costs a new measurement next time
    return found


def measure(device: torch.device, dtype: str) -> dict[str, float]:
    """Peak matmul FLOP/s, copy bandwidth and seconds per trivial operator on `device` (about a second)."""
    peak, size = peak_matmul_flops(device, TORCH_DTYPES[dtype])
    return {
        "peak_flops": peak,
        "matmul_size": size,
        "bandwidth": copy_bandwidth(device),
        "operator_seconds": operator_seconds(device),
    }


def _best_seconds(device: torch.device, work: Callable[[], Any], repeats: int, warmup: int = 2) -> float:
    """The fastest of `repeats` runs of `work`, synchronized on CUDA."""
    for _ in range(warmup):
        work()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_matmul_flops(device: torch.device, dtype: torch.dtype) -> tuple[float, int]:
    """Dense FLOP/s of the best of a few n^3 matmuls (2 n^3 FLOPs each), and n: timed at the smallest
    size, then at the largest one expected to take at most `MATMUL_SECONDS` (slow dtypes stay small)."""
    sizes = (1024, 2048, 4096, 8192) if device.type == "cuda" else (256, 512, 1024)
    best: tuple[float, int] = (0.0, sizes[0])
    seconds = 0.0
    for size in sizes:
        if size > sizes[0] and seconds * (size / best[1]) ** 3 > MATMUL_SECONDS:
            continue
        generator = torch.Generator(device=device.type).manual_seed(0)
        a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
        b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
        measured = _best_seconds(device, lambda a=a, b=b: torch.mm(a, b), repeats=3, warmup=1)
        rate = 2 * size**3 / measured
        if rate >= best[0]:
            best, seconds = (rate, size), measured
    return best


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s read plus written by the best of a few large tensor copies."""
    elements = (256 if device.type == "cuda" else 16) * 2**20
    source = torch.ones(elements, device=device)
    target = torch.empty_like(source)
    return 2 * source.nbytes / _best_seconds(device, lambda: target.copy_(source), repeats=5)


def operator_seconds(device: torch.device, depth: int = 32) -> float:
    """Seconds per dispatched operator at trivial size, autograd included: a chain of tiny multiply-adds
    and its backward, timed, over the operators it dispatches (counted the same way as the census)."""
    weight = torch.ones(1, device=device, requires_grad=True)
    inputs = torch.ones(1, device=device)

    def chain() -> None:
        value = inputs
        for _ in range(depth):
            value = value * weight + 1.0
        value.sum().backward()
        weight.grad = None

    counter = OperatorCounter()
    with counter:
        chain()
    runs = [_best_seconds(device, chain, repeats=5, warmup=1) for _ in range(3)]
    return statistics.median(runs) / max(counter.operators, 1)
