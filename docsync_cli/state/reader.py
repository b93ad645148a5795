"""How the read-only reports look at ``state.sqlite3`` without ever creating, changing or holding it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from docsync_cli.model import LocalRecord
from docsync_cli.state.directory import state_file_exists
from docsync_cli.state.guard import state_fault
from docsync_cli.state.store import ADOPT_PREFIX, DOCUMENT_COLUMNS, STATE_FILE, StateStore, record_of_row


class ReadOnlyState:
    """This host's ``state.sqlite3`` as the read-only reports see it: each read opens the file read-only
    (``mode=ro``) for just that read, so a report never creates, changes or holds the state. Call
    :meth:`exists` first: the reads expect the file to be there."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE

    def exists(self) -> bool:
        """Whether a run made the state file yet; a state directory this user may not enter raises
        :class:`~..errors.LocalEnvironmentError` naming the owner and the fix (``statedir.state_file_exists``), and
        a file SQLite cannot read raises :class:`~..errors.LocalStateError` (:meth:`check_readable`): every report
        then stops with exit 4 and ``sync``'s advice instead of reading a damaged store as empty."""
        if not state_file_exists(self.path):
            return False
        self.check_readable()
        return True

    def check_readable(self) -> None:
        """Raise :class:`~..errors.LocalStateError` (``corrupt``) when the file is not a database SQLite can read;
        a missing table (an older state file) or a file only the writer may open is no such fault."""
        try:
            db = self._connect()
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                db.execute("SELECT count(*) FROM meta").fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError:
            return  # no such table, or the read-only open cannot make the -shm file: the reads below cope
        except sqlite3.DatabaseError as exc:
            raise state_fault(self.state_dir, f"read {STATE_FILE}", exc) from exc

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)

    def _rows(self, sql: str) -> list[tuple[object, ...]]:
        """The rows of ``sql``; none when the file cannot be read (e.g. an older state file without the table)."""
        try:
            db = self._connect()
            try:
                return list(db.execute(sql).fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            return []

    def records(self, doc_ids: list[str]) -> dict[str, LocalRecord]:
        """The local records of these documents (missing ones are left out)."""
        found: dict[str, LocalRecord] = {}
        try:
            db = self._connect()
            try:
                for doc_id in doc_ids:
                    row = db.execute(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE doc_id = ?",  # noqa: S608
                                     (doc_id,)).fetchone()
                    if row is not None:
                        found[doc_id] = record_of_row(row)
            finally:
                db.close()
        except sqlite3.Error:
            # e.g. a read-only open of a WAL database whose -shm cannot be made: read it the ordinary way
            store = StateStore(self.state_dir)
            try:
                found = {doc_id: rec for doc_id in doc_ids if (rec := store.record(doc_id)) is not None}
            finally:
                store.close()
        return found

    def file_owners(self) -> dict[str, str]:
        """xAI file id → document id, from the documents' records (the files the last runs synced)."""
        rows = self._rows("SELECT xai_file_id, doc_id FROM documents WHERE xai_file_id IS NOT NULL")
        return {str(file_id): str(doc_id) for file_id, doc_id in rows}

    def collections(self) -> set[str]:
        """Every collection the documents' records say docsync put a document into."""
        found: set[str] = set()
        for (raw,) in self._rows("SELECT DISTINCT collections FROM documents"):
            try:
                value = json.loads(str(raw))
            except (TypeError, ValueError):
                continue
            if isinstance(value, list):
                found.update(c for c in value if isinstance(c, str) and c)
        return found

    def meta(self) -> dict[str, str]:
        """The change feeds' bookkeeping (``watermark``, ``last_listing``, ``note_cursor``, ``feeds``); empty when
        nothing was recorded or the file cannot be read."""
        return {str(key): str(value) for key, value in self._rows("SELECT key, value FROM meta")}

    def waiting_for_adopt(self) -> int:
        """Documents whose xAI file an earlier sync system made, waiting for ``docsync adopt`` (as the last runs
        found them)."""
        return sum(1 for key in self.meta() if key.startswith(ADOPT_PREFIX))

    def hidden(self) -> dict[str, tuple[str, float]]:
        """document id → (EspoCRM's reason, since when) of the documents hidden from the API user (403): their
        files are kept (empty when none were found, or the file cannot be read)."""
        rows = self._rows("SELECT doc_id, reason, since FROM hidden ORDER BY doc_id")
        return {str(doc_id): (str(reason), float(str(since))) for doc_id, reason, since in rows}
