"""One study process per folder: an exclusive lock that names its holder, released when the process ends
(however it ends: the operating system drops the lock of a killed process)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from algospeed.errors import UsageError

LOCK_NAME = ".study.lock"


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """Hold the folder's lock while the body runs; a second study on the same folder is a usage error that
    says which process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    handle = open(path, "a+")  # noqa: SIM115 (held open for the whole study: the lock lives with it)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise UsageError(f"{folder} is in use by {holder}; wait for it to finish or stop it") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} (running since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        yield
    finally:
        handle.close()
