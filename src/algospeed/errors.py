"""Errors that reach the user: each carries one clear line and an exit code."""

from __future__ import annotations


class AlgospeedError(Exception):
    """An error the command line reports as one line, without a traceback."""

    exit_code: int = 1


class UsageError(AlgospeedError, ValueError):
    """The user asked for something malformed or unknown (exit code 2)."""

    exit_code = 2


class CheckpointError(AlgospeedError):
    """A checkpoint is missing, corrupt or belongs to another run (exit code 2)."""

    exit_code = 2


class DivergenceError(AlgospeedError):
    """Training produced a non-finite loss (exit code 3)."""

    exit_code = 3
