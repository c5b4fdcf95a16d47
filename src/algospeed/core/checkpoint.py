"""Checkpoint files: written atomically, read with `weights_only=True`, never mistaken when partial.

A checkpoint is written to a temporary name, flushed to disk, then renamed; a process killed while
writing leaves only the temporary file, which is never read, and the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from algospeed.errors import CheckpointError

FORMAT = "algospeed-checkpoint-1"
_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\.ckpt-\d+\.pt\.tmp-\d+$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:09d}.pt"


def write_checkpoint(directory: Path, step: int, payload: dict[str, Any], meta: dict[str, Any], keep: int = 2) -> Path:
    """Atomically write `payload` (tensors) with `meta` (JSON) as the checkpoint of `step`."""
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, step)
    temporary = directory / f".{final.name}.tmp-{os.getpid()}"
    try:
        with open(temporary, "wb") as handle:
            torch.save({"format": FORMAT, "meta": json.dumps(meta), **payload}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    _fsync_directory(directory)
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the temporary files that a process killed while writing a checkpoint left (never a complete
    checkpoint, never this process's own); returns what was removed."""
    if not directory.is_dir():
        return []
    mine = f".tmp-{os.getpid()}"
    stale = [p for p in directory.iterdir() if _TEMPORARY.match(p.name) and not p.name.endswith(mine)]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The tensors and the JSON metadata of a checkpoint; anything wrong is a `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(error).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an algospeed checkpoint")
    try:
        meta = json.loads(payload.pop("meta"))
    except (KeyError, TypeError, json.JSONDecodeError):
        raise CheckpointError(f"checkpoint {path} has corrupt metadata") from None
    return payload, meta


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
