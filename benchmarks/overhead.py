"""Trainer overhead against a hand-written PyTorch loop, and the in-memory loader's throughput.

Both loops train the same model from the same initial weights on the same data with the same
optimizer and learning-rate schedule; rounds alternate which goes first, and the figure is the
median over rounds of the per-step time ratio (goal: <= 1.01). The loader figure is samples/s of
`InMemoryLoader` against `DataLoader(TensorDataset)` over the same tensors (goal: >= 10x).

    python benchmarks/overhead.py [--rounds 5] [--steps 150]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from algospeed.core.data import InMemoryLoader
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.core.trainer import Trainer
from algospeed.workloads.registry import get_workload


def hand_loop(model, inputs, targets, batch_size, make_optimizer, steps: int) -> float:
    """A typical hand-written loop: shuffled index batches, LambdaLR schedule, no logging."""
    optimizer = make_optimizer(list(model.parameters()))
    schedule = WarmupLinearDecay()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / steps))
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    done = 0
    while done < steps:
        order = torch.randperm(len(inputs), generator=generator)
        for begin in range(0, len(inputs) - batch_size + 1, batch_size):
            index = order[begin : begin + batch_size]
            loss = F.cross_entropy(model(inputs[index]), targets[index])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def trainer_loop(model, inputs, targets, batch_size, make_optimizer, steps: int) -> float:
    loader = InMemoryLoader(inputs, targets, batch_size, seed=0)
    trainer = Trainer(model, loader, optimizer=make_optimizer, budget=f"{steps}ba", device="cpu")
    start = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - start) / steps


def overhead(name: str, rounds: int, steps: int) -> None:
    workload = get_workload(name)
    options = workload.resolve_options({})
    splits = workload.load(options)
    torch.manual_seed(0)
    initial = workload.model(options, 10)
    arms = {"hand": hand_loop, "trainer": trainer_loop}
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for round_index in range(rounds + 1):  # round 0 warms up caches and the allocator
        order = list(arms) if round_index % 2 else list(reversed(arms))
        for arm in order:
            per_step = arms[arm](
                copy.deepcopy(initial),
                splits.train_inputs,
                splits.train_targets,
                workload.batch_size,
                workload.make_optimizer(),
                steps,
            )
            if round_index:
                times[arm].append(per_step)
    ratios = [t / h for t, h in zip(times["trainer"], times["hand"], strict=True)]
    print(
        f"{name:8s} per-step  hand {statistics.median(times['hand']) * 1e3:7.2f} ms  "
        f"trainer {statistics.median(times['trainer']) * 1e3:7.2f} ms  "
        f"ratio median {statistics.median(ratios):.4f}  (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
    )


def loader_throughput(rounds: int) -> None:
    workload = get_workload("mnist5k")
    splits = workload.load({})
    inputs, targets = splits.train_inputs, splits.train_targets
    ours = InMemoryLoader(inputs, targets, 128, seed=0)
    theirs = DataLoader(TensorDataset(inputs, targets), batch_size=128, shuffle=True, drop_last=True)

    def samples_per_second(targets_of_batches) -> float:
        start, count = time.perf_counter(), 0
        for batch_targets in targets_of_batches:
            count += len(batch_targets)
        return count / (time.perf_counter() - start)

    rates: dict[str, list[float]] = {"in-memory": [], "DataLoader": []}
    for epoch in range(rounds):
        rates["in-memory"].append(samples_per_second(batch.targets for batch in ours.iter_epoch(epoch)))
        rates["DataLoader"].append(samples_per_second(batch_targets for _, batch_targets in theirs))
    ours_rate, theirs_rate = statistics.median(rates["in-memory"]), statistics.median(rates["DataLoader"])
    print(
        f"loader   mnist5k batches of 128: in-memory {ours_rate:,.0f} samples/s  "
        f"DataLoader(TensorDataset) {theirs_rate:,.0f} samples/s  ratio {ours_rate / theirs_rate:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    overhead("mnist1d", args.rounds, args.steps)
    overhead("mnist5k", args.rounds, max(10, args.steps // 3))
    loader_throughput(args.rounds)


if __name__ == "__main__":
    main()
