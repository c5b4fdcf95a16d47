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


class RunFailure(AlgospeedError):
    """Training failed (every run of a study, or an error while training a run): exit code 3."""

    exit_code = 3


class DivergenceError(AlgospeedError):
    """Training produced a non-finite loss (exit code 3)."""

    exit_code = 3


def usage_error_from_validation(error: Exception, what: str) -> UsageError:
    """One line per invalid field of a pydantic `ValidationError`, as a usage error about `what`."""
    problems = []
    for item in getattr(error, "errors", lambda: [])():
        field = ".".join(str(part) for part in item.get("loc", ())) or "value"
        problems.append(f"{field}: {str(item.get('msg', '')).removeprefix('Value error, ')}")
    return UsageError(f"invalid {what}: " + ("; ".join(problems) or str(error)))
