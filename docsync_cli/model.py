"""Plain, frozen values that flow between the stages: gather → plan → execute → write back.

Nothing here does I/O. The German status values are part of the users' CRM and stay exactly as they are.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from docsync_cli.errors import DocsyncError


class DateiStatus(StrEnum):
    NEU = "Neu"
    GEAENDERT = "Geändert"
    GESYNCT = "Gesynct"
    FEHLER = "Fehler"


class Field(StrEnum):
    """The Document fields docsync reads and writes, by their logical names (the design document's): the one
    spelling of them in docsync. This CRM's attribute names for them come from ``espocrm.fields`` (see
    :class:`~docsync_cli.crm.schema.LearnedSchema`)."""

    DATEI_STATUS = "dateiStatus"
    MD5 = "md5"
    SHA = "sha"
    XAI_FILE_ID = "xaiFileId"
    XAI_COLLECTIONS = "xaiCollections"
    XAI_SYNCED_HASH = "xaiSyncedHash"
    XAI_SYNC_STATUS = "xaiSyncStatus"
    XAI_SYNC_ERROR = "xaiSyncError"
    PREVIEW = "preview"


class SyncStatus(StrEnum):
    PENDING = "pending"  # uploaded and added, xAI still processing: the next run finishes it
    SYNCING = "syncing"  # a run is working on the document right now (or crashed while doing so)
    SYNCED = "synced"
    FAILED = "failed"


# xAI's processing status of a document in a collection (xAI contract §8): the one home of these strings
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
FAILED = "DOCUMENT_STATUS_FAILED"
UNKNOWN = "DOCUMENT_STATUS_UNKNOWN"  # also what an answer without a status counts as: still processing

HEX = frozenset("0123456789abcdef")


def is_hex(value: str | None, length: int) -> bool:
    return value is not None and len(value) == length and set(value) <= HEX


@dataclass(frozen=True)
class CrmDocument:
    """One EspoCRM Document as docsync sees it (attribute names already mapped from the configured ones)."""

    id: str
    name: str
    modified_at: str  # "YYYY-MM-DD HH:MM:SS" UTC; sorts as text
    file_id: str | None = None
    file_name: str | None = None
    datei_status: str | None = None
    md5: str | None = None
    sha: str | None = None
    xai_file_id: str | None = None
    xai_collections: tuple[str, ...] = ()
    xai_synced_hash: str | None = None
    xai_sync_status: str | None = None
    xai_sync_error: str | None = None
    preview_id: str | None = None
    version: int | None = None
    problems: tuple[str, ...] = ()  # unexpected field values found while reading the record
    fingerprint: str = ""  # hash of every attribute but the modification bookkeeping (detects edits)
    accounts: tuple[str, ...] | None = None  # linked account ids, when the listing carried them (§10.6 override)


@dataclass(frozen=True)
class LocalRecord:
    """What this host remembers about a document after its last run touched it (state.sqlite3)."""

    doc_id: str
    file_id: str | None  # the EspoCRM attachment whose content was synced
    sha256: str | None
    md5: str | None
    xai_file_id: str | None
    collections: tuple[str, ...]
    crm_modified_at: str | None  # modifiedAt of the record right after docsync's own write
    failure_code: str | None = None  # last failure, if the last run failed the document
    failure_transient: bool = False
    preview_sha: str | None = None  # content hash the current preview was made from
    pending: bool = False  # uploaded and added, xAI still indexing (the CRM may say "syncing": no "pending" option)
    preview_failed: str | None = None  # content hash whose preview could not be made (not retried until it changes)


class Reason(StrEnum):
    """Why a document needs work (``plan.why_work``). The value is the text shown to people; decisions use the
    member (or the structured fields of :class:`WorkItem`), never the text. Two reasons carry a value and are
    formatted from :data:`UNFINISHED` and :data:`UNKNOWN_STATUS` instead."""

    EXPLICIT = "requested with --id"
    FINISH_PENDING = "uploaded earlier, xAI was still indexing it: finishing"
    NEW = "new"
    CHANGED = "changed"
    RETRY_FAILED = "failed earlier; retried (--retry-failed)"
    FAILED_UNKNOWN_CAUSE = "failed earlier; cause unknown to this host, retrying"
    FAILED_TRANSIENT = "failed earlier with a transient error; retrying"
    FAILED_DOCUMENT_CHANGED = "failed earlier; the document changed since"
    FAILED_FILE_REPLACED = "failed earlier; the file was replaced since"
    NO_XAI_FILE = "drifted: no xAI file recorded"
    HASH_DIFFERS = "drifted: hash differs from what xAI holds"
    NOT_VERIFIED = "not yet verified by this host"
    FILE_REPLACED = "drifted: the file was replaced"
    FIELDS_DIFFER = "drifted: CRM fields differ from the last sync"
    FULL_CHECK = "full check"
    NEW_NO_STATUS = "new (no dateiStatus)"
    HELD_BACK = "permanent failure; waits until the document changes, --id or --retry-failed"
    LINKS_CHANGED = "linked records changed: it belongs in other collections now"
    EDITED = "edited in EspoCRM since the last sync"


UNFINISHED = "unfinished ({})"  # a Gesynct record whose xaiSyncStatus says a run did not finish
UNKNOWN_STATUS = "unknown dateiStatus {!r}; treating as changed"


@dataclass(frozen=True)
class WorkItem:
    doc: CrmDocument
    reason: str  # for people: a :class:`Reason` or one formatted from UNFINISHED/UNKNOWN_STATUS
    verify: bool = False  # check collections and xAI even if the record looks in step (full check, link change)
    explicit: bool = False  # asked for (--id, --retry-failed): worked on under the lock even if it looks in step


@dataclass(frozen=True)
class RemoteMember:
    """A document in a managed xAI collection that docsync put there (it carries docsync's fields)."""

    collection_id: str
    file_id: str
    crm_document_id: str
    content_sha256: str
    status: str = ""  # DOCUMENT_STATUS_* as the collection listing reported it ("" = not listed)


@dataclass(frozen=True)
class Deletion:
    member: RemoteMember
    reason: str
    document_gone: bool = False  # retired because its document is gone: only once GET Document/{id} said 404


@dataclass(frozen=True)
class RunPlan:
    work: tuple[WorkItem, ...]
    unchanged: int
    held_back: tuple[WorkItem, ...] = ()  # permanent failures waiting for the document to change
    deletions: tuple[Deletion, ...] = ()
    held_back_unread: tuple[str, ...] = ()  # ids of permanent failures a plain run did not read (no feed saw them)

    @property
    def held_back_count(self) -> int:
        return len(self.held_back) + len(self.held_back_unread)


@dataclass(frozen=True)
class Content:
    """What the download of a document's file produced."""

    sha256: str
    md5: str
    size: int


@dataclass(frozen=True)
class Membership:
    """Which collections currently hold a given xAI file, and in which processing state."""

    file_id: str
    statuses: dict[str, str] = field(default_factory=dict)  # collection id -> DOCUMENT_STATUS_*
    unmarked: frozenset[str] = frozenset()  # collections whose member lacks this installation's ownership fields


@dataclass(frozen=True)
class DocPlan:
    """What to do with one document once its content hash and required collections are known."""

    upload: bool  # upload the content as a new xAI file
    keep_file_id: str | None  # the xAI file that stays (None when uploading)
    add_to: tuple[str, ...]  # collections to add the (new or kept) file to
    remove_from: tuple[str, ...]  # collections the kept file must leave
    retire: str | None  # superseded xAI file to take out of every collection and delete, after write-back
    reason: str
    reindex: tuple[str, ...] = ()  # collections where the kept file's processing FAILED: ask xAI to index again
    also_retire: tuple[str, ...] = ()  # earlier uploads of this installation for this document (e.g. a pending one)
    retire_from: tuple[str, ...] = ()  # every collection a retired file may sit in (``plan.candidate_collections``)
    in_step: bool = False  # EspoCRM, xAI and the preview agree already: verify only, write nothing anywhere


class Outcome(StrEnum):
    """What became of one document in a run (the value is what summaries, history and JSON output show)."""

    SYNCED = "synced"
    UNCHANGED = "unchanged"
    PENDING = "pending"  # uploaded and added; xAI still processing it: the next run finishes it
    FAILED = "failed"
    SKIPPED = "skipped"  # not worked on: another run holds it, or it is gone from EspoCRM
    DEFERRED = "deferred"  # edited while docsync worked on it, or the run stopped: picked up again next run


class Indexing(StrEnum):
    """Where xAI's processing of an upload stands after the bounded wait (all required collections)."""

    PROCESSED = "processed"  # searchable everywhere it belongs
    PENDING = "pending"  # still processing when the wait ended: the next run finishes it
    FAILED = "failed"  # xAI could not process the file


class Preview(StrEnum):
    """What became of a document's preview. ``DocResult.preview`` holds one of these, or (for a failure) the
    failure's text, with :attr:`DocResult.preview_failure` saying which kind of failure it was."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"
    OFF = "off"  # this run makes no previews
    KNOWN_FAILURE = "known_failure"  # this content's preview failed before; not tried again until it changes


def id_key(doc_id: str) -> str:
    """An EspoCRM id as the server compares it for sameness: ignoring case (``utf8mb4_unicode_ci``, contract
    §11.3). Only for "same record or not"; never for order (the server's order is not Python's)."""
    return doc_id.lower()


class Presence(StrEnum):
    """What ``GET Document/{id}`` says of a document a count, a bisection or a listing nominated as deleted
    (EspoCRM contract §11.2, §11.3). Only GONE lets docsync retire its files."""

    LIVE = "live"  # 200: nominated by mistake (e.g. the server orders ids differently from Python)
    GONE = "gone"  # 404: deleted
    HIDDEN = "hidden"  # 403 No 'read' access.: it exists, the API user's role or teams may not read it


class DeletionMethod(StrEnum):
    """How plain runs notice deletions (the ``deletions`` entry of the ``feeds`` meta value; ``docsync status``)."""

    COUNTS = "counts"  # a count per run, id-range counts on a mismatch, then confirmed one by one
    LISTING = "listing"  # the server does not count (countDisabled): the listing pass compares ids


class PreviewFailure(StrEnum):
    RENDER = "render"  # the content cannot be previewed: remembered, not retried until the content changes
    UPLOAD = "upload"  # the preview was made, its upload to EspoCRM failed: retried next time



@dataclass
class DocResult:
    doc_id: str
    name: str
    outcome: Outcome
    detail: str = ""  # for people
    error_code: str | None = None
    actions: list[str] = field(default_factory=list)
    preview: str | None = None  # a :class:`Preview`, or the text of a failure (see ``preview_failure``)
    busy_holder: str | None = None  # skipped because this lock holder has the document right now
    preview_failure: PreviewFailure | None = None


@dataclass(frozen=True)
class RunOptions:
    """What a ``sync``/``prune`` command asks of the engine."""

    ids: frozenset[str] | None = None
    dry_run: bool = False
    full: bool = False
    limit: int | None = None
    force_delete: bool = False
    prune_only: bool = False
    retry_failed: bool = False


@dataclass
class RunSummary:
    """What a run did: its plan, each document's result, the files deleted, notes, and why it stopped."""

    plan: RunPlan | None = None
    results: list[DocResult] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fatal: DocsyncError | None = None
    stopped: bool = False

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {"planned": len(self.plan.work) if self.plan else 0,
                                  "unchanged": self.plan.unchanged if self.plan else 0,
                                  "held_back": self.plan.held_back_count if self.plan else 0,
                                  "deleted": len(self.deleted)}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            if result.preview_failure is not None:
                counts["preview_failed"] = counts.get("preview_failed", 0) + 1
        return counts


# ---------------------------------------------------------------------------------------------------
# what the engine is configured with and what it is given (one definition each)


@dataclass(frozen=True)
class DeleteLimits:
    max_count: int = 50
    max_percent: float = 50.0
    force: bool = False


@dataclass(frozen=True)
class LinkRule:
    """Documents linked (through ``link``) to a record whose attribute ``field`` names a collection: the engine's
    form of the validated ``[[collections.links]]`` setting (``config.LinkRuleSetting``, converted once by
    ``CollectionSettings.rules``)."""

    link: str
    field: str


@dataclass(frozen=True)
class EngineSettings:
    static_collections: tuple[str, ...] = ()
    links: tuple[LinkRule, ...] = (LinkRule("accounts", "xaiCollectionId"),)
    max_file_bytes: int = 50_000_000  # xAI's "50 MB" (xAI contract §15)
    processing_wait_seconds: float = 60.0
    poll_interval_seconds: float = 2.0
    concurrency: int = 12
    delete_limits: DeleteLimits = field(default_factory=DeleteLimits)
    temp_dir: Path | None = None
    change_feeds: bool = True  # plain runs ask the change feeds (changes.py); False = list every document
    listing_interval_seconds: float = 3600.0
    partial_listing_interval_seconds: float = 900.0  # while the stream feed is partial


class DocumentLocks(Protocol):
    """What the engine needs of a lock backend (``locks.Locks`` adds the run lock and the installation id)."""

    def document(self, doc_id: str) -> contextlib.AbstractContextManager[None]:
        """Hold the lock of one document for the ``with`` block; :class:`LockHeld` if someone else has it."""

    def check(self) -> None:
        """Before a remote write: :class:`LocalEnvironmentError` if a lock in hand is lost (a check, not a fencing
        token: it narrows the window to one request)."""


class Previewer(Protocol):
    """Renders a document's file to WebP bytes (``preview.PreviewService``); raises ``PreviewError``."""

    def render(self, source: Path, filename: str) -> bytes: ...
