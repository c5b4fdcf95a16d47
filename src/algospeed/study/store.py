"""The study store: one SQLite file (WAL, transactions) that survives a crash.

A run's curve and its `completed` status are written in one transaction, so a study killed at any
moment keeps every finished run whole and loses only runs in flight; the run key is the primary
key, so a restart never duplicates one.
"""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from algospeed.core.result import CurvePoint
from algospeed.core.status import RunStatus
from algospeed.errors import UsageError
from algospeed.study.outcome import RunOutcome
from algospeed.study.records import ReferenceCost, RunRecord

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    key TEXT PRIMARY KEY,
    arm TEXT NOT NULL,
    budget TEXT NOT NULL,
    seed INTEGER NOT NULL,
    trial INTEGER,
    params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    finished_at REAL,
    wall_seconds REAL,
    error TEXT,
    stop_reason TEXT,
    schedule_end REAL,
    eval_fingerprint TEXT,
    hyperparameters TEXT NOT NULL DEFAULT '{}',
    test_metrics TEXT NOT NULL DEFAULT '{}',
    cpu_seconds REAL,
    load REAL
);
CREATE TABLE points (
    run_key TEXT NOT NULL REFERENCES runs(key),
    idx INTEGER NOT NULL,
    step INTEGER NOT NULL,
    epoch REAL NOT NULL,
    samples INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    train_seconds REAL NOT NULL,
    flops REAL NOT NULL,
    progress REAL NOT NULL,
    train_loss REAL NOT NULL,
    extra_steps INTEGER NOT NULL,
    eval_seconds REAL NOT NULL DEFAULT 0,
    eval_flops REAL NOT NULL DEFAULT 0,
    energy_joules REAL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_key, idx)
);
"""
STORE_NAME = "study.sqlite"
POINT_FIELDS = (
    "step",
    "epoch",
    "samples",
    "tokens",
    "train_seconds",
    "flops",
    "progress",
    "train_loss",
    "extra_steps",
    "eval_seconds",
    "eval_flops",
    "energy_joules",
)
JSON_COLUMNS = ("params", "hyperparameters", "test_metrics")


@dataclass(frozen=True)
class StoredRun:
    """One row of the store's runs: a cell of the grid and how it stands."""

    key: str
    arm: str
    budget: str
    seed: int
    trial: int | None  # a tuning trial's index; None for a run of the grid
    params: dict[str, Any]  # the hyperparameters the harness drew (a trial) or chose (a tuned grid run)
    status: RunStatus
    attempts: int
    started_at: float | None
    finished_at: float | None
    wall_seconds: float | None
    error: str | None
    stop_reason: str | None
    schedule_end: float | None
    eval_fingerprint: str | None
    hyperparameters: dict[str, Any]  # what the run really trained with (`core.effective`)
    test_metrics: dict[str, float]
    cpu_seconds: float | None  # the worker's CPU time for the run
    load: float | None  # the machine's load average per core while it ran

    def __post_init__(self) -> None:
        object.__setattr__(self, "status", RunStatus(self.status))
        for name in JSON_COLUMNS:
            value = getattr(self, name)
            if isinstance(value, str):
                object.__setattr__(self, name, json.loads(value))


RUN_COLUMNS = tuple(f.name for f in fields(StoredRun))


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (`=cmd|...`, `+`, `-`, `@`) gets a leading quote, as
    OWASP advises for CSV files; numbers pass as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class StudyStore:
    """Read and write a study's runs; every write is its own transaction."""

    def __init__(self, path: str | Path) -> None:
        """Open the store at `path` (see `create` and `open_existing`, which check what is there first)."""
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")

    @classmethod
    def create(cls, path: str | Path) -> StudyStore:
        """A new, empty store of the current schema at `path` (absent, or an empty database)."""
        store = cls(path)
        store.connection.executescript(SCHEMA)
        store.set_meta("schema", SCHEMA_VERSION)
        return store

    @staticmethod
    def is_empty(path: str | Path) -> bool:
        """Whether `path` is absent, zero bytes, or an SQLite database without a single table (nothing to lose)."""
        file = Path(path)
        if not file.exists() or (file.is_file() and file.stat().st_size == 0):
            return True
        try:
            with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as probe:
                return probe.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        except sqlite3.DatabaseError:
            return False

    @classmethod
    def open_existing(cls, path: str | Path) -> StudyStore:
        """The store at `path`, after checking, without writing to it, that it is an algospeed study store
        of this schema: a foreign or older file is a usage error and stays untouched."""
        file = Path(path)
        if not file.is_file():
            raise UsageError(f"no study store at {file}")
        try:
            with sqlite3.connect(f"file:{file}?mode=ro", uri=True) as probe:
                row = probe.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        except sqlite3.DatabaseError as error:
            raise UsageError(f"{file} is not an algospeed study store ({error})") from None
        if row is None or json.loads(row[0]) != SCHEMA_VERSION:
            version = "none" if row is None else row[0]
            raise UsageError(
                f"{file} was written by another algospeed version (store schema {version}, this one reads "
                f"{SCHEMA_VERSION}); rerun the study into a new folder"
            )
        return cls(file)

    def close(self) -> None:
        self.connection.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    # ------------------------------------------------------------------------------------ meta
    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value, sort_keys=True)))

    def meta(self, key: str) -> Any:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    # ------------------------------------------------------------------------------------ runs
    def add_runs(self, runs: list[tuple[str, str, str, int, int | None, dict[str, Any]]]) -> None:
        """Register (key, arm, budget, seed, trial, params) as pending; runs already known keep their status."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO runs (key, arm, budget, seed, trial, params, status) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*run[:5], json.dumps(run[5], sort_keys=True), RunStatus.PENDING.value) for run in runs],
            )

    def mark_running(self, key: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = ?, attempts = attempts + 1, started_at = ? WHERE key = ?",
                (RunStatus.RUNNING.value, time.time(), key),
            )

    def finish(self, outcome: RunOutcome) -> None:
        """Store a run's whole curve, final status and what the fairness checks read, atomically."""
        key = outcome.key
        with self.transaction() as db:
            db.execute("DELETE FROM points WHERE run_key = ?", (key,))
            db.executemany(
                f"INSERT INTO points VALUES (?, ?, {', '.join('?' * len(POINT_FIELDS))}, ?)",
                [
                    (key, i, *(getattr(p, f) for f in POINT_FIELDS), json.dumps(p.metrics, sort_keys=True))
                    for i, p in enumerate(outcome.points)
                ],
            )
            db.execute(
                "UPDATE runs SET status = ?, finished_at = ?, wall_seconds = ?, error = ?, stop_reason = ?, "
                "schedule_end = ?, eval_fingerprint = ?, hyperparameters = ?, test_metrics = ?, cpu_seconds = ?, "
                "load = ? WHERE key = ?",
                (
                    outcome.status.value,
                    time.time(),
                    outcome.wall_seconds,
                    outcome.error,
                    None if outcome.stop_reason is None else outcome.stop_reason.value,
                    outcome.schedule_end,
                    outcome.eval_fingerprint,
                    json.dumps(outcome.hyperparameters, sort_keys=True),
                    json.dumps(outcome.test_metrics, sort_keys=True),
                    outcome.cpu_seconds,
                    outcome.load,
                    key,
                ),
            )

    def release_unfinished(self) -> int:
        """Runs left `running` by a killed study go back to `pending`; returns how many."""
        with self.transaction() as db:
            return db.execute(
                "UPDATE runs SET status = ? WHERE status = ?", (RunStatus.PENDING.value, RunStatus.RUNNING.value)
            ).rowcount

    def runs(self, keys: Collection[str] | None = None) -> list[StoredRun]:
        """The stored runs (those with `keys` only, when given), by key."""
        rows = self.connection.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs ORDER BY key").fetchall()
        runs = [StoredRun(*row) for row in rows]
        return runs if keys is None else [run for run in runs if run.key in keys]

    def status_counts(self) -> dict[RunStatus, int]:
        rows = self.connection.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
        return {RunStatus(status): count for status, count in rows}

    def records(self, metric: str, higher_is_better: bool, keys: Collection[str] | None = None) -> list[RunRecord]:
        """The runs that ended (those with `keys`, when given) as analysis records judged by `metric`, by key."""
        return list(self.records_by_key(metric, higher_is_better, keys).values())

    def records_by_key(
        self, metric: str, higher_is_better: bool, keys: Collection[str] | None = None
    ) -> dict[str, RunRecord]:
        """Run key -> analysis record, for the runs that ended (those with `keys`, when given)."""
        return {
            run.key: RunRecord(
                arm=run.arm,
                budget=run.budget,
                seed=run.seed,
                status=run.status,
                points=tuple(self.points(run.key)),
                metric=metric,
                higher_is_better=higher_is_better,
            )
            for run in self.runs(keys)
            if run.status.ended
        }

    def set_reference_cost(self, reference: ReferenceCost) -> None:
        self.set_meta("reference_cost", asdict(reference))

    def reference_cost(self) -> ReferenceCost | None:
        """The reference-cost calibration the study stored when it started."""
        calibration = self.meta("reference_cost")
        return ReferenceCost(**calibration) if calibration else None

    def points(self, key: str) -> list[CurvePoint]:
        rows = self.connection.execute(
            f"SELECT {', '.join(POINT_FIELDS)}, metrics FROM points WHERE run_key = ? ORDER BY idx", (key,)
        ).fetchall()
        return [
            CurvePoint(**dict(zip(POINT_FIELDS, row[:-1], strict=True)), metrics=json.loads(row[-1])) for row in rows
        ]

    # ---------------------------------------------------------------------------------- export
    def rows(self) -> list[dict[str, Any]]:
        """One row per curve point with its run's arm, budget, seed and status (for CSV and pandas)."""
        rows = []
        for run in self.runs():
            for point in self.points(run.key):
                row: dict[str, Any] = {
                    "key": run.key,
                    "arm": run.arm,
                    "budget": run.budget,
                    "seed": run.seed,
                    "trial": run.trial,
                    "status": run.status.value,
                }
                row.update({field: getattr(point, field) for field in POINT_FIELDS})
                row.update({f"metric_{name}": value for name, value in point.metrics.items()})
                rows.append(row)
        return rows

    def export_csv(self, path: str | Path) -> Path:
        rows = self.rows()
        columns = list(dict.fromkeys(key for row in rows for key in row))
        target = Path(path)
        with open(target, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=[spreadsheet_safe(column) for column in columns])
            writer.writeheader()
            writer.writerows({spreadsheet_safe(k): spreadsheet_safe(v) for k, v in row.items()} for row in rows)
        return target

    def to_dataframe(self) -> Any:
        """The curve points as a pandas DataFrame (pandas is optional)."""
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_dataframe needs pandas: pip install pandas") from None
        return pd.DataFrame(self.rows())
