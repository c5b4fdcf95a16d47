"""The profiler's overhead: the trainer with and without it on the same run (goal: <= 2% on mnist1d).

Three arms train the same model from the same initial weights on the same data: no profiler; the
profiler timing every step (after one warmup step, which takes the operator census); and the
default schedule (skip 5, warm up 2, measure 50 steps, then off). Rounds rotate which arm goes
first, and each figure is the median over rounds of the arm's per-step time over the plain
trainer's. Only `fit()` is timed: the report (and the one-off machine measurement) comes after.

    python benchmarks/profile_overhead.py [--rounds 5] [--steps 150] [--workload mnist1d] [--threads N]

On a shared machine, `--threads 1` and more rounds steady the figures.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from algospeed.core.data import InMemoryLoader
from algospeed.core.trainer import Trainer
from algospeed.profile.profiler import Profiler, _Step
from algospeed.profile.schedule import Action, ProfileSchedule
from algospeed.workloads.registry import get_workload


def run(model, inputs, targets, batch_size, make_optimizer, steps: int, schedule: ProfileSchedule | None) -> float:
    loader = InMemoryLoader(inputs, targets, batch_size, seed=0)
    trainer = Trainer(model, loader, optimizer=make_optimizer, budget=f"{steps}ba", device="cpu")
    profiler = Profiler(schedule).attach(trainer) if schedule is not None else None
    start = time.perf_counter()
    trainer.fit()
    seconds = (time.perf_counter() - start) / steps
    if profiler is not None:
        profiler.finish()
        assert profiler.measured.steps, "the profiler measured nothing"
    return seconds


def instrumentation_cost(model, inputs, targets, batch_size, make_optimizer) -> tuple[float, float]:
    """Phase boundaries per profiled step, and seconds per boundary (a timed handler wrapping a no-op,
    which is what each boundary costs), measured in a tight loop: a noise-free estimate of the cost."""
    loader = InMemoryLoader(inputs, targets, batch_size, seed=0)
    trainer = Trainer(model, loader, optimizer=make_optimizer, budget="6ba", device="cpu")
    profiler = Profiler(ProfileSchedule(skip_first=1, warmup=1, active=4)).attach(trainer)
    switches = 0
    switch = profiler._switch

    def counting(phase: str) -> None:
        nonlocal switches
        switches += 1
        switch(phase)

    profiler._switch = counting  # type: ignore[method-assign]
    trainer.fit()
    per_step = switches / 5  # the warmup step and the four measured ones
    profiler._switch = switch  # type: ignore[method-assign]
    now = time.perf_counter()  # an open record, so that each switch does its full work
    profiler._record = _Step(index=0, action=Action.ACTIVE, phase="other", start=now, last=now)
    timed = profiler._timed("method:noop", lambda state: None)
    calls = 200_000
    start = time.perf_counter()
    for _ in range(calls):
        timed(trainer.state)
    return per_step, (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--workload", default="mnist1d")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    workload = get_workload(args.workload)
    options = workload.resolve_options({})
    splits = workload.load(options)
    torch.manual_seed(0)
    initial = workload.model(options, 10)
    arms: dict[str, ProfileSchedule | None] = {
        "plain": None,
        "every step": ProfileSchedule(skip_first=0, warmup=1, active=args.steps),
        "default window": ProfileSchedule(),
    }
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workload}, {args.steps} steps per run")
    for round_index in range(args.rounds + 1):  # round 0 warms up caches and the allocator
        names = list(arms)
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for arm in order:
            per_step = run(
                copy.deepcopy(initial),
                splits.train_inputs,
                splits.train_targets,
                workload.batch_size,
                workload.make_optimizer(),
                args.steps,
                arms[arm],
            )
            if round_index:
                times[arm].append(per_step)
    plain = times["plain"]
    print(f"plain trainer      {statistics.median(plain) * 1e3:8.3f} ms/step")
    boundaries, each = instrumentation_cost(
        copy.deepcopy(initial),
        splits.train_inputs,
        splits.train_targets,
        workload.batch_size,
        workload.make_optimizer(),
    )
    cost = boundaries * each
    print(
        f"instrumentation    {boundaries:.0f} boundaries/step x {each * 1e6:.2f} us = {cost * 1e6:.1f} us/step "
        f"= {100 * cost / statistics.median(plain):.3f}% of a plain step (tight-loop estimate)"
    )
    for arm in ("every step", "default window"):
        ratios = [t / p for t, p in zip(times[arm], plain, strict=True)]
        print(
            f"profiler, {arm:14s} {statistics.median(times[arm]) * 1e3:8.3f} ms/step  "
            f"ratio median {statistics.median(ratios):.4f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
        )


if __name__ == "__main__":
    main()
