"""Training tokens per second of the shakespeare-char baseline and of each speedrun architecture method alone.

The architecture methods change only the model, so what they cost is the training step. Each arm is built
as a run builds it (`build_trainer`: the workload's default model, optimizer and batch, the method's
surgery), and then the arms take training steps (forward, loss, backward, optimizer step) on the same batch
in turn, one step each per round, for `--rounds` rounds after `--warmup` steps each: interleaving at the
granularity of one step cancels the load that other processes put on a shared machine far better than
whole runs can. Printed per arm: tokens/s from the median step time, the median of the per-round ratios to
the baseline's step in the same round (with the spread of the middle half of them), and the parameters.
Whole training runs (data loading and events included) are `lm_schedules.py --arms baseline,rotary,...`.

    nice -n 10 env OMP_NUM_THREADS=1 python benchmarks/lm_architecture.py [--rounds 40] [--arms rotary,...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from algospeed.run_spec import RunSpec, build_trainer

ARMS = (
    "baseline",
    "rotary",
    "alibi",
    "qk_norm",
    "relu_squared",
    "swiglu",
    "logit_softcap",
    "untied_head",
    "value_embeddings",
    "unet_skips",
)


@dataclass
class Arm:
    """One arm's model and optimizer, ready to step, and the seconds of its timed steps."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    seconds: list[float]

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> float:
        """One training step on the batch; its seconds."""
        start = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(inputs)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
        self.optimizer.step()
        return time.perf_counter() - start


def build(name: str) -> tuple[Arm, torch.Tensor, torch.Tensor]:
    """The arm as a shakespeare-char run builds it, and the run's first training batch."""
    spec = RunSpec(workload="shakespeare-char", methods="" if name == "baseline" else name, device="cpu")
    state = build_trainer(spec).state
    batch = next(state.train_data.iter_epoch(0))
    state.model.train()
    return Arm(name, state.model, state.optimizer, []), batch.inputs, batch.targets


def quartile_spread(values: list[float]) -> float:
    """The width of the middle half of `values` (upper minus lower quartile)."""
    lower, _, upper = statistics.quantiles(values, n=4)
    return upper - lower


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated; '+' joins methods in one arm")
    args = parser.parse_args()
    names = [name.replace("+", ",") for name in args.arms.split(",") if name]
    if "baseline" not in names:
        names.insert(0, "baseline")
    built = [build(name) for name in names]
    arms = [arm for arm, _, _ in built]
    _, inputs, targets = built[0]
    for arm in arms:
        for _ in range(args.warmup):
            arm.step(inputs, targets)
    for round_index in range(args.rounds):
        shift = round_index % len(arms)  # each arm takes every place in the order equally often
        for arm in arms[shift:] + arms[:shift]:
            arm.seconds.append(arm.step(inputs, targets))
    tokens = inputs.numel()
    shape = tuple(inputs.shape)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {shape}, {args.rounds} rounds")
    print(f"{'arm':40s} {'tokens/s':>9s} {'x base':>7s} {'IQR':>6s} {'params':>8s}")
    base = arms[0].seconds
    for arm in arms:
        ratios = [b / s for s, b in zip(arm.seconds, base, strict=True)]
        params = sum(p.numel() for p in arm.model.parameters())
        print(
            f"{arm.name:40s} {tokens / statistics.median(arm.seconds):9.0f} {statistics.median(ratios):7.3f} "
            f"{quartile_spread(ratios):6.3f} {params:8d}"
        )


if __name__ == "__main__":
    main()
