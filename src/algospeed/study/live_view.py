"""A study's progress on stderr. In a terminal: a live table. Anywhere else (a file, a pipe, CI): one line at
each finished run and at least every `PROGRESS_LINE_SECONDS`, so that a redirected study shows it is alive."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table

from algospeed.progress_bar import PROGRESS_LINE_SECONDS, duration_text
from algospeed.terminal import plain


@dataclass
class StudyProgress:
    """Counts for the live view. Runs are handed to the executor ahead of time; at most `workers` of those
    in flight are training, the others wait their turn."""

    total: int
    workers: int | None  # None: the executor does not say (Ray), and every run in flight counts as running
    done: int = 0
    finished_here: int = 0
    in_flight: int = 0
    failed: int = 0
    started: float = 0.0
    best: str = "-"

    @property
    def running(self) -> int:
        return self.in_flight if self.workers is None else min(self.in_flight, self.workers)

    @property
    def left(self) -> int:
        """Runs neither finished nor training (those queued behind the workers included)."""
        return self.total - self.done - self.running

    def eta_seconds(self) -> float | None:
        """Time left at this session's pace (runs finished before a restart do not count towards it)."""
        if self.finished_here == 0:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.finished_here * (self.total - self.done)

    def _cells(self) -> list[str]:
        eta = self.eta_seconds()
        shown_eta = "-" if eta is None else duration_text(eta)
        return [str(self.done), str(self.running), str(self.left), str(self.failed), shown_eta, self.best]

    def table(self) -> Table:
        table = Table(show_header=True, box=None)
        for column in ("done", "running", "left", "failed", "ETA", "best speedup at target"):
            table.add_column(column)
        table.add_row(*plain(*self._cells()))
        return table

    def summary(self) -> str:
        """The counts in words: `12/27 done, 1 running, 14 left, 0 failed, ETA 3m 05s, best speedup at target -`."""
        done, running, left, failed, eta, best = self._cells()
        return (
            f"{done}/{self.total} done, {running} running, {left} left, {failed} failed, ETA {eta}, "
            f"best speedup at target {best}"
        )


class StudyView:
    """Shows `progress` on `console` while the study runs (a context manager); `update` after every change."""

    def __init__(self, progress: StudyProgress, console: Console, interval: float = PROGRESS_LINE_SECONDS) -> None:
        self.progress = progress
        self.console = console
        self.interval = interval
        self._live = Live(progress.table(), console=console, transient=False, auto_refresh=False)
        self._stop = threading.Event()
        self._printed = 0.0
        self._shown = ""
        self._lock = threading.Lock()
        self._beat = threading.Thread(target=self._heartbeat, name="algospeed-study-progress", daemon=True)

    @property
    def lines(self) -> bool:
        """Whether progress goes out as lines (not a terminal) rather than as a live table."""
        return not self.console.is_terminal

    def __enter__(self) -> StudyView:
        if self.lines:
            self._print_line()
            self._beat.start()
        else:
            self._live.start(refresh=True)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.lines:
            self._stop.set()
            self._beat.join()
            if self.progress.summary() != self._shown:
                self._print_line()
        else:
            self._live.update(self.progress.table(), refresh=True)
            self._live.stop()

    def update(self, finished: bool = False) -> None:
        """Redraw the table; as lines, print one when a run has just `finished`."""
        if not self.lines:
            self._live.update(self.progress.table(), refresh=True)
        elif finished:
            self._print_line()

    def _print_line(self) -> None:
        """`study 05:41:09: ` and the counts, as one line of a log."""
        with self._lock:
            self._shown = self.progress.summary()
            self.console.print(
                f"study {time.strftime('%H:%M:%S')}: {self._shown}", markup=False, highlight=False, soft_wrap=True
            )
            self._printed = time.monotonic()

    def _heartbeat(self) -> None:
        """Print a line whenever `interval` seconds pass without one."""
        while not self._stop.wait(max(0.0, self._printed + self.interval - time.monotonic())):
            if time.monotonic() - self._printed >= self.interval:
                self._print_line()
