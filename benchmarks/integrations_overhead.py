"""The adapters' cost per step: a Lightning fit and a Hugging Face Trainer run with the algospeed callback
(no methods, and with EMA) against the same loop without it, in interleaved rounds in one process.

    .venv/bin/python benchmarks/integrations_overhead.py [--rounds 7] [--steps 200]

Each figure is the median over rounds of (the run's wall time / steps) minus the plain loop's in the same
round: the loop's start-up is in every variant alike and cancels, and the machine's drift hits all of them.
On a shared, loaded machine the figures are noisy: read them against the spread printed beside them.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel, PrinterCallback, Trainer, TrainingArguments
from transformers.utils import logging as hf_logging

from algospeed.integrations.lightning import AlgospeedCallback as LightningCallback
from algospeed.integrations.transformers import AlgospeedCallback as HfCallback

warnings.filterwarnings("ignore")
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
FEATURES, BATCH = 32, 32


def body() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 64), nn.ReLU(), nn.Linear(64, 4))


def dataset(samples: int) -> torch.utils.data.TensorDataset:
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(samples, FEATURES, generator=generator)
    return torch.utils.data.TensorDataset(inputs, torch.randint(0, 4, (samples,), generator=generator))


class Module(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.body = body()

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        inputs, targets = batch
        return F.cross_entropy(self.body(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def lightning_run(steps: int, methods: str | None) -> float:
    callbacks = [] if methods is None else [LightningCallback(methods)]
    trainer = pl.Trainer(
        max_steps=steps,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    data = torch.utils.data.DataLoader(dataset(steps * BATCH), batch_size=BATCH)
    started = time.perf_counter()
    trainer.fit(Module(), data)
    return time.perf_counter() - started


class TinyConfig(PretrainedConfig):
    model_type = "algospeed-benchmark"


class TinyModel(PreTrainedModel):
    config_class = TinyConfig

    def __init__(self, config: TinyConfig) -> None:
        super().__init__(config)
        self.body = body()

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.body(inputs), labels)}


class Rows(torch.utils.data.Dataset):
    def __init__(self, samples: int) -> None:
        self.data = dataset(samples)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        inputs, labels = self.data[index]
        return {"inputs": inputs, "labels": labels}


def hf_run(steps: int, methods: str | None) -> float:
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArguments(
            output_dir=folder,
            max_steps=steps,
            per_device_train_batch_size=BATCH,
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            use_cpu=True,
            disable_tqdm=True,
            learning_rate=0.05,
        )
        callbacks = [] if methods is None else [HfCallback(methods)]
        trainer = Trainer(
            model=TinyModel(TinyConfig()), args=args, train_dataset=Rows(steps * BATCH), callbacks=callbacks
        )
        trainer.remove_callback(PrinterCallback)  # its final summary line
        started = time.perf_counter()
        trainer.train()
        return time.perf_counter() - started


def measure(run: Callable[[int, str | None], float], steps: int, rounds: int) -> dict[str, list[float]]:
    """Microseconds per step of each variant, round by round (variants interleaved within a round)."""
    variants: dict[str, str | None] = {"plain": None, "callback": "", "callback+ema": "ema"}
    run(steps, None)  # warm-up: imports, first-call costs
    per_step: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, methods in variants.items():
            per_step[name].append(run(steps, methods) / steps * 1e6)
    return per_step


def report(loop: str, per_step: dict[str, list[float]]) -> None:
    plain = statistics.median(per_step["plain"])
    print(f"{loop}: plain loop {plain:.0f} us/step (rounds {min(per_step['plain']):.0f}-{max(per_step['plain']):.0f})")
    for name in ("callback", "callback+ema"):
        overheads = [value - base for value, base in zip(per_step[name], per_step["plain"], strict=True)]
        median = statistics.median(overheads)
        print(
            f"  {name:13s} {median:+.0f} us/step ({100 * median / plain:+.1f}%), "
            f"per-round differences {min(overheads):.0f} to {max(overheads):.0f} us"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    options = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"{options.steps} steps per run, {options.rounds} interleaved rounds, one thread, load {os.getloadavg()[0]:.1f}"
    )
    report("Lightning", measure(lightning_run, options.steps, options.rounds))
    report("Hugging Face Trainer", measure(hf_run, options.steps, options.rounds))


if __name__ == "__main__":
    main()
