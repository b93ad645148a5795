"""``docsync status``: counts per status, failures, missing previews, recent runs, the lock holder.

Everything here is read-only towards both services: EspoCRM is asked only with ``GET Document`` list requests
(``maxSize=1`` per count, one ``maxSize=50`` page for the failed documents), xAI is not asked at all. The cost is
a fixed number of requests whatever the number of documents. Local files are only read: a state directory that
does not exist yet is not created.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

from ..config import Settings, redact
from ..errors import DocsyncError
from ..model import CrmDocument, DateiStatus, SyncStatus
from ..plan import why_work
from ..services import Services
from ..state import ReadOnlyState, peek_installation_id
from .shared import open_history, read_local_records, report_services

EMPTY = "(leer)"
"""The bucket of documents whose status field is empty (NULL or ``""``)."""

DATEI_STATUSES = (DateiStatus.NEU.value, DateiStatus.GEAENDERT.value, DateiStatus.GESYNCT.value,
                  DateiStatus.FEHLER.value, EMPTY)
SYNC_STATUSES = (SyncStatus.PENDING.value, SyncStatus.SYNCING.value, SyncStatus.SYNCED.value,
                 SyncStatus.FAILED.value, EMPTY)
FAILED_LIST_LIMIT = 50
RUNS_SHOWN = 10


def where_equals(attribute: str, value: str) -> dict[str, Any]:
    """An EspoCRM where item: ``attribute`` equals ``value``; :data:`EMPTY` means NULL or empty text."""
    if value == EMPTY:
        return {"type": "or", "value": [{"type": "isNull", "attribute": attribute},
                                        {"type": "equals", "attribute": attribute, "value": ""}]}
    return {"type": "equals", "attribute": attribute, "value": value}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------- collect


def collect_status(settings: Settings) -> dict[str, Any]:
    """Gather the status report as plain JSON-able data (``docsync status --json`` prints exactly this).

    Keys (stable; new keys may be added, none removed or renamed):

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
        ``{"total": int | None, "dateiStatus": {"Neu", "Geändert", "Gesynct", "Fehler", "(leer)": int | None},
        "xaiSyncStatus": {"pending", "syncing", "synced", "failed", "(leer)": int | None},
        "other_dateiStatus": int | None}`` — EspoCRM's ``total`` per bucket; ``(leer)`` = NULL or empty;
        ``other_dateiStatus`` = documents with a value outside the known ones.
    ``failed``
        ``{"total": int | None, "documents": [{"id", "name", "xaiSyncStatus", "error", "modifiedAt"}],
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
        "note_cursor": int | None}`` — how plain runs find changes (``null``: no run recorded it yet).
        ``watermark`` is EspoCRM's time at the start of the last complete run; ``stream`` whether the API user
        can read GlobalStream (link changes then count from the next run); ``accounts_override`` whether the
        listing carries ``accountsIds`` (``noLoad: false``).
    """
    data: dict[str, Any] = {
        "generated_at": _now(),
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
                  "accounts_override": None, "note_cursor": None},
    }
    _collect_local(settings, data)
    _collect_feeds(settings, data)
    try:
        with report_services(settings) as services:
            _collect_remote(settings, services, data)
        data["espocrm"]["reachable"] = True
    except DocsyncError as exc:
        data["espocrm"]["error"] = redact(str(exc), settings)
    data["lock"] = _lock_status(settings)
    return data


def _collect_local(settings: Settings, data: dict[str, Any]) -> None:
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


def _collect_feeds(settings: Settings, data: dict[str, Any]) -> None:
    """The change-feed bookkeeping plain runs keep in ``state.sqlite3`` (read-only)."""
    state = ReadOnlyState(settings.state_dir)
    if not state.exists():
        return
    meta = state.meta()  # empty: an older state file without the table, or unreadable: nothing recorded
    feeds = data["feeds"]
    feeds["watermark"] = meta.get("watermark")
    if meta.get("last_listing"):
        feeds["last_listing"] = datetime.fromtimestamp(float(meta["last_listing"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if meta.get("note_cursor"):
        feeds["note_cursor"] = int(meta["note_cursor"])
    with contextlib.suppress(ValueError, TypeError):
        seen = json.loads(meta.get("feeds") or "{}")
        feeds["stream"] = seen.get("stream")
        feeds["accounts_override"] = seen.get("accounts_override")


def feeds_explained(feeds: dict[str, Any]) -> list[str]:
    """What the feeds mean for how fast each kind of change is noticed (the status text)."""
    minutes = f"{feeds['listing_interval_seconds'] / 60:g} min"
    if not feeds["enabled"]:
        return ["Change feeds are off (sync.change_feeds = false): every run lists every document."]
    lines = [f"Watermark: {feeds['watermark'] or '(none yet: the next run makes a listing pass)'} (EspoCRM time); "
             f"last listing pass: {feeds['last_listing'] or 'never'} (every {minutes} and in every --full)."]
    lines.append("New, changed, replaced and deleted documents and accounts given a collection: noticed by the "
                 "next run.")
    if feeds["stream"] == "active":
        lines.append("Stream notes (GlobalStream): active — a document linked to or unlinked from an account is "
                     "noticed by the next run.")
    else:
        state = feeds["stream"] or "not checked yet"
        lines.append(f"Stream notes (GlobalStream): {state} — linking/unlinking (which does not change the "
                     f"document) is noticed by the next listing pass, within {minutes}. Give the API user's role "
                     "the GlobalStream scope to notice it in the next run.")
    if feeds["accounts_override"]:
        lines.append("accountsIds override (noLoad: false): active — listing passes read each document's accounts "
                     "from the listing itself.")
    else:
        lines.append("accountsIds override: " + ("not set" if feeds["accounts_override"] is False else
                                                 "not checked yet") + " — listing passes list the documents of each "
                     "account with a collection (see `docsync espocrm-fields` for the override).")
    return lines


def _collect_remote(settings: Settings, services: Services, data: dict[str, Any]) -> None:
    espo = services.espo
    espo.learn()  # the attribute names that really exist (e.g. cDateiStatus)
    status_attr, sync_attr = espo.attributes["dateiStatus"], espo.attributes["xaiSyncStatus"]
    documents = data["documents"]
    documents["total"] = espo.count([])
    for value in DATEI_STATUSES:
        documents["dateiStatus"][value] = espo.count([where_equals(status_attr, value)])
    for value in SYNC_STATUSES:
        documents["xaiSyncStatus"][value] = espo.count([where_equals(sync_attr, value)])
    documents["other_dateiStatus"] = max(0, documents["total"] - sum(documents["dateiStatus"].values()))

    failed_docs = _failed_documents(services, status_attr)
    failed_total = documents["dateiStatus"][DateiStatus.FEHLER.value]
    data["failed"] = {
        "total": failed_total,
        "documents": [{"id": d.id, "name": d.name, "xaiSyncStatus": d.xai_sync_status, "error": d.xai_sync_error,
                       "modifiedAt": d.modified_at} for d in failed_docs],
        "truncated": failed_total > len(failed_docs),
    }
    data["previews"]["missing"] = espo.count([where_equals(status_attr, DateiStatus.GESYNCT.value),
                                              {"type": "isNull", "attribute": espo.preview_attr}])
    _name_preview_errors(services, data["previews"]["errors"])

    unfinished = espo.count([where_equals(status_attr, DateiStatus.GESYNCT.value),
                             {"type": "in", "attribute": sync_attr,
                              "value": [SyncStatus.PENDING.value, SyncStatus.SYNCING.value,
                                        SyncStatus.FAILED.value]}])
    local = read_local_records(settings.state_dir, [d.id for d in failed_docs])
    retry = sum(1 for d in failed_docs if why_work(d, local.get(d.id), full=False, explicit=False) is not None)
    held_back = failed_total - retry
    counts = documents["dateiStatus"]
    waiting = {
        "new": counts[DateiStatus.NEU.value],
        "changed": counts[DateiStatus.GEAENDERT.value],
        "no_status": counts[EMPTY] + documents["other_dateiStatus"],
        "unfinished": unfinished,
        "failed_retry": retry,
        "failed_held_back": held_back,
        "approximate": failed_total > len(failed_docs),
    }
    waiting["next_run"] = (waiting["new"] + waiting["changed"] + waiting["no_status"] + waiting["unfinished"]
                           + waiting["failed_retry"])
    data["waiting"] = waiting


def _failed_documents(services: Services, status_attr: str) -> list[CrmDocument]:
    """Up to :data:`FAILED_LIST_LIMIT` Fehler documents, newest change first (one request)."""
    espo = services.espo
    select = ["id", "name", "modifiedAt", "fileId", espo.attributes["dateiStatus"], espo.attributes["xaiSyncStatus"],
              espo.attributes["xaiSyncError"]]
    params = {"maxSize": FAILED_LIST_LIMIT, "offset": 0, "orderBy": "modifiedAt", "order": "desc",
              "select": select, "where": [where_equals(status_attr, DateiStatus.FEHLER.value)]}
    page = espo.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                             headers={"X-No-Total": "true"})
    records = page.get("list") if isinstance(page, dict) else None
    if not isinstance(records, list):
        return []
    return [espo.to_document(record) for record in records if isinstance(record, dict)]


def _name_preview_errors(services: Services, errors: list[dict[str, Any]]) -> None:
    """Fill in the document names of the first :data:`FAILED_LIST_LIMIT` preview errors (one request)."""
    ids = [item["id"] for item in errors[:FAILED_LIST_LIMIT]]
    if not ids:
        return
    params = {"maxSize": len(ids), "offset": 0, "select": ["id", "name"],
              "where": [{"type": "in", "attribute": "id", "value": ids}]}
    page = services.espo.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                                      headers={"X-No-Total": "true"})
    records = page.get("list") if isinstance(page, dict) else None
    names = {str(r.get("id")): str(r.get("name") or "") for r in records or [] if isinstance(r, dict)}
    for item in errors:
        item["name"] = names.get(item["id"])


def _lock_status(settings: Settings) -> dict[str, Any]:
    from ..locks import make_locks

    result: dict[str, Any] = {"backend": settings.lock.backend, "holder": None, "error": None}
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


# ---------------------------------------------------------------------------------------------- render


def render_status(data: dict[str, Any], console: Any) -> None:
    """Print :func:`collect_status`'s data as rich tables (status names exactly as in the CRM)."""
    from rich.table import Table

    console.print(f"Installation: {data.get('installation_id') or '(not yet made; the first sync makes it)'}",
                  markup=False, soft_wrap=True)
    espocrm = data["espocrm"]
    if not espocrm["reachable"]:
        console.print(f"EspoCRM could not be reached: {espocrm['error']}\n"
                      "Showing what this host knows locally.", markup=False, soft_wrap=True, style="bold red")
    documents = data["documents"]
    if documents["total"] is not None:
        table = Table(title=f"Documents ({documents['total']})", title_justify="left")
        table.add_column("dateiStatus")
        table.add_column("count", justify="right")
        for name, count in documents["dateiStatus"].items():
            table.add_row(_cell(name), str(count))
        if documents["other_dateiStatus"]:
            table.add_row("(other)", str(documents["other_dateiStatus"]))
        console.print(table)
        table = Table(title="xAI sync", title_justify="left")
        table.add_column("xaiSyncStatus")
        table.add_column("count", justify="right")
        for name, count in documents["xaiSyncStatus"].items():
            table.add_row(_cell(name), str(count))
        console.print(table)
        _render_waiting(data["waiting"], console)
    failed = data["failed"]
    if failed["documents"]:
        more = f", showing {len(failed['documents'])}" if failed["truncated"] else ""
        table = Table(title=f"Fehler ({failed['total']}{more})", title_justify="left")
        for column in ("id", "name", "error"):
            table.add_column(column, overflow="fold")
        for doc in failed["documents"]:
            table.add_row(_cell(doc["id"]), _cell(doc["name"]), _cell(doc["error"] or ""))
        console.print(table)
    _render_previews(data["previews"], console)
    console.print("Change feeds", style="italic")
    for line in feeds_explained(data["feeds"]):
        console.print("  " + line, markup=False, soft_wrap=True)
    _render_runs(data["runs"], console)
    lock = data["lock"]
    if lock["error"]:
        console.print(f"Lock ({lock['backend']}): cannot tell: {lock['error']}", markup=False, soft_wrap=True)
    else:
        console.print(f"Lock ({lock['backend']}): " + (f"held by {lock['holder']}" if lock["holder"] else "free"),
                      markup=False, soft_wrap=True)


def _cell(text: str) -> Any:
    """A table cell shown literally (CRM names and error texts may contain ``[...]``, which rich reads as markup)."""
    from rich.text import Text

    from ..secrets import printable, scrub

    return Text(scrub(printable(str(text), 2000)))  # no terminal escapes, no secrets


def _render_waiting(waiting: dict[str, Any], console: Any) -> None:
    about = "about " if waiting["approximate"] else "at least "
    parts = [f"{waiting['new']} Neu", f"{waiting['changed']} Geändert"]
    if waiting["no_status"]:
        parts.append(f"{waiting['no_status']} without dateiStatus")
    if waiting["unfinished"]:
        parts.append(f"{waiting['unfinished']} unfinished")
    if waiting["failed_retry"]:
        parts.append(f"{waiting['failed_retry']} Fehler to retry")
    if waiting["next_run"] == 0:
        line = "Waiting: no document is marked for the next run (drift is found only by a run)"
    else:
        line = f"Waiting: the next run would work on {about}{waiting['next_run']} documents ({', '.join(parts)})"
    if waiting["failed_held_back"]:
        line += (f"; {waiting['failed_held_back']} Fehler held back until they change (`docsync sync --id ID` or "
                 "`docsync sync --retry-failed` retries them now)")
    console.print(line, markup=False, soft_wrap=True)


def _render_previews(previews: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    if previews["missing"] is not None:
        console.print(f"Previews missing: {previews['missing']} Gesynct documents have no preview", markup=False,
                      soft_wrap=True)
    if previews["errors"]:
        table = Table(title="Preview errors", title_justify="left")
        table.add_column("document")
        table.add_column("id")
        table.add_column("reason", overflow="fold")
        for item in previews["errors"]:
            table.add_row(_cell(item.get("name") or "?"), _cell(item["id"]), _cell(item["reason"]))
        console.print(table)


def _render_runs(runs: list[dict[str, Any]], console: Any) -> None:
    from rich.table import Table

    if not runs:
        console.print("No runs recorded on this host yet.", markup=False, soft_wrap=True)
        return
    table = Table(title="Last runs", title_justify="left")
    for column in ("started", "duration", "command", "exit", "counts"):
        table.add_column(column, justify="right" if column in ("duration", "exit") else "left")
    for run in runs:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run["counts"].items()) if n)
        if run["error"]:
            counts = (counts + "; " if counts else "") + str(run["error"])
        table.add_row(run["started_at"], f"{run['duration_seconds']:.1f} s", _cell(run["command"]),
                      str(run["exit_code"]), _cell(counts))
    console.print(table)
