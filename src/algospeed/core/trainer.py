"""The budget-aware training loop: it fires events, charges cost, evaluates, checkpoints and resumes.

Every schedule is a function of `state.progress`, the fraction of the budget spent in the budget's
own unit, so that changing the budget rescales the whole run and every budget is fully decayed.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from algospeed.core.callback import Callback, Method, check_composition
from algospeed.core.checkpoint import latest_checkpoint, read_checkpoint, write_checkpoint
from algospeed.core.clock import interval_reached, position
from algospeed.core.data import Loader, batch_bounds, to_device
from algospeed.core.events import Event
from algospeed.core.flops import FlopMeter, shape_signature
from algospeed.core.metrics import ACCURACY, Metric, evaluate
from algospeed.core.result import CurvePoint, RunResult
from algospeed.core.schedules import WarmupLinearDecay
from algospeed.core.state import LossFn, OptimizerFactory, Schedule, State
from algospeed.core.units import Amount, parse_amount, parse_budget
from algospeed.errors import CheckpointError, DivergenceError, UsageError

NAN_CHECK_EVERY = 64
Handler = Callable[[State], Any]


class Trainer:
    """Trains `model` on `train_data` until `budget` is spent, firing events for callbacks and methods.

    `optimizer` is preferably a factory `params -> Optimizer`, so that methods that change the
    model can rebuild it. Methods and callbacks run in list order for `before`/`start` events and
    in reverse order for `after`/`end` events.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Loader,
        *,
        optimizer: OptimizerFactory | torch.optim.Optimizer,
        budget: str | Amount,
        loss_fn: LossFn = F.cross_entropy,
        eval_data: Loader | None = None,
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
        check_composition([c for c in self.callbacks if isinstance(c, Method)])
        self.eval_data = eval_data
        self.metrics = list(metrics)
        self.fingerprint = fingerprint or {}
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
        )
        self.state.clock.samples_per_epoch = len(train_data)
        # A profiler's hook, called with the phase that starts where no event marks it ("h2d" when a
        # batch arrives, "checkpoint", "data" when a step is over); see `instrument`.
        self.timer: Callable[[str], None] | None = None
        self._handlers = {event: self._handlers_for(event) for event in Event}
        self._last_eval = 0.0
        self._last_checkpoint = 0.0
        self._loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._loss_count = 0
        self._signal: int | None = None
        self._fire(Event.INIT)

    # ----------------------------------------------------------------------------------- events
    @property
    def train_data(self) -> Loader:
        return self.state.train_data

    @property
    def flops(self) -> FlopMeter:
        return self.state.flops

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
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        else:
            _seed_everything(self.state.seed)
        with self._stop_on_signals():
            self._tick = time.perf_counter()  # work done at fit start (a proxy run) is charged
            self._fire(Event.FIT_START)
            self._loop()
            status = "interrupted" if self._signal is not None else "completed"
            if status == "completed":
                self._fire(Event.FIT_END)
        return RunResult(points=list(self.state.curve), status=status, budget=str(self.budget))

    def _loop(self) -> None:
        state, clock = self.state, self.state.clock
        if self._budget_spent():
            return
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
                if self._after_step():
                    return
                if ended:
                    break
            if not ended:
                if clock.steps == steps_before:
                    raise UsageError(
                        f"batch size {loader.batch_size} is larger than the {len(loader)} training samples"
                    )
                self._end_epoch()
                if self._after_step():
                    return

    def _train_step(self, batch: Any) -> None:
        state, clock = self.state, self.state.clock
        if self.timer is not None:
            self.timer("h2d")  # the batch has arrived: waiting for data ends, the copy to the device starts
        state.batch, state.step_tag = to_device(batch, state.device), ""
        loaded = len(batch[1])
        self._fire(Event.AFTER_DATALOADER)
        inputs = state.batch[0]
        kind = (shape_signature(inputs), state.model_version, state.step_tag)
        with state.flops.count(kind):
            self._fire(Event.BEFORE_FORWARD)
            state.outputs = state.model(inputs)
            self._fire(Event.AFTER_FORWARD)
            self._fire(Event.BEFORE_LOSS)
            state.loss = state.loss_fn(state.outputs, state.batch[1])
            self._fire(Event.AFTER_LOSS)
            self._fire(Event.BEFORE_BACKWARD)
            state.loss.backward()
            self._fire(Event.AFTER_BACKWARD)
        multiplier = state.schedule(state.progress)
        for group in state.optimizer.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * multiplier
        self._fire(Event.BEFORE_OPTIMIZER_STEP)
        state.optimizer.step()
        state.optimizer.zero_grad(set_to_none=True)
        self._fire(Event.AFTER_OPTIMIZER_STEP)
        self._loss_sum += state.loss.detach()
        self._loss_count += 1
        clock.steps += 1
        clock.samples += loaded
        clock.sample_in_epoch += loaded
        if isinstance(inputs, torch.Tensor) and not torch.is_floating_point(inputs):
            clock.tokens += inputs.numel()
        clock.flops += state.flops.charge(kind)
        now = time.perf_counter()
        clock.train_seconds += now - self._tick
        self._tick = now
        self._fire(Event.BATCH_END)

    def _end_epoch(self) -> None:
        clock = self.state.clock
        clock.epoch += 1
        clock.sample_in_epoch = 0
        self._fire(Event.EPOCH_END)

    def _budget_spent(self) -> bool:
        return self.state.clock.amount(self.budget.unit) >= self.budget.value - 1e-9

    def _after_step(self) -> bool:
        """Evaluate, checkpoint and check for divergence as due; True when the run must stop."""
        clock = self.state.clock
        if self._signal is not None:
            self._pause(self._save_checkpoint if self.checkpoint_dir else None)
            return True
        spent = self._budget_spent()
        if clock.steps % NAN_CHECK_EVERY == 0:
            self._check_finite()
        if spent or (self.eval_interval and interval_reached(clock, self._last_eval, self.eval_interval, self.budget)):
            self._pause(self._record_point)
        if self.checkpoint_dir and (
            spent
            or (
                self.checkpoint_interval
                and interval_reached(clock, self._last_checkpoint, self.checkpoint_interval, self.budget)
            )
        ):
            self._pause(self._save_checkpoint)
        if self.timer is not None:
            self.timer("data")  # the step is over: until the next batch arrives, the loop waits for data
        return spent

    def _pause(self, work: Callable[[], None] | None) -> None:
        """Run `work` off the training clock (eval and checkpoints are not charged)."""
        if self.state.device.type == "cuda":
            torch.cuda.synchronize(self.state.device)
        now = time.perf_counter()
        self.state.clock.train_seconds += now - self._tick
        if work is not None:
            work()
        self._tick = time.perf_counter()

    # ------------------------------------------------------------------------------ evaluation
    def _check_finite(self) -> None:
        if not torch.isfinite(self._loss_sum):
            raise DivergenceError(
                f"training loss became non-finite by step {self.state.clock.steps}; "
                "lower the learning rate or add gradient clipping"
            )

    def _record_point(self) -> None:
        state = self.state
        self._check_finite()
        self._fire(Event.EVAL_START)
        metrics: dict[str, float] = {}
        if self.eval_data is not None:
            metrics = evaluate(state.eval_model or state.model, self.eval_data, self.metrics, state.device)
        clock = state.clock
        mean_loss = (self._loss_sum / max(self._loss_count, 1)).item()
        self._loss_sum.zero_()
        self._loss_count = 0
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
            )
        )
        if self.eval_interval is not None:
            self._last_eval = position(clock, self.eval_interval, self.budget)
        self._fire(Event.EVAL_END)

    # ----------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self) -> None:
        assert self.checkpoint_dir is not None
        if self.timer is not None:
            self.timer("checkpoint")
        state = self.state
        payload = {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "callbacks": {c.key: c.state_dict() for c in self.callbacks},
            "rng_torch": torch.get_rng_state(),
            "rng_generator": state.generator.get_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "loss_sum": self._loss_sum.cpu(),
        }
        if self.checkpoint_interval is not None:
            self._last_checkpoint = position(state.clock, self.checkpoint_interval, self.budget)
        numpy_state = np.random.get_state()
        meta = {
            "fingerprint": self.fingerprint,
            "clock": state.clock.state_dict(),
            "points": [point.to_dict() for point in state.curve],
            "last_eval": self._last_eval,
            "last_checkpoint": self._last_checkpoint,
            "loss_count": self._loss_count,
            "model_version": state.model_version,
            "rng_python": _jsonable(random.getstate()),
            "rng_numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
        }
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
        _check_fingerprint(path, meta.get("fingerprint", {}), self.fingerprint)
        state = self.state
        try:
            state.model_version = int(meta["model_version"])
            saved_callbacks = payload["callbacks"]
            for callback in self.callbacks:
                callback.load_state_dict(saved_callbacks.get(callback.key, {}))
            state.model.load_state_dict(payload["model"])
            state.optimizer.load_state_dict(payload["optimizer"])
            state.clock.load_state_dict(meta["clock"])
            state.curve = [CurvePoint.from_dict(point) for point in meta["points"]]
            self._last_eval = float(meta["last_eval"])
            self._last_checkpoint = float(meta["last_checkpoint"])
            self._loss_count = int(meta["loss_count"])
            self._loss_sum = payload["loss_sum"].to(state.device)
            torch.set_rng_state(payload["rng_torch"])
            state.generator.set_state(payload["rng_generator"])
            if payload["rng_cuda"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(payload["rng_cuda"])
            version, internal, gauss = meta["rng_python"]
            random.setstate((version, tuple(internal), gauss))
            kind, keys, *rest = meta["rng_numpy"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise CheckpointError(f"checkpoint {path} does not match this run: {first_line}") from None

    # --------------------------------------------------------------------------------- signals
    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM stop the run at the next step boundary, after a checkpoint; a second one
        stops at once."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self._signal is not None:
                raise KeyboardInterrupt
            self._signal = signum

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stop_signal(self) -> int | None:
        """The signal that interrupted the run, if one did."""
        return self._signal


def _optional_interval(text: str | Amount | None) -> Amount | None:
    return None if text is None else parse_amount(text, allow_fraction=True)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _jsonable(value: Any) -> Any:
    return [_jsonable(item) for item in value] if isinstance(value, (tuple, list)) else value


def _check_fingerprint(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    differing = sorted(key for key in saved.keys() | current.keys() if saved.get(key) != current.get(key))
    if differing:
        details = ", ".join(f"{key}: {saved.get(key)!r} != {current.get(key)!r}" for key in differing)
        raise CheckpointError(f"checkpoint {path} belongs to another run ({details})")
