"""The budget-aware training loop: it fires events, charges cost, evaluates, checkpoints and resumes.

Every schedule is a function of `state.progress`, the fraction of the budget spent in the budget's
own unit, so that changing the budget rescales the whole run and every budget is fully decayed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.callback import Callback, Method, check_composition
from algospeed.core.checkpoint import (
    latest_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
    write_checkpoint,
)
from algospeed.core.clock import interval_reached, position
from algospeed.core.data import Loader, as_loader, batch_bounds
from algospeed.core.data_kind import DataKind, check_data_kind
from algospeed.core.device import resolve_device
from algospeed.core.energy import EnergyMeter
from algospeed.core.events import Event
from algospeed.core.flops import FlopMeter, shape_signature
from algospeed.core.metrics import ACCURACY, Forward, Metric, cross_entropy, evaluate, forward_inputs
from algospeed.core.result import CurvePoint, RunResult
from algospeed.core.rng import seed_everything
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.core.signals import StopSignals
from algospeed.core.snapshot import LoopMarks, capture, restore
from algospeed.core.state import LossFn, OptimizerFactory, Schedule, State
from algospeed.core.status import StopReason
from algospeed.core.units import Amount, parse_amount, parse_budget
from algospeed.errors import CheckpointError, DivergenceError, UsageError

NAN_CHECK_EVERY = 64
Handler = Callable[[State], Any]


class Trainer:
    """Trains `model` on `train_data` until `budget` is spent, firing events for callbacks and methods.

    `train_data` is an algospeed `Loader`, a plain `torch.utils.data.DataLoader` or a map-style
    `Dataset` (with `batch_size`); see `as_loader` for which of them resume exactly. `eval_data` (the
    validation split) makes the curve; `test_data` is evaluated once, when the budget is spent. `optimizer` is
    preferably a factory `params -> Optimizer`, so that methods that change the model can rebuild it.
    `forward(model, batch)` runs the model on a `Batch` (default: `model(batch.inputs)`); `loss_fn(outputs,
    targets)`. Methods and callbacks run in list order for `before`/`start` events and in reverse order
    for `after`/`end` events. With `data_kind`, a method that cannot act on that kind of data is refused.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Loader | Any,
        *,
        optimizer: OptimizerFactory | torch.optim.Optimizer,
        budget: str | Amount,
        loss_fn: LossFn = cross_entropy,
        forward: Forward = forward_inputs,
        batch_size: int | None = None,
        data_kind: DataKind | None = None,
        eval_data: Loader | Any | None = None,
        test_data: Loader | Any | None = None,
        metrics: Sequence[Metric] = (ACCURACY,),
        eval_interval: str | Amount | None = None,
        callbacks: Sequence[Callback] = (),
        schedule: Schedule | None = None,
        seed: int = 0,
        device: str | torch.device | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_interval: str | Amount | None = None,
        keep_checkpoints: int = 2,
        fingerprint: dict[str, Any] | None = None,
    ) -> None:
        self.budget = parse_budget(budget)
        self.eval_interval = _optional_interval(eval_interval)
        self.checkpoint_interval = _optional_interval(checkpoint_interval)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.keep_checkpoints = keep_checkpoints
        self.callbacks = list(callbacks)
        methods = [c for c in self.callbacks if isinstance(c, Method)]
        check_composition(methods)
        if data_kind is not None:
            check_data_kind(methods, data_kind, "the training data")
        train_data = as_loader(train_data, batch_size, seed=seed)
        self.eval_data, self.test_data = (
            None if data is None else as_loader(data, batch_size, shuffle=False, drop_last=False)
            for data in (eval_data, test_data)
        )
        self.metrics = list(metrics)
        device = resolve_device(device)
        model.to(device)
        factory = None if isinstance(optimizer, torch.optim.Optimizer) else optimizer
        self.state = State(
            model=model,
            train_data=train_data,
            optimizer=optimizer if factory is None else factory([p for p in model.parameters() if p.requires_grad]),
            optimizer_factory=factory,
            loss_fn=loss_fn,
            budget=self.budget,
            schedule=schedule or WarmupLinearDecay(),
            device=device,
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            forward=forward,
        )
        self.state.clock.samples_per_epoch = len(train_data)
        if train_data.drop_last and train_data.batch_size > len(train_data):
            raise UsageError(
                f"batch size {train_data.batch_size} is larger than the {len(train_data)} training samples"
            )
        # A profiler's hook, called with the phase that starts where no event marks it ("h2d" when a
        # batch arrives, "checkpoint", "data" when a step is over); see `instrument`.
        self.timer: Callable[[str], None] | None = None
        self._handlers = {event: self._handlers_for(event) for event in Event}
        self.test_metrics: dict[str, float] = {}  # reported, never used to choose anything
        self.marks = LoopMarks(torch.zeros((), dtype=torch.float64, device=device), fingerprint=fingerprint or {})
        self.signals = StopSignals()
        self.eval_flops = FlopMeter()  # evaluation's FLOPs, apart from the training steps' in `state.flops`
        self.energy = EnergyMeter.for_device(device)  # charged like the seconds; no figure where unmeasurable
        self._fire(Event.INIT)

    # ----------------------------------------------------------------------------------- events
    @property
    def train_data(self) -> Loader:
        return self.state.train_data

    def _handler_pairs(self, event: Event) -> list[tuple[Callback, Handler]]:
        order = reversed(self.callbacks) if event.runs_in_reverse else self.callbacks
        return [(c, handler) for c in order if (handler := c.handlers().get(event)) is not None]

    def _handlers_for(self, event: Event) -> list[Handler]:
        return [handler for _, handler in self._handler_pairs(event)]

    def instrument(self, wrap: Callable[[Event, list[tuple[Callback, Handler]]], list[Handler]] | None) -> None:
        """Let a profiler time each callback: every event's handlers become `wrap(event, [(callback,
        handler), ...])` (in firing order); `None` restores the plain ones. With `timer`, this is all a
        profiler needs, and neither costs anything while unset."""
        self._handlers = {
            event: self._handlers_for(event) if wrap is None else list(wrap(event, self._handler_pairs(event)))
            for event in Event
        }

    def _fire(self, event: Event) -> None:
        for handler in self._handlers[event]:
            handler(self.state)

    # ------------------------------------------------------------------------------------- fit
    def fit(self, resume_from: str | Path | None = None) -> RunResult:
        """Train until the budget is spent or a SIGINT/SIGTERM arrives; resume from a checkpoint file
        (or a directory of them) when given."""
        if self.checkpoint_dir is not None:
            remove_stale_temporaries(self.checkpoint_dir)
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        else:
            seed_everything(self.state.seed)
            self.state.clock.energy_joules = 0.0 if self.energy.available else None
        with self.signals.listening():
            self._tick = time.perf_counter()  # work done at fit start (a proxy run) is charged
            self.energy.restart()
            self._fire(Event.FIT_START)
            reason = self._loop()
            if reason is StopReason.BUDGET_SPENT:
                self._fire(Event.FIT_END)
        tested = self.test_metrics if reason is StopReason.BUDGET_SPENT else {}
        return RunResult(list(self.state.curve), reason, str(self.budget), tested)

    def _loop(self) -> StopReason:
        state, clock = self.state, self.state.clock
        if self._budget_spent():
            return StopReason.BUDGET_SPENT
        while True:
            if clock.sample_in_epoch == 0:
                self._fire(Event.EPOCH_START)
            loader = state.train_data
            clock.samples_per_epoch = len(loader)
            steps_before, ended = clock.steps, False
            for batch in loader.iter_epoch(clock.epoch, clock.sample_in_epoch):
                self._train_step(batch)
                ended = batch_bounds(len(loader), clock.sample_in_epoch, loader.batch_size, loader.drop_last) is None
                if ended:
                    self._end_epoch()
                if (reason := self._after_step()) is not None:
                    return reason
                if ended:
                    break
            if not ended:
                if clock.steps == steps_before:
                    raise UsageError(
                        f"batch size {loader.batch_size} is larger than the {len(loader)} training samples"
                    )
                self._end_epoch()
                if (reason := self._after_step()) is not None:
                    return reason

    def _train_step(self, batch: Batch | Any) -> None:
        state, clock = self.state, self.state.clock
        if self.timer is not None:
            self.timer("h2d")  # the batch has arrived: waiting for data ends, the copy to the device starts
        batch = Batch.of(batch)  # a custom loader may yield plain (inputs, targets)
        state.batch, state.step_tag = batch.to(state.device), ""
        loaded = batch.samples
        self._fire(Event.AFTER_DATALOADER)
        batch = state.batch
        kind = (shape_signature(batch.inputs), state.model_version, state.step_tag)
        with state.flops.count(kind):
            self._fire(Event.BEFORE_FORWARD)
            state.outputs = state.forward(state.model, state.batch)
            self._fire(Event.AFTER_FORWARD)
            self._fire(Event.BEFORE_LOSS)
            state.loss = state.loss_fn(state.outputs, state.batch.targets)
            self._fire(Event.AFTER_LOSS)
            self._fire(Event.BEFORE_BACKWARD)
            state.loss.backward()
            self._fire(Event.AFTER_BACKWARD)
            multiplier = state.schedule(state.progress)
            for group in state.optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * multiplier
            self._fire(Event.BEFORE_OPTIMIZER_STEP)
            state.optimizer.step()  # counted too: Muon's Newton-Schulz, Shampoo's and SOAP's matrix products
            state.optimizer.zero_grad(set_to_none=True)
            self._fire(Event.AFTER_OPTIMIZER_STEP)
        self.marks.loss_sum += state.loss.detach()
        self.marks.loss_count += 1
        clock.steps += 1
        clock.samples += loaded
        clock.sample_in_epoch += loaded
        clock.tokens += batch.tokens
        clock.flops += state.flops.charge(kind)
        now = time.perf_counter()
        clock.train_seconds += now - self._tick
        self._tick = now
        clock.add_energy(self.energy.lap())
        self._fire(Event.BATCH_END)

    def _end_epoch(self) -> None:
        clock = self.state.clock
        clock.epoch += 1
        clock.sample_in_epoch = 0
        self._fire(Event.EPOCH_END)

    def _budget_spent(self) -> bool:
        return self.state.clock.amount(self.budget.unit) >= self.budget.value - 1e-9

    def _after_step(self) -> StopReason | None:
        """Evaluate, checkpoint and check for divergence as due; why the run must stop, if it must."""
        clock, marks = self.state.clock, self.marks
        stop = self.signals.reason or (StopReason.REQUESTED if self.state.stop_requested else None)
        if stop is not None:
            self._pause(self._save_checkpoint if self.checkpoint_dir else None)
            return stop
        spent = self._budget_spent()
        if clock.steps % NAN_CHECK_EVERY == 0:
            self._check_finite()
        if spent or (self.eval_interval and interval_reached(clock, marks.last_eval, self.eval_interval, self.budget)):
            self._pause(self._record_point)
        if self.checkpoint_dir and (
            spent
            or (
                self.checkpoint_interval
                and interval_reached(clock, marks.last_checkpoint, self.checkpoint_interval, self.budget)
            )
        ):
            self._pause(self._save_checkpoint)
        if self.timer is not None:
            self.timer("data")  # the step is over: until the next batch arrives, the loop waits for data
        return StopReason.BUDGET_SPENT if spent else None

    def _pause(self, work: Callable[[], None] | None) -> None:
        """Run `work` off the training clock (eval and checkpoints are not charged)."""
        if self.state.device.type == "cuda":
            torch.cuda.synchronize(self.state.device)
        now = time.perf_counter()
        self.state.clock.train_seconds += now - self._tick
        self.state.clock.add_energy(self.energy.lap())
        if work is not None:
            work()
        self._tick = time.perf_counter()
        self.energy.restart()

    # ------------------------------------------------------------------------------ evaluation
    def _check_finite(self) -> None:
        if not torch.isfinite(self.marks.loss_sum):
            raise DivergenceError(
                f"training loss became non-finite by step {self.state.clock.steps}; "
                "lower the learning rate or add gradient clipping"
            )

    def _record_point(self) -> None:
        state = self.state
        self._check_finite()
        self._fire(Event.EVAL_START)
        metrics: dict[str, float] = {}
        seconds = flops = 0.0
        if self.eval_data is not None:
            started = time.perf_counter()
            metrics, flops = self._evaluate_counted(state.eval_model or state.model, self.eval_data)
            if state.device.type == "cuda":
                torch.cuda.synchronize(state.device)
            seconds = time.perf_counter() - started
        if self.test_data is not None and self._budget_spent():  # once, at the end, by the same eval protocol
            self.test_metrics = evaluate(
                state.eval_model or state.model, self.test_data, self.metrics, state.device, state.forward
            )
        previous = state.curve[-1] if state.curve else None
        clock, marks = state.clock, self.marks
        mean_loss = (marks.loss_sum / max(marks.loss_count, 1)).item()
        marks.loss_sum.zero_()
        marks.loss_count = 0
        state.curve.append(
            CurvePoint(
                step=clock.steps,
                epoch=clock.epochs,
                samples=clock.samples,
                tokens=clock.tokens,
                train_seconds=clock.train_seconds,
                flops=clock.flops,
                progress=state.progress,
                train_loss=mean_loss,
                metrics=metrics,
                extra_steps=clock.extra_steps,
                energy_joules=clock.energy_joules,
                eval_seconds=(previous.eval_seconds if previous else 0.0) + seconds,
                eval_flops=(previous.eval_flops if previous else 0.0) + flops,
            )
        )
        if self.eval_interval is not None:
            marks.last_eval = position(clock, self.eval_interval, self.budget)
        self._fire(Event.EVAL_END)

    def _evaluate_counted(self, model: nn.Module, data: Loader) -> tuple[dict[str, float], float]:
        """The metrics of `model` on `data` and the FLOPs of its forwards, counted once per kind of eval batch
        (shape, model version, and the evaluated model's type, so a wrapper such as test-time augmentation
        counts apart) by the trainer's own eval `FlopMeter`: recorded beside the training cost, never in it."""
        state, meter, flops = self.state, self.eval_flops, 0.0

        def forward(model: nn.Module, batch: Batch) -> Any:
            nonlocal flops
            kind = ("eval", shape_signature(batch.inputs), state.model_version, type(model).__qualname__)
            with meter.count(kind):
                outputs = state.forward(model, batch)
            flops += meter.charge(kind)
            return outputs

        return evaluate(model, data, self.metrics, state.device, forward), flops

    # ----------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> None:
        assert self.checkpoint_dir is not None
        if self.timer is not None:
            self.timer("checkpoint")
        state = self.state
        if self.checkpoint_interval is not None:
            self.marks.last_checkpoint = position(state.clock, self.checkpoint_interval, self.budget)
        payload, meta = capture(state, self.callbacks, self.marks)
        write_checkpoint(self.checkpoint_dir, state.clock.steps, payload, meta, keep=self.keep_checkpoints)

    def load_checkpoint(self, source: str | Path) -> None:
        """Restore everything a checkpoint holds; a mismatched or corrupt one is a `CheckpointError`."""
        path = Path(source)
        if path.is_dir():
            found = latest_checkpoint(path)
            if found is None:
                raise CheckpointError(f"no checkpoint to resume from in {path}")
            path = found
        payload, meta = read_checkpoint(path)
        restore(path, payload, meta, self.state, self.callbacks, self.marks)
        if not getattr(self.state.train_data, "exact_resume", True):
            note = getattr(self.state.train_data, "resume_note", "its loader cannot restart an epoch exactly")
            warnings.warn(f"resuming {path} is not exact: {note}", stacklevel=2)

    @property
    def stop_signal(self) -> int | None:
        """The signal that interrupted the run, if one did."""
        return self.signals.received


def _optional_interval(text: str | Amount | None) -> Amount | None:
    return None if text is None else parse_amount(text, allow_fraction=True)
