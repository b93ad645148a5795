"""The writer of ``state.sqlite3``: :class:`StateStore`, the schema, and the one mapping of a ``documents`` row to
a :class:`~..model.LocalRecord` (the package docstring describes the tables)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path

from docsync_cli.model import LocalRecord
from docsync_cli.state.guard import guarded, state_fault
from docsync_cli.state.installation import installation_id, private_file

STATE_FILE = "state.sqlite3"
ADOPT_PREFIX = "adopt:"  # meta keys of documents whose xAI file waits for `docsync adopt`
DOCUMENT_COLUMNS = ("doc_id, file_id, sha256, md5, xai_file_id, collections, crm_modified_at, failure_code,"
                    " failure_transient, preview_sha, pending, preview_failed")
"""The columns of a ``documents`` row as :func:`record_of_row` reads them (every reader selects exactly these)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    file_id TEXT, sha256 TEXT, md5 TEXT, xai_file_id TEXT, collections TEXT NOT NULL DEFAULT '[]',
    crm_modified_at TEXT, failure_code TEXT, failure_transient INTEGER NOT NULL DEFAULT 0,
    preview_sha TEXT, updated REAL NOT NULL, pending INTEGER NOT NULL DEFAULT 0, preview_failed TEXT
);
CREATE TABLE IF NOT EXISTS cleanups (
    doc_id TEXT NOT NULL, file_id TEXT NOT NULL, collection_id TEXT NOT NULL, PRIMARY KEY (file_id, collection_id)
);
CREATE TABLE IF NOT EXISTS owned (
    file_id TEXT PRIMARY KEY, doc_id TEXT NOT NULL, sha256 TEXT, recorded REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS owned_by_doc ON owned (doc_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS linked (
    entity TEXT NOT NULL, record_id TEXT NOT NULL, collection_id TEXT NOT NULL, PRIMARY KEY (entity, record_id)
);
CREATE TABLE IF NOT EXISTS hidden (doc_id TEXT PRIMARY KEY, reason TEXT NOT NULL, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (
    doc_id TEXT NOT NULL, sha256 TEXT NOT NULL, name TEXT NOT NULL, xai_file_id TEXT,
    started REAL NOT NULL, PRIMARY KEY (doc_id, sha256)
);
"""



class StreamFeed(StrEnum):
    """Whether plain runs can read EspoCRM's GlobalStream: the ``stream`` entry of the ``feeds`` meta value, which
    ``changes.py`` writes and ``docsync status`` reads back. The values are the strings stored (and shown); an
    unavailable stream is stored with its cause, ``unavailable (<cause>)`` (:meth:`because`)."""

    ACTIVE = "active"
    NO_ACCESS = "no access"
    UNAVAILABLE = "unavailable"

    def because(self, cause: object) -> str:
        """The stored text of this state with its cause, e.g. ``unavailable (500)``."""
        return f"{self.value} ({cause})"


class StateStore:
    def __init__(self, state_dir: Path, installation: str | None = None) -> None:
        path = state_dir / STATE_FILE
        self.path = path
        self.state_dir = state_dir
        self._lock = threading.Lock()
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_file(path)
            self.installation_id = installation_id(state_dir, installation)
            self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.executescript(SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(documents)")}
            if "pending" not in columns:  # state written by an older docsync
                self._db.execute("ALTER TABLE documents ADD COLUMN pending INTEGER NOT NULL DEFAULT 0")
            if "preview_failed" not in columns:  # a state file from before the column existed
                self._db.execute("ALTER TABLE documents ADD COLUMN preview_failed TEXT")
        except (OSError, sqlite3.Error) as exc:
            raise state_fault(state_dir, f"open {STATE_FILE}", exc) from exc

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock, self._transaction():
            self._db.execute(sql, args)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; ``ROLLBACK`` on any error (a full disk included), so a failed write
        leaves the previous state and no open transaction behind. Call with ``_lock`` held."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- documents -----------------------------------------------------------------------------------

    @guarded("read the documents' records")
    def records(self) -> dict[str, LocalRecord]:
        with self._lock:
            rows = self._db.execute(f"SELECT {DOCUMENT_COLUMNS} FROM documents").fetchall()  # noqa: S608
        return {row[0]: record_of_row(row) for row in rows}

    @guarded("read a document's record")
    def record(self, doc_id: str) -> LocalRecord | None:
        with self._lock:
            row = self._db.execute(f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE doc_id = ?",  # noqa: S608
                                   (doc_id,)).fetchone()
        return record_of_row(row) if row else None

    @guarded("save a document's record")
    def save(self, rec: LocalRecord) -> None:
        self._write(
            "INSERT OR REPLACE INTO documents (doc_id, file_id, sha256, md5, xai_file_id, collections,"
            " crm_modified_at, failure_code, failure_transient, preview_sha, updated, pending, preview_failed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (rec.doc_id, rec.file_id, rec.sha256, rec.md5, rec.xai_file_id, json.dumps(list(rec.collections)),
             rec.crm_modified_at, rec.failure_code, int(rec.failure_transient), rec.preview_sha, time.time(),
             int(rec.pending), rec.preview_failed))

    @guarded("read the documents' records")
    def records_for(self, doc_ids: list[str]) -> dict[str, LocalRecord]:
        """The local records of just these documents (a run over a million documents never loads them all)."""
        found: dict[str, LocalRecord] = {}
        for start in range(0, len(doc_ids), 500):
            chunk = doc_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            query = f"SELECT {DOCUMENT_COLUMNS} FROM documents WHERE doc_id IN ({marks})"  # noqa: S608
            with self._lock:
                rows = self._db.execute(query, chunk).fetchall()
            found.update((row[0], record_of_row(row)) for row in rows)
        return found

    @guarded("list the permanent failures")
    def permanent_failures(self) -> list[str]:
        """Ids of the documents whose last run here failed them permanently (held back until they change)."""
        sql, args = _id_range(None, None)
        with self._lock:
            query = f"SELECT doc_id FROM documents WHERE failure_transient = 0 AND failure_code IS NOT NULL AND {sql}"  # noqa: S608
            rows = self._db.execute(query + " ORDER BY doc_id", args).fetchall()
        return [str(row[0]) for row in rows]

    @guarded("count the documents' records")
    def count_between(self, low: str | None = None, high: str | None = None) -> int:
        """Local document records with ``low <= id < high`` (None = open end), hidden ones left out (the
        server's counts leave them out too)."""
        sql, args = _id_range(low, high)
        with self._lock:
            query = f"SELECT COUNT(*) FROM documents WHERE {sql}"  # noqa: S608 (fixed clauses, values bound)
            return int(self._db.execute(query, args).fetchone()[0])

    @guarded("list the documents' records")
    def ids_between(self, low: str | None, high: str | None, *, offset: int = 0, limit: int = -1) -> list[str]:
        sql, args = _id_range(low, high)
        with self._lock:
            query = f"SELECT doc_id FROM documents WHERE {sql} ORDER BY doc_id LIMIT ? OFFSET ?"  # noqa: S608
            rows = self._db.execute(query, (*args, limit, offset)).fetchall()
        return [str(row[0]) for row in rows]

    # -- deletions: documents hidden from the API user, the ids a listing pass saw -----------------------

    @guarded("read the hidden documents")
    def hidden(self) -> dict[str, tuple[str, float]]:
        """document id → (EspoCRM's reason, since when) of the documents that exist but are hidden from the API
        user (``GET Document/{id}`` 403): their files stay, they are left out of the deletion counts."""
        with self._lock:
            rows = self._db.execute("SELECT doc_id, reason, since FROM hidden ORDER BY doc_id").fetchall()
        return {str(r[0]): (str(r[1]), float(r[2])) for r in rows}

    @guarded("remember a hidden document")
    def hide(self, doc_id: str, reason: str) -> None:
        self._write("INSERT OR IGNORE INTO hidden (doc_id, reason, since) VALUES (?, ?, ?)",
                    (doc_id, reason, time.time()))

    @guarded("forget hidden documents")
    def unhide(self, doc_ids: list[str]) -> None:
        """These documents were seen again (listed, or ``GET`` answered): no longer hidden."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM hidden WHERE lower(doc_id) = lower(?)", [(d,) for d in doc_ids])

    @guarded("start the listing pass's id list")
    def listing_started(self) -> None:
        """A listing pass begins: forget the ids an earlier one saw (a temporary table of this connection)."""
        with self._lock:
            self._db.execute("CREATE TEMP TABLE IF NOT EXISTS listed (key TEXT PRIMARY KEY)")
            self._db.execute("DELETE FROM listed")

    @guarded("note the listed ids")
    def listed(self, doc_ids: list[str]) -> None:
        """Ids the listing pass saw, compared ignoring case as the server does (contract §11.3)."""
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO listed (key) VALUES (lower(?))", [(d,) for d in doc_ids])
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM hidden WHERE lower(doc_id) IN (SELECT key FROM listed)")

    @guarded("compare the listed ids")
    def unlisted(self) -> list[str]:
        """The documents this host keeps records of (hidden ones included) that the listing pass did not see."""
        with self._lock:
            rows = self._db.execute("SELECT doc_id FROM documents WHERE lower(doc_id) NOT IN"
                                    " (SELECT key FROM listed) ORDER BY doc_id").fetchall()
        return [str(row[0]) for row in rows]

    @guarded("forget deleted documents")
    def forget(self, doc_ids: list[str]) -> None:
        """Drop the records of documents that are gone from EspoCRM (their files were retired)."""
        with self._lock, self._transaction():
            self._db.executemany("DELETE FROM documents WHERE doc_id = ?", [(d,) for d in doc_ids])
            self._db.executemany("DELETE FROM hidden WHERE doc_id = ?", [(d,) for d in doc_ids])

    @guarded("save documents' records")
    def add_many(self, records: list[LocalRecord]) -> None:
        """Bulk insert (benchmarks seeding a host that has synced a million documents)."""
        with self._lock, self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO documents (doc_id, file_id, sha256, md5, xai_file_id, collections,"
                " crm_modified_at, failure_code, failure_transient, preview_sha, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.doc_id, r.file_id, r.sha256, r.md5, r.xai_file_id, json.dumps(list(r.collections)),
                  r.crm_modified_at, r.failure_code, int(r.failure_transient), r.preview_sha, 0.0)
                 for r in records])

    # -- run-to-run bookkeeping of the change feeds (watermark, cursors, linked records' collections) ---

    @guarded("read the change feeds' bookkeeping")
    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    @guarded("save the change feeds' bookkeeping")
    def set_meta(self, values: dict[str, str]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", list(values.items()))

    @guarded("read the linked records")
    def linked(self, entity: str) -> dict[str, str]:
        """record id -> collection id, as last seen, of the linked records (Accounts) that carry one."""
        with self._lock:
            rows = self._db.execute("SELECT record_id, collection_id FROM linked WHERE entity = ?",
                                    (entity,)).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    @guarded("save the linked records")
    def set_linked(self, entity: str, values: dict[str, str | None], *, replace: bool = False) -> None:
        with self._lock, self._transaction():
            if replace:
                self._db.execute("DELETE FROM linked WHERE entity = ?", (entity,))
            for record_id, collection_id in values.items():
                if collection_id:
                    self._db.execute("INSERT OR REPLACE INTO linked (entity, record_id, collection_id)"
                                     " VALUES (?, ?, ?)", (entity, record_id, collection_id))
                else:
                    self._db.execute("DELETE FROM linked WHERE entity = ? AND record_id = ?", (entity, record_id))

    # -- cleanups -------------------------------------------------------------------------------------

    @guarded("journal a cleanup")
    def cleanup_planned(self, doc_id: str, items: list[tuple[str, str]]) -> None:
        with self._lock, self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO cleanups (doc_id, file_id, collection_id) VALUES (?, ?, ?)",
                                 [(doc_id, file_id, collection_id) for file_id, collection_id in items])

    @guarded("finish a journalled cleanup")
    def cleanup_done(self, file_id: str, collection_id: str) -> None:
        self._write("DELETE FROM cleanups WHERE file_id = ? AND collection_id = ?", (file_id, collection_id))

    @guarded("read the cleanup journal")
    def cleanups(self) -> list[tuple[str, str, str]]:
        """(document id, file id, collection id or "" for deleting the file), in a stable order."""
        with self._lock:
            rows = self._db.execute("SELECT doc_id, file_id, collection_id FROM cleanups"
                                    " ORDER BY doc_id, file_id, collection_id = '', collection_id").fetchall()
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    # -- ownership ----------------------------------------------------------------------------------

    @guarded("record a file's owner")
    def own(self, file_id: str, doc_id: str, sha256: str | None) -> None:
        """Record that ``file_id`` is this installation's upload for ``doc_id``."""
        self._write("INSERT OR REPLACE INTO owned (file_id, doc_id, sha256, recorded) VALUES (?, ?, ?, ?)",
                    (file_id, doc_id, sha256, time.time()))

    @guarded("read a file's owner")
    def owner(self, file_id: str) -> str | None:
        """The CRM document ``file_id`` was uploaded for by this installation, or None when it is not ours."""
        with self._lock:
            row = self._db.execute("SELECT doc_id FROM owned WHERE file_id = ?", (file_id,)).fetchone()
        return str(row[0]) if row else None

    @guarded("read the ownership records")
    def owned_files(self, doc_id: str | None = None) -> dict[str, str]:
        """file id → document id of this installation's files (of one document, if given)."""
        with self._lock:
            if doc_id is None:
                rows = self._db.execute("SELECT file_id, doc_id FROM owned").fetchall()
            else:
                rows = self._db.execute("SELECT file_id, doc_id FROM owned WHERE doc_id = ?", (doc_id,)).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    @guarded("forget a deleted file")
    def disown(self, file_id: str) -> None:
        """The file was deleted."""
        self._write("DELETE FROM owned WHERE file_id = ?", (file_id,))

    @guarded("read the upload journal")
    def open_upload_names(self) -> dict[str, str]:
        """name → document of uploads this host started whose answer never arrived (a crash or a lost answer)."""
        with self._lock:
            rows = self._db.execute("SELECT name, doc_id FROM uploads WHERE xai_file_id IS NULL").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    # -- files an earlier sync system left, waiting for `docsync adopt` --------------------------------

    @guarded("remember a file that waits for adopt")
    def wait_for_adopt(self, doc_id: str, file_id: str) -> None:
        """``doc_id``'s ``xaiFileId`` names ``file_id``, a file no installation owns: ``docsync adopt`` may take
        it over (``status`` counts these)."""
        self._write("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (ADOPT_PREFIX + doc_id, file_id))

    @guarded("forget a file that waited for adopt")
    def adopt_settled(self, doc_id: str) -> None:
        self._write("DELETE FROM meta WHERE key = ?", (ADOPT_PREFIX + doc_id,))

    # -- upload intents ------------------------------------------------------------------------------

    @guarded("journal an upload")
    def upload_started(self, doc_id: str, sha256: str, name: str) -> None:
        self._write("INSERT OR IGNORE INTO uploads (doc_id, sha256, name, xai_file_id, started)"
                    " VALUES (?, ?, ?, NULL, ?)", (doc_id, sha256, name, time.time()))

    @guarded("journal an upload")
    def upload_done(self, doc_id: str, sha256: str, xai_file_id: str) -> None:
        self.own(xai_file_id, doc_id, sha256)
        self._write("UPDATE uploads SET xai_file_id = ? WHERE doc_id = ? AND sha256 = ?",
                    (xai_file_id, doc_id, sha256))

    @guarded("read the upload journal")
    def upload_intent(self, doc_id: str, sha256: str) -> tuple[str, str | None] | None:
        """(name, xai file id or None) of an earlier upload of this exact content, if one was started."""
        with self._lock:
            row = self._db.execute("SELECT name, xai_file_id FROM uploads WHERE doc_id = ? AND sha256 = ?",
                                   (doc_id, sha256)).fetchone()
        return (row[0], row[1]) if row else None

    @guarded("settle the upload journal")
    def upload_settled(self, doc_id: str, sha256: str | None = None) -> None:
        """Forget intents once the CRM points at the file (or the file was cleaned up)."""
        if sha256 is None:
            self._write("DELETE FROM uploads WHERE doc_id = ?", (doc_id,))
        else:
            self._write("DELETE FROM uploads WHERE doc_id = ? AND sha256 = ?", (doc_id, sha256))


def record_of_row(row: tuple[object, ...]) -> LocalRecord:
    collections = json.loads(str(row[5]) or "[]")
    return LocalRecord(
        doc_id=str(row[0]), file_id=_opt(row[1]), sha256=_opt(row[2]), md5=_opt(row[3]), xai_file_id=_opt(row[4]),
        collections=tuple(str(c) for c in collections), crm_modified_at=_opt(row[6]), failure_code=_opt(row[7]),
        failure_transient=bool(row[8]), preview_sha=_opt(row[9]), pending=len(row) > 10 and bool(row[10]),
        preview_failed=_opt(row[11]) if len(row) > 11 else None)


def _id_range(low: str | None, high: str | None) -> tuple[str, tuple[str, ...]]:
    parts, args = ["doc_id NOT IN (SELECT doc_id FROM hidden)"], []
    if low is not None:
        parts.append("doc_id >= ?")
        args.append(low)
    if high is not None:
        parts.append("doc_id < ?")
        args.append(high)
    return " AND ".join(parts), tuple(args)


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
