"""``docsync status``: counts per status, failures, missing previews, recent runs, the lock holder.

Everything here is read-only towards both services: EspoCRM is asked only with ``GET Document`` list requests
(``maxSize=1`` per count, one ``maxSize=50`` page for the failed documents), xAI is not asked at all. The cost is
a fixed number of requests whatever the number of documents. Local files are only read: a state directory that
does not exist yet is not created.
"""

from __future__ import annotations

import contextlib
from typing import Any, TypedDict

from docsync_cli.config import Settings, redact
from docsync_cli.crm import queries
from docsync_cli.errors import DocsyncError, RejectedError
from docsync_cli.model import CrmDocument, DateiStatus, Field, LocalRecord, SyncStatus
from docsync_cli.reports.shared import open_history, read_local_records, report_services
from docsync_cli.reports.status_feeds import Feeds, collect_feeds
from docsync_cli.state import ReadOnlyState, peek_installation_id
from docsync_cli.sync.plan import why_work
from docsync_cli.sync.services import Services
from docsync_cli.timestamps import utc_timestamp

EMPTY = "(leer)"
"""The bucket of documents whose status field is empty (NULL or ``""``)."""

DATEI_STATUSES = (DateiStatus.NEU.value, DateiStatus.GEAENDERT.value, DateiStatus.GESYNCT.value,
                  DateiStatus.FEHLER.value, EMPTY)
SYNC_STATUSES = (SyncStatus.PENDING.value, SyncStatus.SYNCING.value, SyncStatus.SYNCED.value,
                 SyncStatus.FAILED.value, EMPTY)
STATUS_VERSION = 1
"""``version`` of ``docsync status --json``: raised only on an incompatible change (a key removed or renamed)."""
FAILED_LIST_LIMIT = 50
RUNS_SHOWN = 10


# The report's values: ``docsync status --json`` prints them as they are (see :func:`collect_status`); keys
# named like the CRM's fields (dateiStatus, modifiedAt, ...) are the JSON's keys.


class EspoState(TypedDict):
    reachable: bool
    error: str | None


class Documents(TypedDict):
    total: int | None
    dateiStatus: dict[str, int | None]
    xaiSyncStatus: dict[str, int | None]
    other_dateiStatus: int | None


class FailedDocument(TypedDict):
    id: str
    name: str
    xaiSyncStatus: str | None
    error: str | None
    modifiedAt: str


class Failed(TypedDict):
    total: int | None
    documents: list[FailedDocument]
    truncated: bool


class PreviewErrorRow(TypedDict):
    id: str
    name: str | None
    reason: str


class Previews(TypedDict):
    missing: int | None
    errors: list[PreviewErrorRow]


class Waiting(TypedDict):
    new: int | None
    changed: int | None
    no_status: int | None
    unfinished: int | None
    failed_retry: int | None
    failed_held_back: int | None
    approximate: bool
    next_run: int | None


class RunRow(TypedDict):
    started_at: str
    finished_at: str
    duration_seconds: float
    command: str
    exit_code: int
    counts: dict[str, int]
    host: str
    pid: int
    error: str | None


class LockState(TypedDict):
    backend: str
    holder: str | None
    error: str | None


class StatusReport(TypedDict):
    """The whole report; the README's "status --json" schema documents every key of it (a test compares them)."""

    version: int
    generated_at: str
    state_dir: str
    installation_id: str | None
    espocrm: EspoState
    documents: Documents
    failed: Failed
    previews: Previews
    waiting: Waiting
    runs: list[RunRow]
    lock: LockState
    feeds: Feeds
    hidden: list[dict[str, str]]
    adopt_waiting: int


def where_equals(attribute: str, value: str) -> dict[str, Any]:
    """``attribute`` equals ``value`` as a where item; :data:`EMPTY` means NULL or empty text."""
    return queries.equals(attribute, None if value == EMPTY else value)


# ---------------------------------------------------------------------------------------------- collect


def collect_status(settings: Settings) -> StatusReport:
    """Gather the status report as plain JSON-able data (``docsync status --json`` prints exactly this).

    Keys (stable; new keys may be added, none removed or renamed; the README documents each):

    ``version``
        :data:`STATUS_VERSION`; changes only on an incompatible change.
    ``generated_at``
        ISO 8601 UTC time of the report.
    ``installation_id``
        Who owns the files this installation uploads (``sync.installation_id`` or the one in the state dir;
        null before the first run).
    ``state_dir``
        The local state directory read.
    ``espocrm``
        ``{"reachable": bool, "error": str | None}``. When EspoCRM cannot be reached (or refuses the key) the
        report still shows the local parts, the EspoCRM-based numbers below are ``null``, and ``error`` says
        why. ``docsync status`` still exits 0 then: it reports, it does not judge (``docsync check`` does).
    ``documents``
        ``{"total": int | None, Field.DATEI_STATUS: {"Neu", "Geändert", "Gesynct", "Fehler", "(leer)": int | None},
        Field.XAI_SYNC_STATUS: {"pending", "syncing", "synced", "failed", "(leer)": int | None},
        "other_dateiStatus": int | None}`` — EspoCRM's ``total`` per bucket; ``(leer)`` = NULL or empty;
        ``other_dateiStatus`` = documents with a value outside the known ones. All ``null`` when EspoCRM does not
        count Documents ("Disable record count": it answers ``total`` -1/-2); then ``failed.total`` and
        ``previews.missing`` are ``null`` too, and ``waiting`` is not computed: nothing is guessed.
    ``failed``
        ``{"total": int | None, "documents": [{"id", "name", Field.XAI_SYNC_STATUS, "error", "modifiedAt"}],
        "truncated": bool}`` — documents with dateiStatus Fehler, newest change first, at most 50 listed.
    ``previews``
        ``{"missing": int | None, "errors": [{"id", "name", "reason"}]}`` — ``missing`` counts Gesynct documents
        without a preview; ``errors`` are the preview failures the last runs recorded on this host (``name``
        from EspoCRM, null when it cannot be read).
    ``waiting``
        ``{"new": int, "changed": int, "no_status": int, "unfinished": int, "failed_retry": int,
        "failed_held_back": int, "next_run": int, "approximate": bool}`` (values ``null`` without EspoCRM).
        ``next_run`` = new + changed + no_status + unfinished + failed_retry is what the next ``docsync sync``
        would at least work on (drift found only by looking at each document is not counted);
        ``approximate`` is true when more failed documents exist than were listed (the rest count as held back).
    ``runs``
        The last 10 runs on this host, newest first: ``{"started_at", "finished_at", "duration_seconds",
        "command", "exit_code", "counts", "host", "pid", "error"}``.
    ``lock``
        ``{"backend": "file" | "redis", "holder": str | None, "error": str | None}`` — who holds the run lock
        now (``holder`` null: nobody); the lock is only looked at, never taken.
    ``feeds``
        ``{"enabled": bool, "watermark": str | None, "last_listing": ISO str | None, "listing_interval_seconds":
        float, "stream": "active" | "no access" | "unavailable (...)" | None, "accounts_override": bool | None,
        "note_cursor": int | None, "clock_skew_seconds": float | None, "clock_set_back": bool | None}`` — how plain
        runs find changes (``null``: no run recorded it yet). ``clock_skew_seconds`` is how far EspoCRM's ``Date``
        clock was measured ahead of its ``modifiedAt`` clock (docsync's own write-backs; the feed's overlap is
        widened by it); ``clock_set_back`` whether the last run found EspoCRM's clock before the watermark (then it
        made a listing pass).
        ``deletions`` is how plain runs notice deleted documents: ``"counts"`` (a count each run) or
        ``"listing"`` (EspoCRM does not count, "Disable record count": the listing pass compares ids).
        ``watermark`` is EspoCRM's time at the start of the last complete run; ``stream`` whether the API user
        can read GlobalStream (link changes then count from the next run; the stored values are
        :class:`~..state.StreamFeed`'s); ``accounts_override`` whether the listing carries ``accountsIds``
        (``noLoad: false``).
    ``hidden``
        ``[{"id", "reason", "since"}]`` — documents that exist in EspoCRM but that the API user may not read (a
        role or team change: ``GET`` answers 403). docsync keeps their files and says so; ``docsync check`` names
        the role setting.
    ``adopt_waiting``
        Documents whose xAI file no installation owns (an earlier system's): they wait for ``docsync adopt``.
    """
    data: StatusReport = {
        "version": STATUS_VERSION,
        "generated_at": utc_timestamp(),
        "state_dir": str(settings.state_dir),
        "installation_id": peek_installation_id(settings.state_dir, settings.sync.installation_id),
        "espocrm": {"reachable": False, "error": None},
        "documents": {"total": None, "dateiStatus": dict.fromkeys(DATEI_STATUSES),
                      "xaiSyncStatus": dict.fromkeys(SYNC_STATUSES), "other_dateiStatus": None},
        "failed": {"total": None, "documents": [], "truncated": False},
        "previews": {"missing": None, "errors": []},
        "waiting": {"new": None, "changed": None, "no_status": None, "unfinished": None, "failed_retry": None,
                    "failed_held_back": None, "next_run": None, "approximate": False},
        "runs": [],
        "lock": {"backend": settings.lock.backend, "holder": None, "error": None},
        "feeds": {"enabled": settings.sync.change_feeds, "watermark": None, "last_listing": None,
                  "listing_interval_seconds": settings.sync.listing_interval_seconds, "stream": None,
                  "accounts_override": None, "note_cursor": None, "clock_skew_seconds": None,
                  "clock_set_back": None, "deletions": None, "stream_partial": None, "stream_early_end": None,
                  "partial_listing_interval_seconds": settings.sync.partial_listing_interval_seconds},
        "hidden": [],
        "adopt_waiting": 0,
    }
    _collect_local(settings, data)
    data["hidden"] = collect_feeds(settings, data["feeds"])
    if ReadOnlyState(settings.state_dir).exists():
        data["adopt_waiting"] = ReadOnlyState(settings.state_dir).waiting_for_adopt()
    try:
        with report_services(settings) as services:
            _collect_remote(settings, services, data)
        data["espocrm"]["reachable"] = True
    except DocsyncError as exc:
        data["espocrm"]["error"] = redact(str(exc), settings)
    data["lock"] = _lock_status(settings)
    return data


def _collect_local(settings: Settings, data: StatusReport) -> None:
    history = open_history(settings.state_dir)
    if history is None:
        return
    with history:
        data["runs"] = [{"started_at": run.started_at, "finished_at": run.finished_at,
                         "duration_seconds": run.duration_seconds, "command": run.command,
                         "exit_code": run.exit_code, "counts": dict(run.counts), "host": run.host, "pid": run.pid,
                         "error": run.error} for run in history.last(RUNS_SHOWN)]
        data["previews"]["errors"] = [{"id": doc_id, "name": None, "reason": reason}
                                      for doc_id, reason in history.preview_errors().items()]


def _collect_remote(settings: Settings, services: Services, data: StatusReport) -> None:
    espo = services.espo
    espo.learn()  # the attribute names that really exist (e.g. cDateiStatus)
    status_attr, sync_attr = espo.attributes[Field.DATEI_STATUS], espo.attributes[Field.XAI_SYNC_STATUS]
    documents = data["documents"]
    total = espo.count([])
    if total < 0:  # "Disable record count" (-1/-2, contract §11.2): no count can be trusted, none is shown
        failed_docs = _failed_documents(services, status_attr)
        data["failed"] = {"total": None, "documents": _failed_rows(failed_docs),
                          "truncated": len(failed_docs) >= FAILED_LIST_LIMIT}
        _name_preview_errors(services, data["previews"]["errors"])
        return
    documents["total"] = total
    datei = {value: espo.count([where_equals(status_attr, value)]) for value in DATEI_STATUSES}
    documents["dateiStatus"].update(datei)
    for value in SYNC_STATUSES:
        documents["xaiSyncStatus"][value] = espo.count([where_equals(sync_attr, value)])
    other = documents["other_dateiStatus"] = max(0, total - sum(datei.values()))

    failed_docs = _failed_documents(services, status_attr)
    failed_total = datei[DateiStatus.FEHLER.value]
    data["failed"] = {
        "total": failed_total,
        "documents": _failed_rows(failed_docs),
        "truncated": failed_total > len(failed_docs),
    }
    data["previews"]["missing"] = espo.count(queries.synced_without_preview(espo.attributes, espo.preview_attr))
    _name_preview_errors(services, data["previews"]["errors"])

    unfinished = espo.count(queries.synced_but_unfinished(espo.attributes))
    local = read_local_records(settings.state_dir, [d.id for d in failed_docs])
    data["waiting"] = waiting_counts(datei, other, unfinished, failed_total, failed_docs, local)


def waiting_counts(datei_counts: dict[str, int], other: int, unfinished: int, failed_total: int,
                   failed_listed: list[CrmDocument], local: dict[str, LocalRecord]) -> Waiting:
    """What the next plain ``docsync sync`` would at least work on (the ``waiting`` part of the report), from the
    counts per dateiStatus, the ``other`` values, the Gesynct documents xAI has not finished, and the listed
    Fehler documents with their local records (which of them :func:`~..plan.why_work` would retry). The Fehler
    documents beyond the listed ones count as held back, and the numbers are then ``approximate``."""
    retry = sum(1 for d in failed_listed if why_work(d, local.get(d.id), full=False, explicit=False) is not None)
    new, changed, no_status = (datei_counts[DateiStatus.NEU.value], datei_counts[DateiStatus.GEAENDERT.value],
                               datei_counts[EMPTY] + other)
    return {"new": new, "changed": changed, "no_status": no_status, "unfinished": unfinished, "failed_retry": retry,
            "failed_held_back": failed_total - retry, "approximate": failed_total > len(failed_listed),
            "next_run": new + changed + no_status + unfinished + retry}


def _failed_rows(docs: list[CrmDocument]) -> list[FailedDocument]:
    return [{"id": d.id, "name": d.name, "xaiSyncStatus": d.xai_sync_status, "error": d.xai_sync_error,
             "modifiedAt": d.modified_at} for d in docs]


def _failed_documents(services: Services, status_attr: str) -> list[CrmDocument]:
    """Up to :data:`FAILED_LIST_LIMIT` Fehler documents, newest change first (one request)."""
    espo = services.espo
    select = ["id", "name", "modifiedAt", "fileId",
              *(espo.attributes[key] for key in (Field.DATEI_STATUS, Field.XAI_SYNC_STATUS, Field.XAI_SYNC_ERROR))]
    params = {"maxSize": FAILED_LIST_LIMIT, "offset": 0, "orderBy": "modifiedAt", "order": "desc",
              "select": select, "where": [where_equals(status_attr, DateiStatus.FEHLER.value)]}
    try:
        records, _ = espo.search("Document", params)
    except RejectedError:  # an answer without a list of records: none to show
        return []
    return [espo.to_document(record) for record in records]


def _name_preview_errors(services: Services, errors: list[PreviewErrorRow]) -> None:
    """Fill in the document names of the first :data:`FAILED_LIST_LIMIT` preview errors (one request)."""
    ids = [item["id"] for item in errors[:FAILED_LIST_LIMIT]]
    if not ids:
        return
    params = {"maxSize": len(ids), "offset": 0, "select": ["id", "name"],
              "where": queries.with_ids(ids)}
    try:
        records, _ = services.espo.search("Document", params)
    except RejectedError:  # an answer without a list of records: the names stay unknown
        records = []
    names = {str(r.get("id")): str(r.get("name") or "") for r in records}
    for item in errors:
        item["name"] = names.get(item["id"])


def _lock_status(settings: Settings) -> LockState:
    from docsync_cli.locks import make_locks

    result: LockState = {"backend": settings.lock.backend, "holder": None, "error": None}
    try:
        locks = make_locks(settings.lock.backend, settings.state_dir, settings.lock.url, settings.lock.ttl_seconds)
    except DocsyncError as exc:
        result["error"] = redact(str(exc), settings)
        return result
    try:
        result["holder"] = locks.holder()
    except DocsyncError as exc:
        result["error"] = redact(str(exc), settings)
    finally:
        with contextlib.suppress(DocsyncError):
            locks.close()
    return result


