"""Stochastic weight averaging: average the weights visited late in training and evaluate the average."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from algospeed.core.batch import Batch
from algospeed.core.callback import Method
from algospeed.core.data import DatasetLoader, Loader
from algospeed.core.state import Schedule, State
from algospeed.methods.optimization.ema import averaged_copy, ema_update
from algospeed.methods.registry import register
from algospeed.taxonomy.axes import How, Place, What, When, Where

LR_MODES = ("constant", "cyclic", "keep")
EPSILON = 1e-6


def swa_update(average: nn.Module, model: nn.Module, count: int) -> None:
    """Fold `model` into `average`, the mean of `count` earlier snapshots, so that it becomes the mean
    of `count + 1` (parameters and floating-point buffers; integer buffers are copied)."""
    if count < 0:
        raise ValueError(f"count must be at least 0, got {count}")
    ema_update(average, model, count / (count + 1))


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


def recompute_batchnorm(model: nn.Module, batches: Iterable[Any], device: torch.device | str | None = None) -> None:
    """Reset the batch-norm statistics of `model` and recompute them as exact averages over `batches`
    (`Batch`es, inputs, or (inputs, targets) pairs) in one forward pass; weights averaged from several
    points do not match any of those points' running statistics."""
    update_bn((b.inputs if isinstance(b, Batch) else b for b in batches), model, device=device)


def training_batches(loader: Loader) -> Iterable[Any]:
    """One pass over the training data for a statistics pass, without disturbing the epoch in flight:
    a dataset loader gets a fresh single-process loader (its workers serve the training epoch)."""
    if isinstance(loader, DatasetLoader):
        loader = loader.with_dataset(loader.dataset, shuffle=False, drop_last=False, num_workers=0)
    return loader.iter_epoch(0)


@dataclass(frozen=True)
class SWASchedule:
    """The base schedule until `start`, then the SWA learning rate: `constant` at `swa_lr` (default:
    the base schedule's value at `start`), `cyclic` (each `interval` of progress falls linearly from
    `swa_lr` to `swa_lr_min`, so snapshots land on the lowest rate), or `keep` (the base schedule)."""

    base: Schedule
    start: float
    interval: float
    lr_mode: str = "constant"
    swa_lr: float | None = None
    swa_lr_min: float = 0.0

    def __call__(self, progress: float) -> float:
        if progress < self.start or self.lr_mode == "keep":
            return self.base(progress)
        high = self.base(self.start) if self.swa_lr is None else self.swa_lr
        if self.lr_mode == "constant":
            return high
        phase = (progress - self.start) / self.interval
        within = phase - math.floor(phase + EPSILON)
        return high + max(within, 0.0) * (self.swa_lr_min - high)


@register("swa")
class SWA(Method):
    """Average the weights visited in the last part of training and evaluate that average.

    Place: optimization, reuse (the weights already visited), fewer steps, late. From `start` (a
    fraction of the budget) the learning rate switches to the SWA rate (`lr_mode`: `constant`,
    `cyclic` or `keep` the base schedule; `swa_lr` and `swa_lr_min` are multipliers of the base
    rate, `swa_lr` defaulting to the base schedule's value at `start`; the base is whatever schedule
    is in place at fit start, a schedule method's included), and every `interval` of
    progress after `start` the weights are folded into a running mean. Evaluation uses the mean
    (`state.eval_model`), with its batch-norm statistics recomputed by a forward pass over the
    training data before each evaluation that follows a new snapshot (and at fit end). The first such
    pass is charged (its FLOPs and seconds): a user who keeps the average must pay for one; later
    ones only serve monitoring and are not charged, like evaluation itself.

    Helps: runs whose last phase still moves around a wide basin (a constant or cyclic rate, noisy
    small-batch training): the average generalizes better than the end point, reaching a quality in
    fewer epochs; models whose final learning-rate decay can be cut short.

    Hurts: short runs whose schedule already decays fully (the late points are nearly the same);
    models with batch norm on data that is slow to read (the statistics pass); a `start` so early that
    the average mixes in weights from before the model had settled. It conflicts with EMA and with
    schedule-free training, which set the evaluated weights (and, for the latter, the schedule) too.

    Reference: Pavel Izmailov, Dmitrii Podoprikhin, Timur Garipov, Dmitry Vetrov and Andrew Gordon
    Wilson, 2018, "Averaging Weights Leads to Wider Optima and Better Generalization", UAI 2018,
    arXiv:1803.05407.
    """

    place = Place(where=(Where.OPTIMIZATION,), what=(What.REUSE,), how=How.FEWER_STEPS, when=(When.LATE,))
    conflicts = frozenset({"ema", "schedule_free"})
    extra_compute = True
    changes_evaluation = True  # evaluates the SWA average, not the raw weights

    def __init__(
        self,
        start: float = 0.75,
        interval: float = 0.05,
        lr_mode: str = "constant",
        swa_lr: float | None = None,
        swa_lr_min: float = 0.0,
    ) -> None:
        if not 0.0 < start < 1.0:
            raise ValueError(f"start is a fraction of the budget in (0, 1), got {start}")
        if not 0.0 < interval <= 1.0 - start + EPSILON:
            raise ValueError(
                f"interval must be in (0, 1 - start] = (0, {1.0 - start:g}] so that at least one snapshot "
                f"is taken, got {interval}"
            )
        if lr_mode not in LR_MODES:
            raise ValueError(f"lr_mode must be one of {', '.join(LR_MODES)}; got {lr_mode!r}")
        if swa_lr is not None and swa_lr <= 0.0:
            raise ValueError(f"swa_lr must be positive, got {swa_lr}")
        if swa_lr_min < 0.0 or (swa_lr is not None and swa_lr_min > swa_lr):
            raise ValueError(f"swa_lr_min must be in [0, swa_lr], got {swa_lr_min}")
        self.start = start
        self.interval = interval
        self.lr_mode = lr_mode
        self.swa_lr = swa_lr
        self.swa_lr_min = swa_lr_min
        self.average: nn.Module | None = None
        self.count = 0  # snapshots in the average
        self.boundaries = 0  # interval boundaries passed since start
        self.bn_stale = False  # batch-norm statistics not yet recomputed for the latest snapshot
        self.bn_charged = False  # whether the one charged statistics pass has been done
        self._pending: dict[str, torch.Tensor] | None = None

    def on_fit_start(self, state: State) -> None:
        # Wrapped here, after every method's init, so that the base is whatever schedule they set.
        if self.lr_mode != "keep" and not isinstance(state.schedule, SWASchedule):
            state.schedule = SWASchedule(
                state.schedule, self.start, self.interval, self.lr_mode, self.swa_lr, self.swa_lr_min
            )
        if self._pending is not None:
            self.average = averaged_copy(state.model)
            self.average.load_state_dict(self._pending)
            self._pending = None
        if self.average is not None:
            state.eval_model = self.average

    def on_batch_end(self, state: State) -> None:
        self._snapshot_if_due(state)

    def on_epoch_end(self, state: State) -> None:
        # An epoch budget with drop_last only reaches progress 1 when the epoch ends, after the last
        # batch_end: the same weights, but the final boundary is only passed here.
        self._snapshot_if_due(state)

    def _snapshot_if_due(self, state: State) -> None:
        progress = state.progress
        if progress < self.start:
            return
        passed = math.floor((progress - self.start) / self.interval + EPSILON)
        if passed <= self.boundaries:
            return
        self.boundaries = passed
        if self.average is None:
            self.average = averaged_copy(state.model)
            state.eval_model = self.average
        else:
            swa_update(self.average, state.model, self.count)
        self.count += 1
        self.bn_stale = True

    def on_eval_start(self, state: State) -> None:
        self._refresh_batchnorm(state)

    def on_fit_end(self, state: State) -> None:
        self._refresh_batchnorm(state)

    def _refresh_batchnorm(self, state: State) -> None:
        average = self.average
        if average is None or not self.bn_stale:
            return
        self.bn_stale = False
        if not has_batchnorm(average):
            return

        def statistics_pass() -> None:
            devices = [state.device] if state.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):  # leaves training's randomness as it was
                recompute_batchnorm(average, training_batches(state.train_data), state.device)

        if self.bn_charged:
            statistics_pass()
            return
        began = time.perf_counter()
        state.counted("swa_batchnorm_pass", statistics_pass)
        if state.device.type == "cuda":
            torch.cuda.synchronize(state.device)
        state.clock.train_seconds += time.perf_counter() - began
        self.bn_charged = True

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "count": self.count,
            "boundaries": self.boundaries,
            "bn_stale": self.bn_stale,
            "bn_charged": self.bn_charged,
        }
        weights = self._pending if self.average is None else self.average.state_dict()
        if weights is not None:
            state["weights"] = weights
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.count = int(state["count"])
        self.boundaries = int(state["boundaries"])
        self.bn_stale = bool(state["bn_stale"])
        self.bn_charged = bool(state["bn_charged"])
        self._pending = dict(state["weights"]) if "weights" in state else None
        self.average = None
