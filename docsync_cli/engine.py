"""Executes a run: gather → plan (``plan.py``) → work through documents → delete → summary.

Per document (under its lock, in a worker thread), in this order — make-before-break:

1. mark the record ``xaiSyncStatus = syncing``;
2. download the file to a private temp file, hashing MD5 + SHA-256 in the same pass (over-size files stop early);
3. find its required collections (static ones ∪ the configured field of every linked record);
4. look at where its current xAI file sits; :func:`plan.plan_document` decides upload / keep / join / leave;
5. upload (journalled; an upload whose answer was lost is looked up by its marked name, never blindly repeated),
   add to each required collection, wait (bounded) until xAI has processed it everywhere;
6. make the preview (a failure never fails the sync);
7. re-read the record: if a person edited it meanwhile, write nothing and leave it for the next run; otherwise
   write everything back in one conditional update;
8. only then take the file out of collections it no longer belongs in and retire the superseded file.

A document-level failure marks that document "Fehler" with a readable reason and the run goes on. A run-fatal
error (401/403, unreachable service, lock lost, disk full) stops the run: documents not reached keep their status.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .errors import (
    AmbiguousWriteError,
    AuthError,
    ConflictError,
    DocsyncError,
    DocumentError,
    HttpError,
    LocalEnvironmentError,
    LockHeld,
    NotFoundError,
    PermanentDocumentError,
    PreviewError,
    RejectedError,
    RunFatal,
    ServiceUnreachable,
    TransientDocumentError,
    TransientHttpError,
)
from .espocrm import EspoClient
from .hashing import FileTooLarge, HashingWriter, private_temp_file
from .model import (
    Content,
    CrmDocument,
    DateiStatus,
    Deletion,
    DocPlan,
    DocResult,
    LocalRecord,
    Membership,
    RemoteMember,
    RunPlan,
    SyncStatus,
    WorkItem,
)
from .plan import DeleteLimits, plan_document, plan_run, why_work
from .state import StateStore
from .transport import short
from .xai import FAILED, MANAGED_BY, PROCESSED, XaiClient, name_prefix, upload_name

log = logging.getLogger("docsync.engine")
MAX_ERROR_TEXT = 1000
OUTAGE_STREAK = 5
ORPHAN_MIN_AGE = 3600.0
MARKED_NAME = re.compile(r"crm-(.+?)-[0-9a-f]{8}-")


class Locks(Protocol):
    def document(self, doc_id: str) -> contextlib.AbstractContextManager[None]: ...
    def check(self) -> None: ...


class Previewer(Protocol):
    def render(self, source: Path, filename: str) -> bytes: ...


@dataclass(frozen=True)
class LinkRule:
    link: str
    field: str


@dataclass(frozen=True)
class EngineSettings:
    static_collections: tuple[str, ...] = ()
    links: tuple[LinkRule, ...] = (LinkRule("accounts", "xaiCollectionId"),)
    max_file_bytes: int = 50 * 1024 * 1024
    processing_wait_seconds: float = 60.0
    poll_interval_seconds: float = 2.0
    concurrency: int = 8
    delete_limits: DeleteLimits = field(default_factory=DeleteLimits)
    temp_dir: Path | None = None


@dataclass(frozen=True)
class RunOptions:
    ids: frozenset[str] | None = None
    dry_run: bool = False
    full: bool = False
    limit: int | None = None
    force_delete: bool = False
    prune_only: bool = False


@dataclass
class RunSummary:
    plan: RunPlan | None = None
    results: list[DocResult] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fatal: DocsyncError | None = None
    stopped: bool = False

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {"planned": len(self.plan.work) if self.plan else 0,
                                  "unchanged": self.plan.unchanged if self.plan else 0,
                                  "held_back": len(self.plan.held_back) if self.plan else 0,
                                  "deleted": len(self.deleted)}
        for result in self.results:
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            if result.preview not in (None, "written", "unchanged", "off"):
                counts["preview_failed"] = counts.get("preview_failed", 0) + 1
        return counts

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return getattr(self.fatal, "exit_code", 4)
        if any(r.outcome == "failed" for r in self.results):
            return 1
        if self.stopped:
            return 1
        return 0


class Engine:
    def __init__(
        self,
        espo: EspoClient,
        xai: XaiClient,
        state: StateStore,
        locks: Locks,
        settings: EngineSettings,
        *,
        previews: Previewer | None = None,
        on_result: Callable[[DocResult], None] | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.espo = espo
        self.xai = xai
        self.state = state
        self.locks = locks
        self.settings = settings
        self.previews = previews
        self.on_result = on_result or (lambda result: None)
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.clock = clock
        self.wall = wall
        self._fatal: DocsyncError | None = None
        self._fatal_lock = threading.Lock()
        self._transient_streak = 0  # consecutive documents that failed with a transient error
        self._render_pool: ThreadPoolExecutor | None = None
        self._render_pool_lock = threading.Lock()

    # -- run level -----------------------------------------------------------------------------------

    def gather(self, options: RunOptions) -> list[CrmDocument]:
        if options.ids is None:
            return list(self.espo.iter_documents())
        docs = []
        for doc_id in sorted(options.ids):
            try:
                docs.append(self.espo.get_document(doc_id))
            except NotFoundError:
                log.warning("document %s does not exist in EspoCRM", doc_id)
        return docs

    def managed_collections(self, docs: Iterable[CrmDocument], local: dict[str, LocalRecord]) -> list[str]:
        found = set(self.settings.static_collections)
        for doc in docs:
            found.update(doc.xai_collections)
        for record in local.values():
            found.update(record.collections)
        return sorted(found)

    def remote_members(self, collections: list[str]) -> list[RemoteMember]:
        """Every document docsync put into the managed collections (raises if any listing fails)."""
        members = []
        for collection_id in collections:
            for doc in self.xai.iter_documents(collection_id):
                fields = doc.get("fields") or {}
                meta = doc.get("file_metadata") or {}
                if fields.get("managed_by") != MANAGED_BY or not fields.get("crm_document_id"):
                    continue  # added by a person: never ours to remove
                members.append(RemoteMember(collection_id, str(meta.get("file_id")), str(fields["crm_document_id"]),
                                            str(fields.get("content_sha256") or "")))
        return members + self.orphan_files({m.file_id for m in members})

    def orphan_files(self, in_collections: set[str]) -> list[RemoteMember]:
        """Marked files (``crm-<id>-<sha8>-…``) that are in no managed collection — leftovers of a crash
        between upload and add, or between leaving the collections and the delete. Files younger than
        ``ORPHAN_MIN_AGE`` are left alone: another host may be about to add them."""
        found = []
        for item in self.xai.find_files("crm-"):
            file_id = str(item.get("id"))
            match = MARKED_NAME.match(str(item.get("filename", "")))
            created = item.get("created_at")
            if file_id in in_collections or match is None or not isinstance(created, int | float):
                continue
            if self.wall() - created < ORPHAN_MIN_AGE:
                continue
            found.append(RemoteMember("", file_id, match.group(1), ""))
        return found

    def plan(self, options: RunOptions, summary: RunSummary) -> tuple[RunPlan, list[CrmDocument]]:
        docs = self.gather(options)
        local = self.state.records()
        remote: list[RemoteMember] | None = None
        if options.full and options.ids is None:
            try:
                remote = self.remote_members(self.managed_collections(docs, local))
            except RunFatal:
                raise
            except DocsyncError as exc:
                summary.notes.append(f"xAI listing failed ({exc}); no deletions in this run")
        limits = DeleteLimits(self.settings.delete_limits.max_count, self.settings.delete_limits.max_percent,
                              force=options.force_delete)
        run_plan = plan_run(docs, local, ids=options.ids, full=options.full, remote=remote, limits=limits,
                            limit=options.limit)
        if remote is not None:
            run_plan = _with_superseded(run_plan, docs, remote)
        if options.prune_only:
            run_plan = RunPlan((), run_plan.unchanged + len(run_plan.work), run_plan.held_back, run_plan.deletions)
        return run_plan, docs

    def run(self, options: RunOptions) -> RunSummary:
        summary = RunSummary()
        try:
            summary.plan, _ = self.plan(options, summary)
        except DocsyncError as exc:
            if isinstance(exc, RunFatal):
                summary.fatal = exc
                return summary
            raise
        if options.dry_run:
            return summary
        try:
            self.finish_cleanups(summary)
        except RunFatal as exc:
            summary.fatal = exc
            return summary
        try:
            self._work(summary.plan.work, summary)
        finally:
            self.close()
        summary.fatal = self._fatal
        summary.stopped = self.stop.is_set() and len(summary.results) < len(summary.plan.work)
        if summary.fatal is None and not summary.stopped and summary.plan.deletions:
            self._delete(summary.plan.deletions, summary)
        return summary

    def _work(self, items: tuple[WorkItem, ...], summary: RunSummary) -> None:
        lock = threading.Lock()

        def one(item: WorkItem) -> None:
            if self.stop.is_set() or self._fatal is not None:
                return
            result = self.process(item)
            with lock:
                summary.results.append(result)
            self.on_result(result)

        workers = max(1, min(self.settings.concurrency, len(items) or 1))
        if workers == 1:
            for item in items:
                one(item)
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="doc") as pool:
            for future in [pool.submit(one, item) for item in items]:
                future.result()

    def _delete(self, deletions: tuple[Deletion, ...], summary: RunSummary) -> None:
        files: dict[str, list[str]] = {}
        owners: dict[str, str] = {}
        for deletion in deletions:
            files.setdefault(deletion.member.file_id, []).append(deletion.member.collection_id)
            owners[deletion.member.file_id] = deletion.member.crm_document_id
        for file_id, collections in sorted(files.items()):
            try:
                # Under the document's lock: a concurrent run may be in the middle of replacing that file.
                with self.locks.document(owners[file_id]):
                    self.locks.check()
                    steps = [(file_id, c) for c in collections if c] + [(file_id, "")]  # "": no collection
                    self.state.cleanup_planned(owners[file_id], steps)  # a crash midway is finished next run
                    for step_file, collection_id in steps:
                        if collection_id:
                            self.xai.remove_document(collection_id, step_file)
                        else:
                            self.xai.delete_file(step_file)
                        self.state.cleanup_done(step_file, collection_id)
                summary.deleted.append(file_id)
                log.info("deleted xAI file %s (%s)", file_id, "; ".join(d.reason for d in deletions
                                                                         if d.member.file_id == file_id)[:200])
            except LockHeld:
                summary.notes.append(f"{file_id} not deleted: its document is being worked on; next full run")
            except RunFatal as exc:
                summary.fatal = exc
                return
            except DocsyncError as exc:
                summary.notes.append(f"could not delete {file_id}: {exc}; retried next full run")

    def _watch_outage(self, result: DocResult) -> None:
        """A circuit breaker: after ``OUTAGE_STREAK`` documents in a row failed transiently (the services keep
        answering 5xx/timeouts even after retries), stop the run instead of marking every document."""
        with self._fatal_lock:
            if result.outcome == "failed" and result.error_code in ("transient", "membership_lost"):
                self._transient_streak += 1
            elif result.outcome in ("synced", "unchanged", "pending"):
                self._transient_streak = 0
            tripped = self._transient_streak >= OUTAGE_STREAK
        if tripped:
            self._set_fatal(ServiceUnreachable(
                f"{OUTAGE_STREAK} documents in a row failed with transient errors (last: {result.detail}); "
                "stopping this run, the next run retries"))

    def _set_fatal(self, exc: DocsyncError) -> None:
        with self._fatal_lock:
            if self._fatal is None:
                self._fatal = exc

    # -- document level ------------------------------------------------------------------------------

    def process(self, item: WorkItem) -> DocResult:
        doc = item.doc
        result = DocResult(doc.id, doc.name, "failed", detail=item.reason)
        try:
            with self.locks.document(doc.id):
                self._process(doc, item.reason, item.reason == "requested with --id", result)
        except LockHeld as exc:
            result.outcome, result.detail = "skipped", f"busy: {exc.holder}"
        except RunFatal as exc:
            self._set_fatal(exc)
            result.outcome, result.detail, result.error_code = "deferred", f"run stopped: {exc}", "run_fatal"
            self._restore_status(doc, exc)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
                fatal = LocalEnvironmentError(f"local disk problem: {exc.strerror}")
                self._set_fatal(fatal)
                result.outcome, result.detail, result.error_code = "deferred", str(fatal), "run_fatal"
                self._restore_status(doc, fatal)
            else:
                self._fail(doc, result, TransientDocumentError(f"local error: {exc}", "local_error"))
        except DocumentError as exc:
            self._fail(doc, result, exc)
        except ConflictError:
            result.outcome = "deferred"
            result.detail = "edited in EspoCRM while docsync worked on it; picked up again next run"
        except HttpError as exc:
            self._fail(doc, result, _as_document_error(exc))
        self._watch_outage(result)
        log.info("%s %s: %s%s", doc.id, result.outcome, result.detail,
                 f" [{', '.join(result.actions)}]" if result.actions else "")
        return result

    def _process(self, listed: CrmDocument, reason: str, explicit: bool, result: DocResult) -> None:
        self.locks.check()
        # Re-read under the document lock: another run (a second host, an admin's --id) or a person may have
        # changed the record since the listing.
        try:
            doc = self.espo.get_document(listed.id)
        except NotFoundError:
            result.outcome, result.detail = "skipped", "deleted in EspoCRM since the listing"
            return
        local = self.state.record(doc.id)
        if not explicit and why_work(doc, local, full=reason == "full check", explicit=False) is None:
            result.outcome, result.detail = "unchanged", "already in step (done by another run)"
            return
        if doc.problems:
            raise PermanentDocumentError("unexpected field values: " + "; ".join(doc.problems), "bad_fields")
        if not doc.file_id:
            raise PermanentDocumentError("the document has no file attached", "no_file")
        path, handle = private_temp_file(self.settings.temp_dir, suffix=Path(doc.file_name or "").suffix[:16])
        rendering: Future[bytes] | None = None
        try:
            # A --full check of a document this host synced before needs no download: the hashes are known.
            known = self._known_content(doc, local) if reason == "full check" else None
            content = known or self._download(doc, handle)
            handle.close()
            required = self.required_collections(doc)
            current = self._membership(doc, required)
            doc_plan = plan_document(doc, content, required, current)
            if self._in_step(doc, content, required, doc_plan, current, local):
                self._remember(doc, content, required, doc.modified_at, local)
                result.outcome, result.detail = "unchanged", "verified: EspoCRM and xAI agree"
                return
            if known is not None:  # something needs doing after all: now the file is needed
                with path.open("w+b") as again:
                    content = self._download(doc, again)
                doc_plan = plan_document(doc, content, required, current)
            rendering = self._start_preview(doc, content, path, result)
            marked = self.espo.update(doc.id, {"xaiSyncStatus": SyncStatus.SYNCING.value}, version=doc.version)
            file_id, uploaded = self._apply(doc, content, path, doc_plan, result)
            processing = self._wait_processed(file_id, required)
            preview_id = self._finish_preview(doc, rendering, result)
            cleanup = self._cleanup_items(doc, file_id, doc_plan, required, local)
            self._write_back(doc, marked, content, file_id, uploaded, required, processing, preview_id, result,
                             cleanup)
            if result.outcome == "synced":
                self._break(doc, cleanup, result)
        finally:
            handle.close()
            if rendering is not None and not rendering.cancel():
                rendering.exception()  # never delete the file under a running render: wait for it to end
            path.unlink(missing_ok=True)

    @staticmethod
    def _known_content(doc: CrmDocument, local: LocalRecord | None) -> Content | None:
        if (local is None or local.file_id != doc.file_id or not local.sha256 or not local.md5
                or local.sha256 != doc.sha or local.md5 != doc.md5):
            return None
        return Content(sha256=local.sha256, md5=local.md5, size=-1)

    def _in_step(self, doc: CrmDocument, content: Content, required: frozenset[str], doc_plan: DocPlan,
                 current: Membership | None, local: LocalRecord | None) -> bool:
        """True when nothing needs writing anywhere: the check path of a host that has not seen the document
        yet, and of ``--full`` runs. Makes zero write requests."""
        if doc_plan.upload or doc_plan.add_to or doc_plan.remove_from or doc_plan.reindex:
            return False
        if required:
            if current is None or doc.xai_file_id != current.file_id:
                return False
            if any(status != PROCESSED for c, status in current.statuses.items() if c in required):
                return False
        elif doc.xai_file_id or doc_plan.retire:
            return False
        preview_ok = self.previews is None or (doc.preview_id is not None and (
            local is None or local.preview_sha in (None, content.sha256)))
        return (doc.datei_status == DateiStatus.GESYNCT and doc.xai_sync_status == SyncStatus.SYNCED
                and not doc.xai_sync_error and doc.sha == content.sha256 and doc.md5 == content.md5
                and doc.xai_synced_hash == content.sha256
                and sorted(doc.xai_collections) == sorted(required) and preview_ok)

    def _remember(self, doc: CrmDocument, content: Content, required: frozenset[str], modified_at: str,
                  local: LocalRecord | None) -> None:
        self.state.save(LocalRecord(
            doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
            xai_file_id=doc.xai_file_id or None, collections=tuple(sorted(required)), crm_modified_at=modified_at,
            preview_sha=content.sha256 if doc.preview_id else None))

    def _download(self, doc: CrmDocument, handle: Any) -> Content:
        assert doc.file_id is not None
        writer = HashingWriter(handle, max_bytes=self.settings.max_file_bytes)
        try:
            self.espo.download(doc.file_id, writer)  # type: ignore[arg-type]
        except NotFoundError as exc:
            raise PermanentDocumentError(f"the attachment {doc.file_id} does not exist in EspoCRM (404)",
                                         "file_missing") from exc
        except FileTooLarge as exc:
            raise PermanentDocumentError(
                f"the file is larger than xAI's limit of {exc.limit // (1024 * 1024)} MB; not uploaded",
                "too_large") from exc
        content = writer.content()
        if content.size == 0:
            raise PermanentDocumentError("the file is empty (0 bytes)", "empty_file")
        return content

    def required_collections(self, doc: CrmDocument) -> frozenset[str]:
        required = set(self.settings.static_collections)
        for rule in self.settings.links:
            try:
                required.update(self.espo.related_values(doc.id, rule.link, rule.field))
            except NotFoundError as exc:
                raise PermanentDocumentError(f"cannot follow link '{rule.link}': {exc.detail or 'not found'}",
                                             "bad_link") from exc
        return frozenset(required)

    def _membership(self, doc: CrmDocument, required: frozenset[str]) -> Membership | None:
        if not doc.xai_file_id or not self.xai.file_exists(doc.xai_file_id):
            return None
        local = self.state.record(doc.id)
        candidates = set(required) | set(doc.xai_collections) | set(local.collections if local else ())
        statuses = {}
        for collection_id in sorted(candidates):
            try:
                member = self.xai.document(collection_id, doc.xai_file_id)
            except NotFoundError:
                member = None
            if member is not None:
                statuses[collection_id] = str(member.get("status") or "DOCUMENT_STATUS_UNKNOWN")
        return Membership(doc.xai_file_id, statuses)

    def _apply(self, doc: CrmDocument, content: Content, path: Path, doc_plan: DocPlan,
               result: DocResult) -> tuple[str, bool]:
        # "" when the document is in no collection: nothing to index, so no file at xAI
        file_id = self._upload(doc, content, path, result) if doc_plan.upload else (doc_plan.keep_file_id or "")
        for collection_id in doc_plan.add_to:
            self.locks.check()
            self.xai.ensure_fields(collection_id)
            self.xai.add_document(collection_id, file_id, doc.id, content.sha256)
            result.actions.append(f"add {collection_id}")
        for collection_id in doc_plan.reindex:
            self.locks.check()
            self.xai.reindex(collection_id, file_id)
            result.actions.append(f"reindex {collection_id}")
        return file_id, doc_plan.upload

    def _upload(self, doc: CrmDocument, content: Content, path: Path, result: DocResult) -> str:
        name = upload_name(doc.id, content.sha256, doc.file_name or doc.name or "document")
        intent = self.state.upload_intent(doc.id, content.sha256)
        if intent is not None:
            adopted = self._adopt(doc, content, intent[1])
            if adopted:
                result.actions.append(f"adopt {adopted}")
                return adopted
        self.locks.check()
        self.state.upload_started(doc.id, content.sha256, name)
        mime = mimetypes.guess_type(doc.file_name or "")[0] or "application/octet-stream"
        try:
            answer = self.xai.upload(path, name, mime)
        except AmbiguousWriteError:
            adopted = self._adopt(doc, content, None)
            if adopted:
                result.actions.append(f"adopt {adopted} (answer was lost)")
                return adopted
            answer = self.xai.upload(path, name, mime)  # looked up: it did not arrive, so one more try is safe
        file_id = str(answer["id"])
        if answer.get("bytes") not in (None, content.size):
            self.xai.delete_file(file_id)
            raise TransientDocumentError(f"xAI stored {answer.get('bytes')} bytes of {content.size}; removed it",
                                         "upload_truncated")
        self.state.upload_done(doc.id, content.sha256, file_id)
        result.actions.append(f"upload {file_id}")
        return file_id

    def _adopt(self, doc: CrmDocument, content: Content, known_id: str | None) -> str | None:
        """Find an earlier upload of exactly this content; keep the oldest, delete duplicates."""
        if known_id and self.xai.file_exists(known_id):
            return known_id
        found = [f for f in self.xai.find_files(name_prefix(doc.id, content.sha256))
                 if f.get("bytes") in (None, content.size)]
        if not found:
            return None
        found.sort(key=lambda f: (f.get("created_at") or 0, str(f.get("id"))))
        keep = str(found[0]["id"])
        for duplicate in found[1:]:
            self.xai.delete_file(str(duplicate["id"]))
        self.state.upload_done(doc.id, content.sha256, keep)
        return keep

    def _wait_processed(self, file_id: str, required: frozenset[str]) -> tuple[str, str]:
        """("processed" | "pending" | "failed", error message), polling within the configured bound."""
        if not required:
            return "processed", ""
        deadline = self.clock() + self.settings.processing_wait_seconds
        while True:
            waiting = False
            for collection_id in sorted(required):
                status, message = self.xai.statuses(collection_id, [file_id]).get(
                    file_id, ("DOCUMENT_STATUS_MISSING", ""))
                if status == FAILED:
                    return "failed", f"xAI could not process the file in {collection_id}: {message or 'no reason'}"
                if status == "DOCUMENT_STATUS_MISSING":
                    raise TransientDocumentError(f"the file vanished from {collection_id} after being added",
                                                 "membership_lost")
                if status != PROCESSED:
                    waiting = True  # PROCESSING, UNKNOWN and any new status all mean "not yet"
            if not waiting:
                return "processed", ""
            if self.clock() >= deadline or self.stop.is_set():
                return "pending", ""
            self.sleep(self.settings.poll_interval_seconds)

    def _start_preview(self, doc: CrmDocument, content: Content, path: Path, result: DocResult
                       ) -> Future[bytes] | None:
        """Start rendering right after the download, so rendering (CPU) overlaps upload and indexing
        (network). None when no preview is needed."""
        if self.previews is None:
            result.preview = "off"
            return None
        local = self.state.record(doc.id)
        if doc.preview_id and local is not None and local.preview_sha == content.sha256:
            result.preview = "unchanged"
            return None
        with self._render_pool_lock:
            if self._render_pool is None:
                self._render_pool = ThreadPoolExecutor(max_workers=max(2, self.settings.concurrency),
                                                       thread_name_prefix="render")
        return self._render_pool.submit(self.previews.render, path, doc.file_name or doc.name)

    def _finish_preview(self, doc: CrmDocument, rendering: Future[bytes] | None, result: DocResult) -> str | None:
        if rendering is None:
            return None
        try:
            webp = rendering.result()
            self.locks.check()
            preview_id = self.espo.upload_preview(f"{Path(doc.file_name or doc.name).stem or 'preview'}.webp", webp)
        except PreviewError as exc:
            result.preview = f"{exc.code}: {exc}"
            log.warning("%s preview failed: %s", doc.id, result.preview)
            return None
        except (RejectedError, TransientHttpError, AmbiguousWriteError) as exc:
            result.preview = f"upload_failed: {exc}"
            log.warning("%s preview upload failed: %s", doc.id, exc)
            return None
        result.preview = "written"
        return preview_id

    def close(self) -> None:
        with self._render_pool_lock:
            if self._render_pool is not None:
                self._render_pool.shutdown(wait=True, cancel_futures=True)
                self._render_pool = None

    def _write_back(self, doc: CrmDocument, marked: CrmDocument, content: Content, file_id: str, uploaded: bool,
                    required: frozenset[str], processing: tuple[str, str], preview_id: str | None,
                    result: DocResult, cleanup: list[tuple[str, str]]) -> None:
        state, message = processing
        values: dict[str, Any] = {"md5": content.md5, "sha": content.sha256}
        if state == "processed":
            values |= {"dateiStatus": DateiStatus.GESYNCT.value, "xaiSyncStatus": SyncStatus.SYNCED.value,
                       "xaiSyncError": "", "xaiFileId": file_id, "xaiCollections": sorted(required),
                       "xaiSyncedHash": content.sha256}
        elif state == "pending":
            # Not searchable everywhere yet: the record keeps pointing at what xAI fully holds (the old file,
            # if any, stays in place); the next run adopts the upload from the journal and finishes.
            values |= {"xaiSyncStatus": SyncStatus.PENDING.value, "xaiSyncError": ""}
        else:
            values |= {"dateiStatus": DateiStatus.FEHLER.value, "xaiSyncStatus": SyncStatus.FAILED.value,
                       "xaiSyncError": _clip(message)}
        if preview_id:
            values["preview"] = preview_id
        now = self.espo.get_document(doc.id)
        edited = (now.fingerprint != marked.fingerprint or now.modified_at != marked.modified_at
                  or now.file_id != doc.file_id)
        if not edited:
            try:
                self.locks.check()
                if state == "processed" and cleanup:
                    self.state.cleanup_planned(doc.id, cleanup)  # before the write that makes them due
                after = self.espo.update(doc.id, _attr(values, self.espo), version=marked.version)
            except ConflictError:
                edited = True
        if edited:
            result.outcome = "deferred"
            result.detail = "edited in EspoCRM while docsync worked on it; picked up again next run"
            if uploaded and now.file_id != doc.file_id:
                self._roll_back(file_id, required, doc, content)
            # Only docsync's own progress field, unconditionally: the person's edit stays as it is, and the
            # record says another pass is needed (an upload of unchanged content is adopted, not repeated).
            with contextlib.suppress(ConflictError, NotFoundError):
                self.espo.update(doc.id, {"xaiSyncStatus": SyncStatus.PENDING.value})
            return
        previous = self.state.record(doc.id)
        preview_sha = content.sha256 if (preview_id or result.preview == "unchanged") else (
            previous.preview_sha if previous else None)
        if state == "processed":
            self.state.save(LocalRecord(
                doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
                xai_file_id=file_id or None, collections=tuple(sorted(required)), crm_modified_at=after.modified_at,
                preview_sha=preview_sha))
            self.state.upload_settled(doc.id)
            result.outcome = "synced"
            return
        self.state.save(LocalRecord(
            doc_id=doc.id, file_id=doc.file_id if state == "failed" else (previous.file_id if previous else None),
            sha256=previous.sha256 if previous else None, md5=previous.md5 if previous else None,
            xai_file_id=doc.xai_file_id, collections=doc.xai_collections, crm_modified_at=after.modified_at,
            failure_code="processing_failed" if state == "failed" else None, failure_transient=False,
            preview_sha=preview_sha))
        result.outcome = state
        if state == "failed":
            result.error_code, result.detail = "processing_failed", message

    def _roll_back(self, file_id: str, required: frozenset[str], doc: CrmDocument, content: Content) -> None:
        for collection_id in sorted(required):
            self.xai.remove_document(collection_id, file_id)
        self.xai.delete_file(file_id)
        self.state.upload_settled(doc.id, content.sha256)

    def _cleanup_items(self, doc: CrmDocument, file_id: str, doc_plan: DocPlan, required: frozenset[str],
                       local: LocalRecord | None) -> list[tuple[str, str]]:
        """The break half: (file, collection) removals and (file, "") deletions due once the CRM points at
        ``file_id`` in ``required``."""
        items = [(file_id, collection_id) for collection_id in doc_plan.remove_from]
        old = doc_plan.retire
        if old and old != file_id:
            everywhere = set(doc.xai_collections) | required | set(local.collections if local else ())
            items += [(old, collection_id) for collection_id in sorted(everywhere)] + [(old, "")]
        return items

    def _break(self, doc: CrmDocument, cleanup: list[tuple[str, str]], result: DocResult) -> None:
        """After the CRM points at the new state: leave stale collections, retire the superseded file."""
        try:
            for file_id, collection_id in cleanup:
                self.locks.check()
                if collection_id:
                    self.xai.remove_document(collection_id, file_id)
                    result.actions.append(f"remove {file_id} from {collection_id}")
                else:
                    self.xai.delete_file(file_id)
                    result.actions.append(f"retire {file_id}")
                self.state.cleanup_done(file_id, collection_id)
        except RunFatal:
            raise
        except DocsyncError as exc:
            # The document is correctly synced; the journalled rest is finished at the start of the next run.
            log.warning("%s: cleanup incomplete (%s); the next run finishes it", doc.id, exc)

    def finish_cleanups(self, summary: RunSummary) -> None:
        """Finish cleanups an earlier run journalled but did not complete (a crash, an error). Each is done only
        if the CRM moved on: if the record still points at that file in that collection, the write-back never
        happened and the entry is dropped instead."""
        by_doc: dict[str, list[tuple[str, str]]] = {}
        for doc_id, file_id, collection_id in self.state.cleanups():
            by_doc.setdefault(doc_id, []).append((file_id, collection_id))
        for doc_id, items in by_doc.items():
            try:
                with self.locks.document(doc_id):
                    try:
                        doc: CrmDocument | None = self.espo.get_document(doc_id)
                    except NotFoundError:
                        doc = None
                    for file_id, collection_id in items:
                        still_used = doc is not None and doc.xai_file_id == file_id and (
                            not collection_id or collection_id in doc.xai_collections)
                        if not still_used:
                            self.locks.check()
                            if collection_id:
                                self.xai.remove_document(collection_id, file_id)
                            else:
                                self.xai.delete_file(file_id)
                                summary.deleted.append(file_id)
                        self.state.cleanup_done(file_id, collection_id)
            except LockHeld:
                continue
            except RunFatal:
                raise
            except DocsyncError as exc:
                summary.notes.append(f"cleanup for {doc_id} not finished ({exc}); retried next run")

    def _fail(self, doc: CrmDocument, result: DocResult, exc: DocumentError) -> None:
        result.outcome, result.detail, result.error_code = "failed", str(exc), exc.code
        try:
            after = self.espo.update(doc.id, {"dateiStatus": DateiStatus.FEHLER.value,
                                              "xaiSyncStatus": SyncStatus.FAILED.value,
                                              "xaiSyncError": _clip(str(exc))})
            previous = self.state.record(doc.id)
            self.state.save(LocalRecord(
                doc_id=doc.id, file_id=doc.file_id, sha256=previous.sha256 if previous else None,
                md5=previous.md5 if previous else None, xai_file_id=doc.xai_file_id,
                collections=doc.xai_collections, crm_modified_at=after.modified_at, failure_code=exc.code,
                failure_transient=exc.transient, preview_sha=previous.preview_sha if previous else None))
        except RunFatal as fatal:
            self._set_fatal(fatal)
        except DocsyncError as write_error:
            result.detail += f" (and the error could not be written to EspoCRM: {write_error})"

    def _restore_status(self, doc: CrmDocument, cause: DocsyncError) -> None:
        """After a run-fatal error, put ``xaiSyncStatus`` back so the record does not claim work in progress."""
        if isinstance(cause, AuthError) and cause.service == "espocrm":
            return
        with contextlib.suppress(DocsyncError):
            self.espo.update(doc.id, {"xaiSyncStatus": doc.xai_sync_status or ""})


def _with_superseded(run_plan: RunPlan, docs: list[CrmDocument], remote: list[RemoteMember]) -> RunPlan:
    """In a full run, also retire managed files the CRM no longer points at (leftovers of a crash or of a
    failed cleanup), except files of documents this run is about to work on (their turn decides)."""
    current = {doc.id: doc.xai_file_id for doc in docs}
    working = {item.doc.id for item in run_plan.work}
    extra = [Deletion(m, "superseded: its EspoCRM document points at another file")
             for m in remote
             if m.crm_document_id in current and m.crm_document_id not in working
             and current[m.crm_document_id] != m.file_id]
    if not extra:
        return run_plan
    return RunPlan(run_plan.work, run_plan.unchanged, run_plan.held_back, run_plan.deletions + tuple(extra))


def _as_document_error(exc: HttpError) -> DocumentError:
    if isinstance(exc, TransientHttpError | AmbiguousWriteError):
        return TransientDocumentError(str(exc), "transient")
    return PermanentDocumentError(str(exc), "rejected")


def _attr(values: dict[str, Any], espo: EspoClient) -> dict[str, Any]:
    """Logical names → update body (the preview image field is written through its ``…Id`` attribute)."""
    body = dict(values)
    if "preview" in body:
        body[espo.preview_attr] = body.pop("preview")
    return body


def _clip(text: str) -> str:
    return short(text, MAX_ERROR_TEXT)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
