"""Run history: one row per docsync run, plus the current preview failures, in ``history.sqlite3``.

This module owns the file ``<state dir>/history.sqlite3`` (mode ``0600`` in a ``0700`` directory) and
nothing else. ``docsync status`` reads it, the engine writes one :class:`RunRecord` at the end of every run,
and :mod:`docsync_cli.state.metrics` turns the newest record into a Prometheus textfile. The sync state proper
(what was uploaded, the upload journal) lives in :mod:`docsync_cli.state`, in a separate file, so losing or
deleting the history never changes what the next run does.

Every write is one SQLite transaction (``BEGIN IMMEDIATE``), the database runs in WAL mode and waits up to
:data:`BUSY_TIMEOUT_SECONDS` for a lock, so two processes (a timer run and an admin's ``docsync status``, or
two hosts' runs sharing nothing but this file) can use it at the same time without corrupting it. Only the
newest :data:`KEEP_RUNS` runs are kept.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from docsync_cli.errors import LocalEnvironmentError
from docsync_cli.secrets import scrub
from docsync_cli.state.guard import guarded
from docsync_cli.timestamps import timestamp_to_unix, utc_timestamp

FILE_NAME = "history.sqlite3"
KEEP_RUNS = 1000
BUSY_TIMEOUT_SECONDS = 30.0
SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    command TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    counts TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    error TEXT
)""",
    "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, id)",
    """CREATE TABLE IF NOT EXISTS preview_errors (
    doc_id TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    updated_at TEXT NOT NULL
)""",
)


@dataclass(frozen=True)
class RunRecord:
    """What one run did. Timestamps are ISO 8601 UTC with ``Z`` (``timestamps.utc_timestamp``).

    ``command`` is the command line after ``docsync``, e.g. ``"sync"``, ``"sync --full"``, ``"sync --id 65f..."``,
    ``"sync --dry-run"`` or ``"prune"``. ``counts`` maps a result (``planned``, ``synced``, ``unchanged``,
    ``failed``, ``pending``, ``deleted``, ``preview_failed``, ...) to a number of documents; any keys are allowed.
    ``error`` is the one-line, secret-free reason of a run that stopped early.
    """

    started_at: str
    finished_at: str
    duration_seconds: float
    command: str
    exit_code: int
    counts: dict[str, int]
    host: str
    pid: int
    error: str | None = None

    @property
    def finished_unixtime(self) -> float:
        """``finished_at`` as seconds since the epoch."""
        return timestamp_to_unix(self.finished_at)


class History:
    """The run history and preview failures of one state directory.

    Usable from several threads (one connection behind a lock) and from several processes (SQLite locking).
    Raises :class:`~docsync_cli.errors.LocalEnvironmentError` when the file cannot be created or opened.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.state_dir = state_dir
        self._lock = threading.Lock()
        try:
            _private_dir(state_dir)
            _private_file(self.path)
            self._db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise LocalEnvironmentError(f"cannot open the run history {self.path}: {exc}") from exc
        try:
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise LocalEnvironmentError(
                f"the run history {self.path} is unreadable ({exc}); it only feeds `docsync status` and "
                "metrics, so it is safe to delete it"
            ) from exc

    # ------------------------------------------------------------------------------------------- runs

    @guarded("record the run")
    def record(self, run: RunRecord) -> None:
        """Store ``run`` and drop all but the newest :data:`KEEP_RUNS` runs, in one transaction."""
        row = (
            run.started_at,
            run.finished_at,
            float(run.duration_seconds),
            run.command,
            int(run.exit_code),
            json.dumps({str(key): int(value) for key, value in run.counts.items()}, sort_keys=True),
            run.host,
            int(run.pid),
            None if run.error is None else scrub(run.error),
        )
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO runs (started_at, finished_at, duration_seconds, command, exit_code, counts,"
                " host, pid, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            self._db.execute(
                "DELETE FROM runs WHERE id NOT IN (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)",
                (KEEP_RUNS,),
            )

    def last(self, n: int = 10) -> list[RunRecord]:
        """The newest ``n`` runs (by start time), newest first."""
        with self._lock:
            rows = self._db.execute(
                _SELECT_RUNS + " ORDER BY started_at DESC, id DESC LIMIT ?", (max(n, 0),)
            ).fetchall()
        return [_run(row) for row in rows]

    def last_success(self) -> RunRecord | None:
        """The newest run that exited 0, or ``None`` if there was none (among the kept runs)."""
        with self._lock:
            row = self._db.execute(
                _SELECT_RUNS + " WHERE exit_code = 0 ORDER BY started_at DESC, id DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _run(row)

    # ---------------------------------------------------------------------------------- preview errors

    @guarded("record a preview failure")
    def set_preview_error(self, doc_id: str, reason: str) -> None:
        """Remember that the preview of ``doc_id`` failed, and why (replaces an older reason)."""
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO preview_errors (doc_id, reason, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (doc_id) DO UPDATE SET reason = excluded.reason, updated_at = excluded.updated_at",
                (doc_id, scrub(reason), utc_timestamp()),
            )

    @guarded("clear a preview failure")
    def clear_preview_error(self, doc_id: str) -> None:
        """Forget the preview failure of ``doc_id`` (no-op if there is none)."""
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM preview_errors WHERE doc_id = ?", (doc_id,))

    def preview_errors(self) -> dict[str, str]:
        """Document id → reason, for every document whose last preview attempt failed."""
        with self._lock:
            rows = self._db.execute("SELECT doc_id, reason FROM preview_errors ORDER BY doc_id").fetchall()
        return {str(doc_id): str(reason) for doc_id, reason in rows}

    # ------------------------------------------------------------------------------------------- misc

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, or ``ROLLBACK`` on any exception.

    IMMEDIATE takes the write lock up front, so two writers queue on ``busy_timeout`` instead of failing
    with "database is locked" when a read transaction tries to upgrade.
    """

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


_SELECT_RUNS = (
    "SELECT started_at, finished_at, duration_seconds, command, exit_code, counts, host, pid, error FROM runs"
)


def _run(row: tuple[Any, ...]) -> RunRecord:
    started_at, finished_at, duration, command, exit_code, counts, host, pid, error = row
    decoded = json.loads(str(counts))
    return RunRecord(
        started_at=str(started_at),
        finished_at=str(finished_at),
        duration_seconds=float(duration),
        command=str(command),
        exit_code=int(exit_code),
        counts={str(key): int(value) for key, value in decoded.items()},
        host=str(host),
        pid=int(pid),
        error=None if error is None else str(error),
    )


def _private_dir(path: Path) -> None:
    """Create ``path`` as ``0700``; tighten an existing directory of ours that is group/world accessible."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_mode & 0o077 and info.st_uid == os.getuid():
        os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)


def _private_file(path: Path) -> None:
    """Create ``path`` as ``0600`` whatever the umask (create, then chmod), and tighten it if it is looser."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)  # never via a symlink
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
