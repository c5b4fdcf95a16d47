"""Calibrate the reference cost once per study: seconds per FLOP and per-step overhead on this machine.

A study charges each point `per_step * steps + per_flop * flops` in the `reference` currency, so
its numbers do not move with the noise of a shared machine; the calibration is stored with the
study and reused by every later report.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from algospeed.profile.peak import peak_matmul_flops
from algospeed.study.records import ReferenceCost

TINY_STEPS = 50
REPEATS = 5


def calibrate_reference_cost(threads: int, device: torch.device | None = None) -> ReferenceCost:
    """Seconds per FLOP from the device's measured dense fp32 matmul peak, and the fixed cost of a
    near-empty training step, both with `threads` threads (what each study worker uses)."""
    device = device or torch.device("cpu")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peak, _ = peak_matmul_flops(device, torch.float32)
        model = nn.Linear(4, 2).to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        inputs = torch.randn(2, 4, device=device)
        targets = torch.zeros(2, dtype=torch.long, device=device)

        def tiny_steps() -> None:
            for _ in range(TINY_STEPS):
                nn.functional.cross_entropy(model(inputs), targets).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        timings = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            tiny_steps()
            timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return ReferenceCost(per_step=statistics.median(timings) / TINY_STEPS, per_flop=1.0 / peak)
