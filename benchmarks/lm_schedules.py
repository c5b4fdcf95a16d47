"""Training tokens per second of the shakespeare-char baseline and of each sequence schedule method.

Each arm trains `--tokens` tokens (its whole schedule compressed into them, so the figure is the mean over
the schedule) with no evaluation; the arms alternate for `--rounds` rounds. A step is timed from its forward
to its end (optimizer step included); the first step of each kind (shape, model version, method tag) is left
out, since the trainer counts its FLOPs then, which a real run pays once over thousands of steps. Printed per
arm: the median tokens/s, its ratio to the baseline (the median of the per-round ratios, which cancels a
machine's slow drift), counted FLOPs per token and steps.

    python benchmarks/lm_schedules.py [--rounds 3] [--tokens 2e5] [--arms baseline,token_dropping,...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from algospeed.core.callback import Callback
from algospeed.core.flops import shape_signature
from algospeed.core.state import State
from algospeed.run_spec import RunSpec, build_trainer

ARMS = (
    "baseline",
    "sequence_length_warmup",
    "sliding_window",
    "token_dropping",
    "progressive_layer_drop",
    "depth_stacking",
    "batch_size_warmup",
)


@dataclass(frozen=True)
class Throughput:
    """One run's training tokens per second, FLOPs per token and steps."""

    tokens_per_second: float
    flops_per_token: float
    steps: int


class StepTimer(Callback):
    """Seconds and tokens of the training steps whose kind was seen before (their FLOPs are not counted again)."""

    def __init__(self) -> None:
        self.seen: set[Hashable] = set()
        self.seconds = 0.0
        self.tokens = 0
        self._start = 0.0
        self._kind: Hashable = None

    def on_before_forward(self, state: State) -> None:
        self._kind = (shape_signature(state.batch.inputs), state.model_version, state.step_tag)
        self._start = time.perf_counter()

    def on_batch_end(self, state: State) -> None:
        if self._kind in self.seen:
            self.seconds += time.perf_counter() - self._start
            self.tokens += state.batch.tokens
        self.seen.add(self._kind)


def run(methods: str, tokens: float) -> Throughput:
    """Train shakespeare-char for `tokens` tokens with `methods` and read the clock."""
    spec = RunSpec(
        workload="shakespeare-char",
        budget=f"{tokens:g}tok",
        eval_interval=f"{tokens:g}tok",
        methods="" if methods == "baseline" else methods,
        options={"eval_tokens": 2048},  # the one evaluation at the end is not timed: keep it short
        device="cpu",
    )
    timer = StepTimer()
    final = build_trainer(spec, callbacks=[timer]).fit().final
    speed = timer.tokens / timer.seconds if timer.seconds else float("nan")  # nan: no step of a kind seen twice
    return Throughput(speed, final.flops / final.tokens, final.step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=float, default=2e5)
    parser.add_argument("--arms", default=",".join(ARMS), help="comma-separated; '+' joins methods in one arm")
    args = parser.parse_args()
    arms = [arm.replace("+", ",") for arm in args.arms.split(",") if arm]
    if "baseline" not in arms:
        arms.insert(0, "baseline")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.tokens:g} tokens per run")
    results: dict[str, list[Throughput]] = {arm: [] for arm in arms}
    for _ in range(args.rounds):
        for arm in arms:
            results[arm].append(run(arm, args.tokens))
    base = results["baseline"]
    print(f"{'arm':60s} {'tokens/s':>9s} {'x base':>7s} {'spread':>7s} {'flop/tok':>9s} {'steps':>6s}")
    for arm, runs in results.items():
        speeds = [r.tokens_per_second for r in runs]
        ratios = [r.tokens_per_second / b.tokens_per_second for r, b in zip(runs, base, strict=True)]
        print(
            f"{arm:60s} {statistics.median(speeds):9.0f} {statistics.median(ratios):7.2f} "
            f"{max(ratios) - min(ratios):7.2f} {statistics.median(r.flops_per_token for r in runs):9.3g} "
            f"{runs[0].steps:6d}"
        )


if __name__ == "__main__":
    main()
