"""A training run's progress: in a terminal a rich bar (progress, loss, quality, samples/s or tokens/s for token
data, ETA); into a file or a pipe one line of the same figures at the start, every `PROGRESS_LINE_SECONDS` and
at the end, so that a redirected run shows it is alive."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from algospeed.core.callback import Callback
from algospeed.core.state import State

REFRESH_SECONDS = 0.25
PROGRESS_LINE_SECONDS = 30.0


def duration_text(seconds: float) -> str:
    """`45s`, `12m 05s`, `3h 02m`: an ETA a person reads at a glance."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


class ProgressBar(Callback):
    """Shows the run's progress on `console` (stderr by default); a bar refreshes at most every quarter second
    so that it costs nothing, lines come every `interval` seconds."""

    name = "progress_bar"

    def __init__(
        self, label: str, metric: str, console: Console | None = None, interval: float = PROGRESS_LINE_SECONDS
    ) -> None:
        self.label = label
        self.metric = metric
        self.console = console or Console(stderr=True)
        self.lines = not self.console.is_terminal
        self.interval = interval if self.lines else REFRESH_SECONDS
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(escape(label), total=1.0, stats="")
        self._last_refresh = 0.0

    def on_fit_start(self, state: State) -> None:
        if not self.lines:
            self._progress.start()
        self._update(state)

    def on_batch_end(self, state: State) -> None:
        if time.monotonic() - self._last_refresh >= self.interval:
            self._update(state)

    def on_eval_end(self, state: State) -> None:
        if not self.lines:
            self._update(state)

    def on_fit_end(self, state: State) -> None:
        self._update(state)
        self.close()

    def close(self) -> None:
        """Stop drawing (also after an interruption or an error)."""
        if not self.lines:  # stopping rich's bar off a terminal would print an empty line
            self._progress.stop()

    def _update(self, state: State) -> None:
        self._last_refresh = time.monotonic()
        stats = self._stats(state)
        if self.lines:
            line = f"{self.label}: {state.progress:.0%}, step {state.clock.steps}, {', '.join(stats)}".rstrip(", ")
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self._progress.update(self._task, completed=state.progress, stats="  ".join(stats))

    def _stats(self, state: State) -> list[str]:
        clock, progress = state.clock, state.progress
        parts = []
        if state.loss is not None:
            parts.append(f"loss {state.loss.item():.4f}")
        if state.curve and self.metric in state.curve[-1].metrics:
            parts.append(f"{self.metric} {state.curve[-1].metrics[self.metric]:.4f}")
        if clock.train_seconds > 0:
            if clock.tokens > 0:  # token data: tokens are the throughput that compares across context lengths
                parts.append(f"{clock.tokens / clock.train_seconds:,.0f} tokens/s")
            else:
                parts.append(f"{clock.samples / clock.train_seconds:,.0f} samples/s")
            if progress > 0:
                parts.append(f"ETA {duration_text(clock.train_seconds * (1 - progress) / progress)}")
        return parts
