"""The phase profiler: where each step's time goes, per phase and per method.

`Profiler(schedule).attach(trainer)` hooks into a built `Trainer` through its two profiling hooks:
`trainer.instrument(...)` rewraps every event's handlers, so that each callback's work is timed under
its own name and a marker after each event starts the next phase (forward after `before_forward`, and
so on), and `trainer.timer` is called where no event marks a boundary (the batch has arrived, a
checkpoint starts, the step is over). A step runs from the end of the previous one to the end of its
own evaluation and checkpoint, so its phases partition the wall-clock and their shares sum to 1:

- `data`: waiting for the loader (from the end of the previous step until the batch arrives),
- `h2d`: `to_device`, the host-to-device copy,
- `forward`, `loss`, `backward`, `optimizer` (the step and `zero_grad`),
- `method:<name>` / `callback:<name>`: each method's or callback's own handlers,
- `eval`, `checkpoint`, and `other` (the loop's own bookkeeping, learning-rate updates, logging).

On CUDA, boundaries are CUDA events on the current stream, resolved in batches, so each phase is the
device's timeline between them (a phase the device idles through, waiting for the host, is charged
to that phase); on CPU they are `time.perf_counter`. Outside the schedule's window the trainer runs
its plain handlers with the hook unset: the profiler then costs one call per step.

`Profiler(schedule).attach_loop(model)` profiles a loop of one's own instead (see `profile.loop`): its
`step()` ends each step, `with profiler.phase(name)` or `profiler.mark(name)` marks the phases, and the
first warmup step counts the step's FLOPs (charged to each later step in proportion to its samples)
along with the operator census. `profile.lightning.ProfilerCallback` drives the same calls from
Lightning's hooks.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from algospeed.core.batch import Batch
from algospeed.core.callback import Callback, Method
from algospeed.core.data_kind import DataKind
from algospeed.core.events import Event
from algospeed.core.flops import FlopMeter
from algospeed.core.state import State
from algospeed.errors import UsageError
from algospeed.profile.census import Census, OperatorCounter, dtype_name
from algospeed.profile.loop import LoopState, Phase, check_phase, data_kind_of, infer_data_kind, model_device
from algospeed.profile.phases import DATA, EVAL, OTHER
from algospeed.profile.schedule import Action, ProfileSchedule

if TYPE_CHECKING:
    from algospeed.core.trainer import Trainer
    from algospeed.profile.peak import Machine
    from algospeed.profile.record import Profile

Handler = Callable[[State], Any]

# The phase that starts once an event's handlers have run.
PHASE_AFTER: dict[Event, str] = {
    Event.EPOCH_START: DATA,
    Event.AFTER_DATALOADER: OTHER,
    Event.BEFORE_FORWARD: "forward",
    Event.AFTER_FORWARD: OTHER,
    Event.BEFORE_LOSS: "loss",
    Event.AFTER_LOSS: OTHER,
    Event.BEFORE_BACKWARD: "backward",
    Event.AFTER_BACKWARD: OTHER,
    Event.BEFORE_OPTIMIZER_STEP: "optimizer",
    Event.AFTER_OPTIMIZER_STEP: OTHER,
    Event.BATCH_END: OTHER,
    Event.EPOCH_END: OTHER,
    Event.EVAL_START: EVAL,
    Event.EVAL_END: OTHER,
}
CUDA_RESOLVE_EVERY = 32  # steps of CUDA events kept before one synchronization resolves them
LOOP_STEP = "loop step"  # the FLOP meter's key for a hand loop's step


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process (all its threads) and by its child processes (loader
    workers): live children from /proc (Linux), finished and reaped ones from `getrusage`."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = done.ru_utime + done.ru_stime
    me, tick = os.getpid(), os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if int(fields[1]) == me:  # ppid; utime and stime follow in clock ticks
                children += (int(fields[11]) + int(fields[12])) / tick
    return own.ru_utime + own.ru_stime, children


def handler_label(callback: Callback) -> str:
    """The phase a callback's own work is charged to: `method:<name>` or `callback:<name>`."""
    return f"{'method' if isinstance(callback, Method) else 'callback'}:{callback.key}"


@dataclass
class _Step:
    """One timed step: its phase clock (CPU) or its marks (CUDA), and the clock before it."""

    index: int
    action: Action
    phase: str
    start: Any
    last: float = 0.0
    totals: dict[str, float] = field(default_factory=dict)
    marks: list[tuple[str, Any]] = field(default_factory=list)
    samples: int = 0
    tokens: int = 0
    flops: float = 0.0


@dataclass
class Measured:
    """What the active steps added up to."""

    steps: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    samples: int = 0
    tokens: int = 0
    flops: float = 0.0
    main_cpu: float = 0.0
    worker_cpu: float = 0.0


class Profiler:
    """Times the phases of the steps its schedule selects; `report()` turns them into a `Profile`.

    Use it as a context, `with Profiler(schedule).attach(trainer) as profiler: trainer.fit()`, so
    that the operator census and the trace stop even when training raises.

    `trace`: a path for a Chrome/Perfetto trace of the first window's active steps from
    `torch.profiler` (phases appear as ranges; timings taken under tracing include its overhead).
    `machine`: the device's limits, measured or looked up on `report()` when not given; `peak`:
    `auto`, `measured` or `datasheet` for that lookup. `data_kind`: the kind of the training data, so
    that advice names only methods for it; inferred from the census step's batch when not given.
    """

    def __init__(
        self,
        schedule: ProfileSchedule | None = None,
        *,
        trace: str | Path | None = None,
        machine: Machine | None = None,
        peak: str = "auto",
        census: bool = True,
        data_kind: DataKind | str | None = None,
    ) -> None:
        self.schedule = schedule or ProfileSchedule()
        self.trace_path = Path(trace) if trace is not None else None
        self.machine = machine
        self.peak = peak
        self.take_census = census
        self.data_kind = None if data_kind is None else data_kind_of(data_kind)
        self.measured = Measured()
        self.census: Census | None = None
        self.trainer: Trainer | None = None
        self.state: State | LoopState | None = None
        self.methods: list[str] = []  # the names of the methods in the profiled run (not advised again)
        self._cuda = False
        self._device = torch.device("cpu")
        self._record: _Step | None = None
        self._counting: contextlib.ExitStack | None = None  # the census step's counters
        self._operators: OperatorCounter | None = None
        self._pending: list[_Step] = []
        self._events: list[Any] = []
        self._installed = False
        self._memory_reset = False
        self._torch_profiler: Any = None
        self._range: Any = None
        self._cpu_mark: tuple[float, float] | None = None
        self.traced = False
        self._finished = False
        self._phases: dict[str, Phase] = {}
        self._stack: list[str] = []
        self._loop_flops: FlopMeter | None = None
        self._step_flops = 0.0
        self._census_samples = 0

    # ------------------------------------------------------------------------------- attaching
    def attach(self, trainer: Trainer) -> Profiler:
        """Hook into `trainer` (before `fit`); returns the profiler."""
        self._watch(trainer.state)
        self.trainer = trainer
        self.methods = [c.key for c in trainer.callbacks if isinstance(c, Method)]
        self._uninstall()
        return self

    def attach_loop(self, model: nn.Module, *, device: str | torch.device | None = None) -> Profiler:
        """Profile a loop of your own that trains `model` (on `device`, default: the model's): call it
        just before the loop, which is where step 0 starts; returns the profiler."""
        if self.schedule.warmup < 1:
            raise UsageError(
                "profiling a loop needs a schedule with warmup 1 or more: its first warmup step counts the "
                "step's FLOPs and operators (which slows it, so it is not measured)"
            )
        self._watch(LoopState(model, torch.device(device) if device is not None else model_device(model)))
        self._loop_flops = FlopMeter()
        if self.schedule.action(0).timed:
            self._boundary()
        return self

    def _watch(self, state: State | LoopState) -> None:
        if self.state is not None:
            raise UsageError("this profiler is already attached to a trainer or loop")
        if self.trace_path is not None and not self.trace_path.resolve().parent.is_dir():
            raise UsageError(f"cannot write the trace to {self.trace_path}: {self.trace_path.parent} is not a folder")
        self.state = state
        self._cuda = state.device.type == "cuda"
        self._device = state.device

    def detach(self) -> None:
        """Give the trainer its plain handlers back and let go of it (what was measured stays)."""
        self.finish()
        if self.trainer is not None:
            self.trainer.instrument(None)
            self.trainer.timer = None
        self.trainer = None

    def _uninstall(self) -> None:
        """Plain handlers, plus a watcher that switches the instrumentation on where the window starts."""
        if self.trainer is None:  # a hand loop calls `step()` at every step anyway
            return
        watchers = {Event.FIT_START: self._watch_fit_start, Event.BATCH_END: self._watch_batch_end}
        self.trainer.instrument(
            lambda event, pairs: [h for _, h in pairs] + ([watchers[event]] if event in watchers else [])
        )
        self.trainer.timer = None
        self._installed = False

    def _install(self) -> None:
        assert self.trainer is not None
        self.trainer.instrument(self._wrap)
        self.trainer.timer = self._on_phase
        self._installed = True

    def _wrap(self, event: Event, pairs: list[tuple[Callback, Handler]]) -> list[Handler]:
        handlers = [self._timed(handler_label(callback), handler) for callback, handler in pairs]
        if event is Event.FIT_START:
            handlers.append(lambda state: self._boundary())
        elif event is Event.FIT_END:
            handlers.append(lambda state: self.finish())
        elif event in PHASE_AFTER:
            phase, switch = PHASE_AFTER[event], self._switch
            handlers.append(lambda state: switch(phase))
        return handlers

    def _timed(self, label: str, handler: Handler) -> Handler:
        switch = self._switch

        def timed(state: State) -> None:
            switch(label)
            handler(state)

        return timed

    def timed_handler(self, label: str, handler: Handler) -> Handler:
        """`handler`, charged to `label` (e.g. `method:ema`) and then back to the phase it interrupted: for
        a loop whose callbacks run inside the loop's own phases."""
        check_phase(label)

        def timed(state: State) -> None:
            record = self._record
            if record is None:
                handler(state)
                return
            back = record.phase
            self._switch(label)
            handler(state)
            self._switch(back)

        return timed

    def _watch_fit_start(self, state: State) -> None:
        if self.schedule.action(state.clock.steps).timed:
            self._install()
            self._boundary()

    def _watch_batch_end(self, state: State) -> None:
        if self.schedule.action(state.clock.steps).timed:
            self._install()  # the trainer's end-of-step hook then opens the next step's record

    # --------------------------------------------------------------------------------- timing
    def _stamp(self) -> Any:
        if not self._cuda:
            return time.perf_counter()
        event = self._events.pop() if self._events else torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self._device))  # the trainer's device, not the current one
        return event

    def _switch(self, phase: str) -> None:
        record = self._record
        if record is None:
            return
        if self._cuda:
            record.marks.append((phase, self._stamp()))
        else:
            now = time.perf_counter()
            totals = record.totals
            totals[record.phase] = totals.get(record.phase, 0.0) + now - record.last
            record.last = now
        record.phase = phase
        if self._range is not None:
            self._range.__exit__(None, None, None)
            self._range = torch.profiler.record_function(phase)
            self._range.__enter__()

    def _on_phase(self, phase: str) -> None:
        if phase == DATA:
            self._boundary()
        else:
            self._switch(phase)

    # ------------------------------------------------------------------------------ a hand loop
    def phase(self, name: str) -> Phase:
        """`with profiler.phase("forward"): ...` charges the work inside to `name`: one of
        `profile.phases.PHASES`, or `method:NAME` / `callback:NAME` for work of one's own."""
        found = self._phases.get(name)
        if found is None:
            found = self._phases[name] = Phase(self, check_phase(name))
        return found

    def enter_phase(self, name: str) -> None:
        """A `phase` context starts (outside the window: nothing to do)."""
        record = self._record
        if record is not None:
            self._stack.append(record.phase)
            self._switch(name)

    def leave_phase(self) -> None:
        """A `phase` context ends: the enclosing phase resumes, or `other` at the top level."""
        if self._record is not None:
            interrupted = self._stack.pop() if self._stack else OTHER  # the phase this one interrupted
            self._switch(interrupted if self._stack else OTHER)

    def mark(self, name: str) -> None:
        """The phase `name` starts now (for loops whose hooks mark boundaries rather than enclose work)."""
        if self._record is not None:
            self._switch(check_phase(name))

    def step(self, batch: Any = None, *, samples: int | None = None, tokens: int | None = None) -> None:
        """A step of a hand loop is over (after its optimizer step). `batch` (inputs and targets, a mapping
        or a `Batch`) gives its samples and tokens unless they are given."""
        state = self.state
        if not isinstance(state, LoopState):
            raise UsageError("profiler.step() is for a loop of your own: call profiler.attach_loop(model) first")
        clock = state.clock
        clock.steps += 1
        if self._record is not None:
            if batch is not None:
                state.batch = Batch.of(batch)
            if samples is None:
                samples = state.batch.samples if batch is not None else 0
            if tokens is None:
                tokens = state.batch.tokens if batch is not None else 0
            clock.samples += samples
            clock.tokens += tokens
            if self._census_samples and samples:
                clock.flops += self._step_flops * samples / self._census_samples
            else:
                clock.flops += self._step_flops
        if self._record is not None or self.schedule.action(clock.steps).timed:
            self._boundary()

    def _boundary(self) -> None:
        """A step is over (or the run starts): close the step timed so far and open the next one."""
        assert self.state is not None
        clock = self.state.clock
        record, stamp = self._record, None
        action = self.schedule.action(clock.steps)
        self._stack.clear()
        if record is not None:
            if clock.steps == record.index:  # no step ran since (an epoch ended without a batch)
                self._switch(DATA)
                return
            if self._counting is not None:
                self._end_census(record)
            if action is Action.ACTIVE:  # before the stamp, so that starting them is charged to a step never measured
                self._cpu_window(True)
                self._set_tracing(True)
            stamp = self._stamp()
            self._close(record, stamp)
            self._record = None
        self._cpu_window(action is Action.ACTIVE)
        self._set_tracing(action is Action.ACTIVE)
        if not action.timed:
            self._uninstall()
            return
        if not self._memory_reset:
            self._reset_peak_memory()
            self._memory_reset = True
        if stamp is None:
            stamp = self._stamp()
        self._record = _Step(
            index=clock.steps,
            action=action,
            phase=DATA,
            start=stamp,
            last=stamp if not self._cuda else 0.0,
            marks=[(DATA, stamp)] if self._cuda else [],
            samples=clock.samples,
            tokens=clock.tokens,
            flops=clock.flops,
        )
        if action is Action.WARMUP and self._counting is None and self._census_due():
            self._counting = contextlib.ExitStack()
            if self.take_census and self.census is None:
                self._operators = self._counting.enter_context(OperatorCounter())
            if self._loop_flops is not None and not self._step_flops:
                self._counting.enter_context(self._loop_flops.count(LOOP_STEP))

    def _census_due(self) -> bool:
        """The first warmup step counts operators (and, in a hand loop, FLOPs) once."""
        return (self.take_census and self.census is None) or (self._loop_flops is not None and not self._step_flops)

    def _end_census(self, record: _Step) -> None:
        """The census step is over: keep its operators, its FLOPs (a hand loop) and its data kind."""
        state = self.state
        assert self._counting is not None and state is not None
        self._counting.close()
        self._counting = None
        if self._operators is not None:
            self.census = self._operators.census(self.default_dtype())
            self._operators = None
        if self._loop_flops is not None and not self._step_flops:
            self._step_flops = self._loop_flops.charge(LOOP_STEP)
            self._census_samples = state.clock.samples - record.samples
        if self.data_kind is None and state.batch is not None:
            self.data_kind = infer_data_kind(state.batch.inputs)

    def _close(self, record: _Step, stamp: Any) -> None:
        assert self.state is not None
        if record.action is not Action.ACTIVE:
            if self._cuda:
                self._events.extend(event for _, event in record.marks[1:])
            return
        clock = self.state.clock
        record.samples, record.tokens = clock.samples - record.samples, clock.tokens - record.tokens
        record.flops = clock.flops - record.flops
        if self._cuda:
            record.marks.append(("", stamp))
            self._pending.append(record)
            if len(self._pending) >= CUDA_RESOLVE_EVERY:
                self._resolve()
        else:
            record.totals[record.phase] = record.totals.get(record.phase, 0.0) + stamp - record.last
            self._commit(record, stamp - record.start)

    def _cpu_window(self, on: bool) -> None:
        """Account the CPU time of this process and its loader workers over each run of active steps
        (on CPU training, workers compete with training for the same cores)."""
        if self._cuda or on == (self._cpu_mark is not None):
            return
        if on:
            self._cpu_mark = cpu_seconds()
            return
        assert self._cpu_mark is not None
        main, workers = cpu_seconds()
        self.measured.main_cpu += main - self._cpu_mark[0]
        self.measured.worker_cpu += workers - self._cpu_mark[1]
        self._cpu_mark = None

    def _commit(self, record: _Step, seconds: float) -> None:
        measured = self.measured
        measured.steps.append(record.index)
        measured.step_seconds.append(seconds)
        for phase, spent in record.totals.items():
            measured.phases[phase] = measured.phases.get(phase, 0.0) + spent
        measured.samples += record.samples
        measured.tokens += record.tokens
        measured.flops += record.flops

    def _resolve(self) -> None:
        """Turn pending CUDA marks into phase times (one synchronization for the batch)."""
        if not self._pending:
            return
        self._pending[-1].marks[-1][1].synchronize()
        for record in self._pending:
            marks = record.marks
            for (phase, begin), (_, end) in itertools.pairwise(marks):
                record.totals[phase] = record.totals.get(phase, 0.0) + begin.elapsed_time(end) / 1e3
            self._commit(record, marks[0][1].elapsed_time(marks[-1][1]) / 1e3)
            # the last mark may start the next step: recycle all but it
            self._events.extend(event for _, event in marks[:-1])
        self._pending = []

    def default_dtype(self) -> str:
        assert self.state is not None
        for parameter in self.state.model.parameters():
            if parameter.is_floating_point():
                return dtype_name(parameter.dtype)
        return "fp32"

    # -------------------------------------------------------------------------------- tracing
    def _set_tracing(self, on: bool) -> None:
        if self.trace_path is None or on == (self._torch_profiler is not None) or (on and self.traced):
            return
        if on:
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self._cuda:
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._torch_profiler = torch.profiler.profile(activities=activities, record_shapes=True)
            self._torch_profiler.start()
            self._range = torch.profiler.record_function(DATA)
            self._range.__enter__()
        else:
            self._range.__exit__(None, None, None)
            self._range = None
            self._torch_profiler.stop()
            self._torch_profiler.export_chrome_trace(str(self.trace_path))
            self._torch_profiler = None
            self.traced = True  # the first window only

    # ------------------------------------------------------------------------------- memory
    def _reset_peak_memory(self) -> None:
        assert self.state is not None
        if self._cuda:
            torch.cuda.reset_peak_memory_stats(self.state.device)
            return
        with contextlib.suppress(OSError):  # Linux: writing 5 resets the peak resident set size (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")

    def peak_memory(self) -> tuple[float, str]:
        """Peak memory since the window started (bytes) and what was measured."""
        assert self.state is not None
        if self._cuda:
            return float(torch.cuda.max_memory_allocated(self.state.device)), "CUDA allocator peak"
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return float(line.split()[1]) * 1024, "peak RSS of this process"
        except OSError:
            pass
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "peak RSS of this process"

    # ------------------------------------------------------------------------------- results
    def finish(self) -> None:
        """Stop timing: drop the step opened at the last boundary, stop the trace, resolve CUDA marks.
        Called at `fit_end`, and by `report()` for an interrupted run."""
        if self._finished:
            return
        self._finished = True
        if self._counting is not None:
            self._counting.close()
            self._counting = self._operators = None
        self._record = None
        self._cpu_window(False)
        self._set_tracing(False)
        self._resolve()
        if self.trainer is not None and self._installed:
            self._uninstall()

    def __enter__(self) -> Profiler:
        return self

    def __exit__(self, *exc: object) -> None:
        """Leave nothing running (operator census, trace) even when training raised."""
        self.finish()

    def report(self, *, machine: Machine | None = None) -> Profile:
        """The profile of the active steps: phases, throughput, MFU, memory and the verdict."""
        from algospeed.profile.report import build_profile

        if self.state is None:
            raise UsageError("the profiler was never attached to a trainer or loop")
        self.finish()
        return build_profile(self, machine or self.machine)
