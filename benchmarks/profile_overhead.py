"""The profiler's overhead: the trainer, and a hand-written loop, with and without it on the same run
(goal: <= 2% on mnist1d).

Each group has three arms that train the same model from the same initial weights on the same data:
no profiler; the profiler timing every step (after one warmup step, which takes the operator census
and, in the hand loop, counts the FLOPs); and the default schedule (skip 5, warm up 2, measure 50
steps, then off). The hand loop's profiled arms mark five phases per step with `profiler.phase` and
end it with `profiler.step`; its plain arm is the same loop without them. Rounds rotate which arm goes
first, and each figure is the median over rounds of the arm's per-step time (over the whole run)
over its group's plain arm in the same round; for the hand loop also of its median step, which
leaves out the one-off warmup step and load spikes. Only training is timed: the report (and the
one-off machine measurement) comes after.

    python benchmarks/profile_overhead.py [--rounds 5] [--steps 150] [--workload mnist1d] [--threads N]

On a shared machine, `--threads 1` and more rounds steady the figures.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import time

import torch
import torch.nn.functional as F

from algospeed.core.data import InMemoryLoader
from algospeed.core.trainer import Trainer
from algospeed.profile.profiler import Profiler, _Step
from algospeed.profile.schedule import Action, ProfileSchedule
from algospeed.workloads.registry import get_workload


def run(
    model, inputs, targets, batch_size, make_optimizer, steps: int, schedule: ProfileSchedule | None
) -> list[float]:
    loader = InMemoryLoader(inputs, targets, batch_size, seed=0)
    trainer = Trainer(model, loader, optimizer=make_optimizer, budget=f"{steps}ba", device="cpu")
    profiler = Profiler(schedule).attach(trainer) if schedule is not None else None
    start = time.perf_counter()
    trainer.fit()
    seconds = (time.perf_counter() - start) / steps
    if profiler is not None:
        profiler.finish()
        assert profiler.measured.steps, "the profiler measured nothing"
    return [seconds]  # the run's mean: the trainer's steps are not timed one by one


def hand_loop(
    model, inputs, targets, batch_size, make_optimizer, steps: int, schedule: ProfileSchedule | None
) -> list[float]:
    """Seconds of each step of a plain PyTorch loop over in-memory batches, marked for the profiler or not."""
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad])
    loader = InMemoryLoader(inputs, targets, batch_size, seed=0)
    epochs = itertools.chain.from_iterable(loader.iter_epoch(epoch) for epoch in itertools.count())
    batches = list(itertools.islice(epochs, steps))  # drawn before the clock starts, in both arms
    model.train()
    clock = time.perf_counter
    ends = [clock()]
    if schedule is None:
        for batch in batches:
            x, y = batch.inputs, batch.targets
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            ends.append(clock())
        return [b - a for a, b in itertools.pairwise(ends)]
    profiler = Profiler(schedule).attach_loop(model)
    for batch in batches:
        with profiler.phase("h2d"):
            x, y = batch.inputs, batch.targets
        with profiler.phase("forward"):
            outputs = model(x)
        with profiler.phase("loss"):
            loss = F.cross_entropy(outputs, y)
        with profiler.phase("backward"):
            loss.backward()
        with profiler.phase("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        profiler.step(batch)
        ends.append(clock())
    profiler.finish()
    assert profiler.measured.steps, "the profiler measured nothing"
    return [b - a for a, b in itertools.pairwise(ends)]


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


def hand_loop_cost(model, calls: int = 20_000) -> float:
    """Seconds per step of what a profiled hand loop adds (five phase contexts and `step()`, with every
    step measured), in a tight loop around no work: a noise-free estimate of the marks' cost."""
    profiler = Profiler(ProfileSchedule(skip_first=0, warmup=1, active=calls + 1), census=False).attach_loop(model)
    profiler.step(samples=1)  # past the warmup step, which counts FLOPs
    phases = [profiler.phase(name) for name in ("h2d", "forward", "loss", "backward", "optimizer")]
    start = time.perf_counter()
    for _ in range(calls):
        for phase in phases:
            with phase:
                pass
        profiler.step(samples=1)
    seconds = (time.perf_counter() - start) / calls
    profiler.finish()
    return seconds


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
    groups = {"trainer": run, "hand loop": hand_loop}
    times: dict[tuple[str, str], list[list[float]]] = {(group, arm): [] for group in groups for arm in arms}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workload}, {args.steps} steps per run")
    for round_index in range(args.rounds + 1):  # round 0 warms up caches and the allocator
        names = list(arms)
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for group, train in groups.items():
            for arm in order:
                steps = train(
                    copy.deepcopy(initial),
                    splits.train_inputs,
                    splits.train_targets,
                    workload.batch_size,
                    workload.make_optimizer(),
                    args.steps,
                    arms[arm],
                )
                if round_index:
                    times[group, arm].append(steps)
    plain = [statistics.fmean(steps) for steps in times["trainer", "plain"]]
    boundaries, each = instrumentation_cost(
        copy.deepcopy(initial),
        splits.train_inputs,
        splits.train_targets,
        workload.batch_size,
        workload.make_optimizer(),
    )
    cost = boundaries * each
    print(
        f"trainer instrumentation: {boundaries:.0f} boundaries/step x {each * 1e6:.2f} us = {cost * 1e6:.1f} us/step "
        f"= {100 * cost / statistics.median(plain):.3f}% of a plain step (tight-loop estimate)"
    )
    marked = hand_loop_cost(copy.deepcopy(initial))
    base = statistics.median(statistics.fmean(steps) for steps in times["hand loop", "plain"])
    print(
        f"hand-loop marks: 5 phases and a step() = {marked * 1e6:.1f} us/step = {100 * marked / base:.3f}% "
        "of a plain step (tight-loop estimate)"
    )
    figures = {"run mean": statistics.fmean, "median step": statistics.median}
    for group in groups:
        for figure, summary in figures.items():
            if group == "trainer" and figure == "median step":
                continue
            per_run = {arm: [summary(steps) for steps in times[group, arm]] for arm in arms}
            label = f"{group} ({figure})"
            print(f"{label + ', plain':48s} {statistics.median(per_run['plain']) * 1e3:8.3f} ms/step")
            for arm in ("every step", "default window"):
                ratios = [t / p for t, p in zip(per_run[arm], per_run["plain"], strict=True)]
                print(
                    f"{f'{label}, profiler {arm}':48s} {statistics.median(per_run[arm]) * 1e3:8.3f} ms/step  "
                    f"ratio median {statistics.median(ratios):.4f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
                )


if __name__ == "__main__":
    main()
