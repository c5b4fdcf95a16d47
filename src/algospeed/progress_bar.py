"""A rich progress bar for a training run: progress, loss, quality, samples/s (tokens/s for token data) and ETA."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from algospeed.core.callback import Callback
from algospeed.core.state import State

REFRESH_SECONDS = 0.25


class ProgressBar(Callback):
    """Shows the run's progress; refreshes at most every quarter second so that it costs nothing."""

    name = "progress_bar"

    def __init__(self, label: str, metric: str, console: Console | None = None) -> None:
        self.metric = metric
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[stats]}"),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(escape(label), total=1.0, stats="")
        self._last_refresh = 0.0

    def on_fit_start(self, state: State) -> None:
        self._progress.start()
        self._update(state)

    def on_batch_end(self, state: State) -> None:
        now = time.monotonic()
        if now - self._last_refresh >= REFRESH_SECONDS:
            self._last_refresh = now
            self._update(state)

    def on_eval_end(self, state: State) -> None:
        self._update(state)

    def on_fit_end(self, state: State) -> None:
        self._update(state)
        self._progress.stop()

    def close(self) -> None:
        """Stop drawing (also after an interruption or an error)."""
        self._progress.stop()

    def _update(self, state: State) -> None:
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
                parts.append(f"ETA {clock.train_seconds * (1 - progress) / progress:,.0f}s")
        self._progress.update(self._task, completed=progress, stats="  ".join(parts))
