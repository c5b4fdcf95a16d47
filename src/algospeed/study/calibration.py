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

from algospeed.study.records import ReferenceCost

MATMUL_SIZE = 512
REPEATS = 5


def _median_seconds(work: object, repeats: int = REPEATS) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def calibrate_reference_cost(threads: int) -> ReferenceCost:
    """Seconds per FLOP from a dense fp32 matmul, and the fixed cost of a near-empty training step,
    both with `threads` threads (what each study worker uses)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(MATMUL_SIZE, MATMUL_SIZE), torch.randn(MATMUL_SIZE, MATMUL_SIZE)
        flops = 2 * MATMUL_SIZE**3 * 8
        per_flop = _median_seconds(lambda: [a @ b for _ in range(8)]) / flops
        model = nn.Linear(4, 2)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        inputs, targets = torch.randn(2, 4), torch.zeros(2, dtype=torch.long)

        def tiny_steps() -> None:
            for _ in range(50):
                nn.functional.cross_entropy(model(inputs), targets).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

        per_step = _median_seconds(tiny_steps) / 50
    finally:
        torch.set_num_threads(previous)
    return ReferenceCost(per_step=per_step, per_flop=per_flop)
