"""SIGINT and SIGTERM as a request to stop at the next step boundary (after a checkpoint); a second
signal stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from algospeed.core.status import StopReason

STOP_SIGNALS = {signal.SIGINT: StopReason.SIGINT, signal.SIGTERM: StopReason.SIGTERM}


class StopSignals:
    """Records the first stop signal received while `listening()`."""

    def __init__(self) -> None:
        self.received: int | None = None

    @property
    def reason(self) -> StopReason | None:
        return None if self.received is None else STOP_SIGNALS[signal.Signals(self.received)]

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Install the handlers (main thread only: elsewhere signals cannot be caught) and restore the old ones."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum: int, frame: Any) -> None:
            if self.received is not None:
                raise KeyboardInterrupt
            self.received = signum

        previous = {sig: signal.signal(sig, request_stop) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
