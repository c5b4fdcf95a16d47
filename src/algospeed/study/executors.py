"""Executors run a study's runs: local worker processes by default, or a Ray cluster.

Both call the same `execute_run` on the same payloads, so a study gives the same results either
way. Each local worker is pinned to its share of the machine's threads so runs don't fight.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from algospeed.core.status import RunStatus
from algospeed.errors import DivergenceError, UsageError
from algospeed.study.outcome import RunOutcome

MAX_ATTEMPTS = 2  # a run whose worker dies twice is recorded as failed
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): a signal for this process when its parent dies


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to run one study cell. `spec` is a `RunSpec` as JSON: validating it loads the
    run's plugins first (and refuses any whose source changed), so every worker builds the same run."""

    key: str
    spec: dict[str, Any]
    checkpoint_dir: str
    threads: int
    loggers: tuple[str, ...] = ()  # logger specs of this run (`integrations.loggers`)


def execute_run(task: RunTask) -> RunOutcome:
    """Train one run (resuming from its checkpoints if a previous attempt left some) and return how it
    ended with its curve; runs in a worker process."""
    import torch

    from algospeed.core.checkpoint import latest_checkpoint
    from algospeed.core.effective import effective_hyperparameters
    from algospeed.integrations.loggers import logger_from_spec
    from algospeed.run_spec import RunSpec, build_trainer

    torch.set_num_threads(task.threads)
    start, cpu_start, load_start = time.perf_counter(), time.process_time(), _load_per_core()
    checkpoints = Path(task.checkpoint_dir)
    trainer, hyperparameters, tested = None, {}, {}
    try:
        callbacks = [logger_from_spec(text) for text in task.loggers]
        trainer = build_trainer(RunSpec.model_validate(task.spec), callbacks=callbacks, checkpoint_dir=checkpoints)
        hyperparameters = effective_hyperparameters(trainer.state)  # as built (a failed run keeps this)
        result = trainer.fit(resume_from=checkpoints if latest_checkpoint(checkpoints) else None)
        status, error, reason, tested = result.status, "", result.stop_reason, result.test_metrics
        hyperparameters = effective_hyperparameters(trainer.state)  # as trained: methods that wrap at fit start
    except DivergenceError as diverged:
        status, error, reason = RunStatus.DIVERGED, str(diverged), None
    except Exception as failure:  # a failed run is a result, not the end of the study
        status, error, reason = RunStatus.FAILED, "".join(traceback.format_exception_only(failure)).strip(), None
    if status is not RunStatus.INTERRUPTED:
        shutil.rmtree(checkpoints, ignore_errors=True)
    load_end = _load_per_core()
    return RunOutcome(
        key=task.key,
        status=status,
        points=tuple(trainer.state.curve) if trainer is not None else (),
        error=error,
        wall_seconds=time.perf_counter() - start,
        stop_reason=reason,
        schedule_end=trainer.state.schedule(1.0) if trainer is not None else None,
        eval_fingerprint=eval_fingerprint(trainer) if trainer is not None else None,
        hyperparameters=hyperparameters,
        test_metrics=tested,
        cpu_seconds=time.process_time() - cpu_start,
        load=None if load_start is None or load_end is None else (load_start + load_end) / 2,
    )


def _load_per_core() -> float | None:
    """The machine's one-minute load average per core (None where the platform has none)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return None


def eval_fingerprint(trainer: Any) -> str:
    """Identifies what the curve was judged on: the split (`validation`, or `test` where the workload has no
    validation split), its size and, for in-memory data, its targets; so that the fairness checks can tell
    whether every arm was judged on the same data, and whether any was judged on test data."""
    loader = trainer.eval_data
    if loader is None:
        return "none"
    split = "test" if trainer.test_data is None else "validation"
    targets = getattr(loader, "targets", None)
    digest = hashlib.sha256(targets.cpu().numpy().tobytes()).hexdigest()[:16] if targets is not None else "-"
    return f"{split}:{len(loader)}:{digest}"


OnStart = Callable[[str], None]
OnFinish = Callable[[RunOutcome], None]


def stop_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the study process that started it is gone (killed, even by SIGKILL), so
    that a rerun never races an orphan that writes or deletes its checkpoints. The kernel is asked to kill
    the worker with its parent (Linux); a watchdog thread covers the other platforms."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the request took hold
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="algospeed-parent-watch", daemon=True).start()


def default_workers() -> int:
    """One worker per two cores (each with two threads), at least one."""
    return max(1, (os.cpu_count() or 1) // 2)


class LocalExecutor:
    """Worker processes on this machine, each with `cores // workers` threads."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = default_workers() if workers is None else workers
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {self.workers}")

    @property
    def threads(self) -> int:
        return max(1, (os.cpu_count() or 1) // self.workers)

    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        attempts = dict.fromkeys((task.key for task in tasks), 0)
        queue = list(tasks)
        while queue:
            queue = self._run_pool(queue, attempts, on_start, on_finish)

    def _run_pool(
        self, tasks: list[RunTask], attempts: dict[str, int], on_start: OnStart, on_finish: OnFinish
    ) -> list[RunTask]:
        """Run `tasks` in one pool; return the tasks to retry after a worker died."""
        retry: list[RunTask] = []
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=get_context("spawn"),
            initializer=stop_with_parent,
            initargs=(os.getpid(),),
        ) as pool:
            pending: dict[Future, RunTask] = {}
            for task in tasks:
                on_start(task.key)
                attempts[task.key] += 1
                pending[pool.submit(execute_run, task)] = task
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        on_finish(future.result())
                    except BrokenProcessPool:
                        if attempts[task.key] >= MAX_ATTEMPTS:
                            on_finish(RunOutcome.died(task.key, RunStatus.FAILED))
                        else:
                            on_finish(RunOutcome.died(task.key, RunStatus.INTERRUPTED))
                            retry.append(task)
        return retry


class RayExecutor:
    """The same runs as Ray tasks on a cluster (`address`), or on a local Ray when none is given."""

    def __init__(self, address: str | None = None, threads: int = 1) -> None:
        try:
            import ray
        except ImportError:
            raise UsageError("the Ray executor needs ray: pip install 'algospeed[ray]'") from None
        self.ray = ray
        self.address = address
        self.threads = threads

    def run(self, tasks: Sequence[RunTask], on_start: OnStart, on_finish: OnFinish) -> None:
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(num_cpus=self.threads, max_retries=MAX_ATTEMPTS - 1)(execute_run)
        pending = {}
        for task in tasks:
            on_start(task.key)
            pending[remote.remote(task)] = task
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for reference in done:
                task = pending.pop(reference)
                try:
                    on_finish(ray.get(reference))
                except ray.exceptions.RayError as error:
                    on_finish(RunOutcome.died(task.key, RunStatus.FAILED, str(error).splitlines()[0]))
