"""algospeed's side of another training loop: one `State` built once, events fired to methods in the
`Trainer`'s order, cost charged between the loop's ticks as the `Trainer` charges it, and one-line errors
for what the loop cannot do.

A loop's callback gives it fewer places to act than algospeed's own loop: no hook between the forward and
the loss, a batch already handed to the training step, an optimizer the loop builds and steps itself.
So a bridge refuses, when it is made, every method that acts at an event the loop has no hook for; and
while it runs, a method that changes a part of the state the loop cannot take back (or reads one the loop
does not give) stops the run with a `UsageError` naming the method, instead of silently doing nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any

import torch
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.callback import Callback, Method, check_composition
from algospeed.core.data_kind import DataKind, check_data_kind
from algospeed.core.energy import EnergyMeter
from algospeed.core.events import Event
from algospeed.core.flops import shape_signature
from algospeed.core.result import CurvePoint
from algospeed.core.state import Schedule, State
from algospeed.core.units import Amount, Unit
from algospeed.errors import UsageError

Handler = Callable[[State], Any]


def loop_schedule(progress: float) -> float:
    """The schedule that leaves the learning rate to the loop's own scheduler: the bridge sets the rate
    only when the user or a method gave `state.schedule` another one."""
    return 1.0


class Unavailable:
    """Stands for a part of the state the loop does not give its callbacks: any use is a `UsageError`."""

    def __init__(self, what: str, why: str) -> None:
        self._message = f"{what} is not available: {why}"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise UsageError(self._message)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UsageError(self._message)

    def __len__(self) -> int:
        raise UsageError(self._message)

    def __iter__(self) -> Any:
        raise UsageError(self._message)


def as_callbacks(methods: str | Sequence[Callback]) -> list[Callback]:
    """Methods by spec (`"ema,label_smoothing:smoothing=0.05"`) or as built methods and callbacks."""
    if isinstance(methods, str):
        from algospeed.methods import build_all

        return list(build_all(methods))
    return list(methods)


class Bridge:
    """Runs algospeed methods and callbacks inside `loop` (its name, for messages).

    `missing`: the events the loop has no hook for, each with why; `guarded`: the state fields the loop
    cannot take back once a method changed them (or that it does not give), each with why. Progress is
    the loop's optimizer steps over its total (from its max steps or epochs), so every schedule fits the
    loop's budget. Seconds and energy are charged between `tick`s, except while `pause`d (evaluation and
    checkpoints), as in algospeed's `Trainer`.
    """

    def __init__(
        self,
        callbacks: str | Sequence[Callback],
        loop: str,
        missing: Mapping[Event, str],
        guarded: Mapping[str, str],
        *,
        schedule: Schedule | None = None,
        seed: int = 0,
        data_kind: DataKind | None = None,
    ) -> None:
        self.callbacks = as_callbacks(callbacks)
        self.loop = loop
        self.guarded = dict(guarded)
        methods = [c for c in self.callbacks if isinstance(c, Method)]
        check_composition(methods)
        if data_kind is not None:
            check_data_kind(methods, data_kind, "the training data")
        for callback in self.callbacks:
            for event in callback.handlers():
                if event in missing:
                    raise UsageError(
                        f"{callback.key!r} acts at {event.value}, where {loop} gives a callback no hook: "
                        f"{missing[event]}"
                    )
        self.schedule = schedule or loop_schedule
        self.seed = seed
        self._handlers = {event: self._handler_pairs(event) for event in Event}
        self.state: State | None = None
        self.energy: EnergyMeter | None = None
        self.epoch = 0.0  # the loop's epochs, fractional
        self._pending: dict[str, Any] | None = None
        self._counting: ExitStack | None = None
        self._kind: Any = None
        self._loaded = 0
        self._tick = 0.0
        self._paused = False
        self._loss_sum = 0.0
        self._loss_count = 0
        self._stash: dict[str, torch.Tensor] | None = None
        self.evaluating = False

    # ------------------------------------------------------------------------------------ events
    def _handler_pairs(self, event: Event) -> list[tuple[Callback, Handler]]:
        """The handlers in the `Trainer`'s order: list order, reversed for `after_*` and `*_end` events."""
        order = reversed(self.callbacks) if event.runs_in_reverse else self.callbacks
        return [(c, handler) for c in order if (handler := c.handlers().get(event)) is not None]

    def instrument(self, wrap: Callable[[Callback, Handler], Handler]) -> None:
        """Let a profiler time each callback's work: every handler becomes `wrap(callback, handler)`."""
        self._handlers = {event: [(c, wrap(c, h)) for c, h in pairs] for event, pairs in self._handlers.items()}

    def fire(self, event: Event) -> None:
        """Run every handler of `event`; a method that uses or changes what the loop cannot give or take
        back is a `UsageError` naming it."""
        state = self.require_state()
        for callback, handler in self._handlers[event]:
            before = [getattr(state, name) for name in self.guarded]
            evaluated = state.eval_model
            try:
                handler(state)
            except UsageError as error:
                raise UsageError(f"{callback.key!r} cannot run in {self.loop} ({event.value}): {error}") from error
            for (name, why), value in zip(self.guarded.items(), before, strict=True):
                if getattr(state, name) is not value:
                    raise UsageError(
                        f"{callback.key!r} changes state.{name} at {event.value}, which {self.loop} cannot take "
                        f"back: {why}"
                    )
            if state.eval_model is not evaluated and state.eval_model is not None:
                self._check_eval_model(callback, state.eval_model)

    def _check_eval_model(self, callback: Callback, other: nn.Module) -> None:
        """The loop evaluates its own model, so only weights that fit it (an average) can be swapped in."""
        model = self.require_state().model
        if other is not model and other.state_dict().keys() != model.state_dict().keys():
            raise UsageError(
                f"{callback.key!r} evaluates a model of another structure (state.eval_model), but {self.loop} "
                "evaluates its own model: only weights of the same structure, such as an average, can be put into it"
            )

    def require_state(self) -> State:
        if self.state is None:
            raise UsageError(f"the algospeed callback has not been set up by {self.loop} yet")
        return self.state

    # ----------------------------------------------------------------------------- fit start
    def init(self, model: nn.Module, device: torch.device, optimizer: Any, optimizer_factory: Any) -> None:
        """Build the state and fire `init` (model surgery) before the loop builds its optimizer, if it does:
        `optimizer` is then an `Unavailable` and `optimizer_factory` one that returns it, so that a
        method's `rebuild_optimizer` after surgery is left to the loop, which builds over the new model."""
        self.state = State(
            model=model,
            train_data=Unavailable("the training data", f"{self.loop} owns its data loader"),
            optimizer=optimizer,
            optimizer_factory=optimizer_factory,
            loss_fn=Unavailable("the loss function", f"{self.loop} computes the loss inside its training step"),
            budget=Amount(1.0, Unit.BATCH),  # provisional: the loop's total is known at fit start
            schedule=self.schedule,
            device=device,
            seed=self.seed,
            generator=torch.Generator().manual_seed(self.seed),
            forward=Unavailable("the forward pass", f"{self.loop} runs the model inside its training step"),
        )
        self.fire(Event.INIT)

    def start(self, optimizer: torch.optim.Optimizer, total_steps: int, device: torch.device) -> None:
        """The loop has built its optimizer and knows its total steps: load saved state and fire `fit_start`."""
        state = self.require_state()
        if total_steps <= 0:
            raise UsageError(f"{self.loop} has no finite number of steps: give it max_steps or max_epochs")
        state.optimizer, state.optimizer_factory = (
            optimizer,
            Unavailable("a new optimizer", f"{self.loop} keeps stepping the optimizer it built"),
        )
        state.device = device
        state.budget = Amount(float(total_steps), Unit.BATCH)
        self.energy = EnergyMeter.for_device(device)
        fresh = self._pending is None
        if not fresh:
            self._restore(self._pending)
            self._pending = None
        if fresh or not self.energy.available:
            state.clock.energy_joules = 0.0 if fresh and self.energy.available else None
        self.resume()  # work done at fit start (a proxy run) is charged
        self.fire(Event.FIT_START)

    # ------------------------------------------------------------------------------------ steps
    def begin_step(self, batch: Any | None) -> None:
        """A (micro-)batch starts: show it to the methods (read-only) and count the FLOPs of its step."""
        state = self.require_state()
        if self._paused:
            self.resume()
        if batch is not None:
            state.batch, state.step_tag = Batch.of(batch), ""
            self._loaded = state.batch.samples
            self.fire(Event.AFTER_DATALOADER)
            self.fire(Event.BEFORE_FORWARD)
            self._kind = (shape_signature(state.batch.inputs), state.model_version, state.step_tag)
        else:
            state.step_tag = ""
            self._kind = ("step", state.model_version, state.step_tag)
        self._counting = ExitStack()
        self._counting.enter_context(state.flops.count(self._kind))

    def end_count(self) -> None:
        """The forward and backward are over: charge their FLOPs."""
        if self._counting is None:
            return
        self._counting.close()
        self._counting = None
        state = self.require_state()
        state.clock.flops += state.flops.charge(self._kind)

    def before_optimizer_step(self) -> None:
        """Set the learning rate from `state.schedule` (as the `Trainer` does, unless the loop's own
        scheduler is in charge) and fire `before_optimizer_step`."""
        state = self.require_state()
        if state.schedule is not loop_schedule:
            multiplier = state.schedule(state.progress)
            for group in state.optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * multiplier
        self.fire(Event.BEFORE_OPTIMIZER_STEP)

    def end_step(self, steps: int, epoch: float, samples: int | None = None, tokens: int | None = None) -> None:
        """After the optimizer step: advance the clock to the loop's `steps`, charge the step's time and
        energy, and fire `batch_end`. `samples` and `tokens` default to the batch's."""
        state = self.require_state()
        clock = state.clock
        batch = state.batch
        clock.steps = steps
        clock.samples += self._loaded if samples is None else samples
        clock.tokens += (batch.tokens if batch is not None else 0) if tokens is None else tokens
        self._loaded = 0
        self.epoch = epoch
        clock.epoch = int(epoch)
        self.charge()
        self.fire(Event.BATCH_END)

    def add_loss(self, loss: Any) -> None:
        """A training loss the loop computed, for the curve's mean training loss."""
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            self._loss_sum += float(loss.detach())
            self._loss_count += 1

    def abort(self) -> None:
        """The loop raised: stop counting FLOPs so the dispatch mode does not outlive the step."""
        if self._counting is not None:
            self._counting.close()
            self._counting = None

    # ------------------------------------------------------------------------------- the clock
    def charge(self) -> None:
        """Charge the time and energy since the last tick to training."""
        clock = self.require_state().clock
        now = time.perf_counter()
        clock.train_seconds += now - self._tick
        self._tick = now
        clock.add_energy(self.energy.lap() if self.energy is not None else None)

    def pause(self) -> None:
        """Charge up to now and stop charging (the loop evaluates or checkpoints) until `resume`."""
        if not self._paused:
            self.charge()
            self._paused = True

    def resume(self) -> None:
        """Charge from now on."""
        self._tick = time.perf_counter()
        if self.energy is not None:
            self.energy.restart()
        self._paused = False

    # ---------------------------------------------------------------------------- evaluation
    def begin_eval(self) -> None:
        """The loop is about to evaluate: stop the clock, fire `eval_start`, and put the weights to evaluate
        (`state.eval_model`, e.g. an EMA) into the loop's model, which is what the loop evaluates."""
        state = self.require_state()
        self.pause()
        self.fire(Event.EVAL_START)
        self.evaluating = True
        model, other = state.model, state.eval_model
        if other is not None and other is not model:
            with torch.no_grad():
                self._stash = {key: value.detach().clone() for key, value in model.state_dict().items()}
                model.load_state_dict(other.state_dict())

    def end_eval(self, metrics: Mapping[str, Any]) -> None:
        """The loop has evaluated: put the training weights back, record a curve point with the loop's
        metrics and every cost, and fire `eval_end`."""
        state = self.require_state()
        if self._stash is not None:
            with torch.no_grad():
                state.model.load_state_dict(self._stash)
            self._stash = None
        self.evaluating = False
        clock = state.clock
        state.curve.append(
            CurvePoint(
                step=clock.steps,
                epoch=self.epoch,
                samples=clock.samples,
                tokens=clock.tokens,
                train_seconds=clock.train_seconds,
                flops=clock.flops,
                progress=state.progress,
                train_loss=self._loss_sum / self._loss_count if self._loss_count else float("nan"),
                metrics={key: float(value) for key, value in metrics.items()},
                extra_steps=clock.extra_steps,
                energy_joules=clock.energy_joules,
            )
        )
        self._loss_sum, self._loss_count = 0.0, 0
        self.fire(Event.EVAL_END)

    def finish(self) -> None:
        """The loop is done: fire `fit_end` when its budget was spent (an interrupted run does not end)."""
        state = self.require_state()
        if state.progress >= 1.0 - 1e-9:
            self.fire(Event.FIT_END)

    # ---------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """What the loop's checkpoint must carry for the methods to resume exactly."""
        state = self.require_state()
        return {
            "callbacks": {c.key: c.state_dict() for c in self.callbacks},
            "clock": state.clock.state_dict(),
            "points": [point.to_dict() for point in state.curve],
            "generator": state.generator.get_state(),
            "model_version": state.model_version,
            "epoch": self.epoch,
            "loss": [self._loss_sum, self._loss_count],
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Keep `saved` to restore at fit start (after `init`'s surgery, before `fit_start`), as the
        `Trainer` restores a checkpoint."""
        self._pending = saved

    def _restore(self, saved: dict[str, Any]) -> None:
        state = self.require_state()
        for callback in self.callbacks:
            try:
                callback.load_state_dict(saved["callbacks"].get(callback.key, {}))
            except UsageError as error:
                raise UsageError(f"{callback.key!r} cannot resume in {self.loop}: {error}") from error
        try:
            state.clock.load_state_dict(saved["clock"])
            state.curve = [CurvePoint.from_dict(point) for point in saved["points"]]
            state.generator.set_state(saved["generator"])
            state.model_version = int(saved["model_version"])
            self.epoch = float(saved["epoch"])
            self._loss_sum, self._loss_count = float(saved["loss"][0]), int(saved["loss"][1])
        except (KeyError, ValueError, RuntimeError, TypeError) as error:
            raise UsageError(f"the algospeed state in this checkpoint does not match these methods: {error}") from None
