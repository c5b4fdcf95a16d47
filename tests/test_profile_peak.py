"""Peaks for MFU: the datasheet table for known GPUs, and measurements cached per machine."""

from __future__ import annotations

import pytest
import torch

from algospeed.errors import UsageError
from algospeed.profile import peak


@pytest.mark.parametrize(
    ("name", "bf16_tflops", "terabytes"),
    [
        ("NVIDIA H100 80GB HBM3", 989.4, 3.35),
        ("NVIDIA H100 PCIe", 756.0, 2.0),
        ("NVIDIA H200", 989.4, 4.8),
        ("NVIDIA A100-SXM4-80GB", 312.0, 2.039),
        ("NVIDIA A100-SXM4-40GB", 312.0, 1.555),
        ("NVIDIA L4", 121.0, 0.3),
        ("NVIDIA A10", 125.0, 0.6),
    ],
)
def test_known_gpus_have_dense_datasheet_peaks(name: str, bf16_tflops: float, terabytes: float) -> None:
    sheet = peak.datasheet(name)
    assert sheet is not None
    assert sheet.tflops["bf16"] == bf16_tflops and sheet.terabytes_per_second == terabytes


def test_unknown_gpus_have_none() -> None:
    assert peak.datasheet("NVIDIA A10G") is None and peak.datasheet("AMD EPYC") is None


def fake_gpu(monkeypatch, name: str, tf32: bool = False) -> torch.device:
    monkeypatch.setattr(peak, "device_name", lambda device: name)
    monkeypatch.setattr(peak, "_memory_capacity", lambda device: 80e9)
    monkeypatch.setattr(peak, "_cache_bytes", lambda device: 50 * 2**20)
    monkeypatch.setattr(peak, "_tf32_allowed", lambda: tf32)
    monkeypatch.setattr(
        peak,
        "_cached_measurements",
        lambda device, name, dtype, remeasure=False: {
            "peak_flops": 1e14,
            "matmul_size": 8192,
            "bandwidth": 1e12,
            "operator_seconds": 8e-6,
        },
    )
    return torch.device("cuda")


def test_a_known_gpu_uses_its_datasheet_unless_measured_is_asked_for(monkeypatch) -> None:
    device = fake_gpu(monkeypatch, "NVIDIA H100 80GB HBM3")
    sheet = peak.machine(device, "bf16")
    assert sheet.peak_flops == pytest.approx(989.4e12) and sheet.peak_source.startswith("datasheet")
    assert sheet.balance == pytest.approx(989.4 / 3.35)
    assert peak.machine(device, "fp32").peak_flops == pytest.approx(66.9e12)
    assert peak.machine(device, "bf16", "measured").peak_flops == 1e14


def test_fp32_matmuls_use_the_tf32_peak_when_torch_allows_tf32(monkeypatch) -> None:
    device = fake_gpu(monkeypatch, "NVIDIA A100-SXM4-80GB", tf32=True)
    assert peak.machine(device, "fp32").peak_flops == pytest.approx(156e12)


def test_bad_peak_requests_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="no datasheet peak for a CPU"):
        peak.machine(torch.device("cpu"), "fp32", "datasheet")
    with pytest.raises(UsageError, match="unknown peak source"):
        peak.machine(torch.device("cpu"), "fp32", "guess")
    with pytest.raises(UsageError, match="no peak for dtype"):
        peak.machine(torch.device("cpu"), "int4")


def test_measurements_are_cached_and_remeasuring_keeps_the_best(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ALGOSPEED_CACHE", str(tmp_path))
    results = iter(
        [
            {"peak_flops": 5e10, "matmul_size": 1024, "bandwidth": 8e9, "operator_seconds": 6e-6},
            {"peak_flops": 2e10, "matmul_size": 512, "bandwidth": 9e9, "operator_seconds": 9e-6},
        ]
    )
    monkeypatch.setattr(peak, "measure", lambda device, dtype: next(results))
    cpu = torch.device("cpu")
    first = peak.machine(cpu, "fp32")
    assert first.peak_flops == 5e10 and first.peak_source.startswith("measured")
    assert peak.machine(cpu, "fp32") == first  # cached: measure is not called again
    again = peak.machine(cpu, "fp32", remeasure=True)
    assert (again.peak_flops, again.bandwidth, again.operator_seconds) == (5e10, 9e9, 6e-6)
    assert (tmp_path / peak.CACHE_FILE).is_file()
