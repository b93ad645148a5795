"""Local faults are local: a full disk, a read-only state directory or a damaged ``state.sqlite3`` stop the run
with exit 4 and a message that names the directory, what failed and the fix. No document is marked "Fehler" for
them, and the next run after the fault is gone finishes what was in hand.

The faults are injected by a fake connection in front of the real SQLite one (:class:`FaultyConnection`); the
outcome is read from the emulators, never through docsync.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docsync_cli.errors import LocalStateError
from docsync_cli.outcome import EXIT_LOCAL, EXIT_OK
from docsync_cli.state import StateStore
from docsync_sandbox.seed import Sandbox

from .helpers import Firm, cli_env, describe, run_engine, run_sync, sandbox_running, seed_small_firm
from .invariants import assert_invariants

WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
FAULTS = {
    "disk_full": "database or disk is full",
    "read_only": "attempt to write a readonly database",
}


class FaultyConnection:
    """A SQLite connection whose writes fail (with SQLite's own message for ``fault``) from the ``after``-th
    write statement on, until :meth:`heal` is called. Reads and transactions pass through."""

    def __init__(self, db: sqlite3.Connection, fault: str, after: int) -> None:
        self.db = db
        self.message = FAULTS[fault]
        self.after = after
        self.writes = 0
        self.failed = 0
        self.healed = False

    def heal(self) -> None:
        self.healed = True

    def _check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(WRITES):
            self.writes += 1
            if not self.healed and self.writes >= self.after:
                self.failed += 1
                raise sqlite3.OperationalError(self.message)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.executemany(sql, rows)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        return self.db.executescript(sql)

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def firm(tmp_path: Path) -> Iterator[tuple[Sandbox, Firm, Path]]:
    with sandbox_running() as sandbox:
        yield sandbox, seed_small_firm(sandbox), tmp_path / "state"


def _statuses(sandbox: Sandbox) -> dict[str, tuple[Any, Any]]:
    a = sandbox.espo.attr
    return {d["id"]: (d.get(a("dateiStatus")), d.get(a("xaiSyncStatus"))) for d in sandbox.espo.documents()}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("after", [1, 3, 6, 9])
def test_a_state_store_fault_stops_the_run_and_blames_no_document(
        firm: tuple[Sandbox, Firm, Path], fault: str, after: int) -> None:
    sandbox, _, state_dir = firm
    state = StateStore(state_dir)
    faulty = FaultyConnection(state._db, fault, after)
    state._db = faulty  # type: ignore[assignment]
    try:
        broken = run_engine(sandbox, state_dir, full=False, concurrency=1, state=state)
        assert faulty.failed, "the fault was never reached"
        assert broken.exit_code == EXIT_LOCAL, broken
        fatal = broken.summary.fatal if broken.summary is not None else broken.error
        assert isinstance(fatal, LocalStateError) and fatal.fault == fault, fatal
        assert str(state_dir) in str(fatal)
        statuses = _statuses(sandbox)
        assert not [d for d, (datei, _) in statuses.items() if datei == "Fehler"], statuses
        assert not [d for d, (_, sync) in statuses.items() if sync in ("failed", "syncing")], statuses
        faulty.heal()  # space is back / the directory is writable again
        healed = run_engine(sandbox, state_dir, full=False, concurrency=1, state=state)
        assert healed.exit_code == EXIT_OK, healed
    finally:
        state.close()
    assert_invariants(sandbox, all_synced=True)
    uploads = sandbox.xai.requests("POST", r"/v1/files")
    assert len(uploads) == len(sandbox.xai.files()) == 4, "an upload in hand was repeated instead of finished"


def _cli(sandbox: Sandbox, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=cli_env(sandbox, state_dir),
                          text=True, capture_output=True, timeout=120, check=False)


def test_a_corrupt_state_file_stops_sync_status_and_the_reports_with_exit_4(firm: tuple[Sandbox, Firm, Path]) -> None:
    sandbox, _, state_dir = firm
    first = run_sync(sandbox, state_dir)
    assert first.returncode == EXIT_OK, describe(first)
    for leftover in state_dir.glob("state.sqlite3-*"):
        leftover.unlink()
    (state_dir / "state.sqlite3").write_bytes(b"this is not a database, it was overwritten " * 200)
    sync = run_sync(sandbox, state_dir)
    assert sync.returncode == EXIT_LOCAL, describe(sync)
    assert str(state_dir) in sync.stderr and "damaged" in sync.stderr and "Traceback" not in sync.stderr
    status = _cli(sandbox, state_dir, "status")
    assert status.returncode == EXIT_LOCAL, describe(status)
    assert str(state_dir) in status.stderr and "damaged" in status.stderr and "Traceback" not in status.stderr
    doc_id = next(iter(_statuses(sandbox)))
    for report in (("explain", "--id", doc_id), ("search", "Vertrag")):  # verify reads no local state
        done = _cli(sandbox, state_dir, *report)
        assert done.returncode == EXIT_LOCAL, (report, describe(done))
        assert "damaged" in done.stderr and "Traceback" not in done.stderr, (report, describe(done))
    check = _cli(sandbox, state_dir, "check")  # a failed line with the same fix, and the other checks still run
    assert check.returncode != 0 and "✗ state file" in check.stdout and "is damaged" in check.stdout, describe(check)
    assert "lock backend" in check.stdout and "Traceback" not in check.stdout + check.stderr, describe(check)
    assert not [d for d, (datei, _) in _statuses(sandbox).items() if datei == "Fehler"]
