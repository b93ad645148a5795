"""Reconciles one document, under its lock — make-before-break:

1. re-read the record (another run or a person may have changed it since the listing);
2. download the file to a private temp file, hashing MD5 + SHA-256 in the same pass (over-size files stop early);
3. find its required collections (static ones ∪ the configured field of every linked record);
4. look at where its current xAI file sits; :func:`plan.plan_document` decides upload / keep / join / leave;
   a document already in step is verified without any write;
5. mark the record ``xaiSyncStatus = syncing``; start its preview (rendered while the network work goes on);
6. upload (journalled; an upload whose answer was lost is looked up by its marked name, never blindly repeated),
   add to each required collection, wait (bounded) until xAI has processed it everywhere;
7. re-read the record: if a person edited it meanwhile, write nothing of theirs and leave it for the next run;
   otherwise journal the cleanup and write everything back in one conditional update;
8. only then take the file out of collections it no longer belongs in and retire the superseded file.

A document-level failure marks that document "Fehler" with a readable reason. A run-fatal error (401/403,
unreachable service, lock lost, disk full, five transient failures in a row) is recorded in :attr:`fatal`, and the
engine starts no further document.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mimetypes
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

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
    SetupError,
    TransientDocumentError,
    TransientHttpError,
)
from .espocrm import EspoClient
from .hashing import FileTooLarge, HashingWriter, private_temp_file
from .model import (
    FAILED,
    PROCESSED,
    Content,
    CrmDocument,
    DateiStatus,
    DocPlan,
    DocResult,
    DocumentLocks,
    EngineSettings,
    Indexing,
    LocalRecord,
    Membership,
    Outcome,
    Preview,
    Previewer,
    PreviewFailure,
    SyncStatus,
    WorkItem,
)
from .plan import (
    candidate_collections,
    cleanup_steps,
    known_content,
    plan_document,
    preview_failed,
    why_work,
    write_back_values,
)
from .secrets import printable
from .state import StateStore
from .transport import short
from .xai import MANAGED_BY, XaiClient, is_service_id, upload_name

log = logging.getLogger("docsync.engine")
MAX_ERROR_TEXT = 1000
OUTAGE_STREAK = 5


class DocumentReconciler:
    """Brings one document at a time in step (thread-safe: the engine calls :meth:`process` from workers)."""

    def __init__(
        self,
        espo: EspoClient,
        xai: XaiClient,
        state: StateStore,
        locks: DocumentLocks,
        settings: EngineSettings,
        *,
        previews: Previewer | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.espo = espo
        self.xai = xai
        self.state = state
        self.locks = locks
        self.settings = settings
        self.previews = previews
        self.installation = state.installation_id
        self.stop = stop or threading.Event()
        self.sleep = sleep
        self.clock = clock
        self.fatal: DocsyncError | None = None
        self._fatal_lock = threading.Lock()
        self._transient_streak = 0  # consecutive documents that failed with a transient error
        self._render_pool: ThreadPoolExecutor | None = None
        self._render_pool_lock = threading.Lock()
        self._sources: dict[str, dict[str, str]] = {}  # doc id -> collection id -> the linked record naming it

    def _watch_outage(self, result: DocResult) -> None:
        """A circuit breaker: after ``OUTAGE_STREAK`` documents in a row failed transiently (the services keep
        answering 5xx/timeouts even after retries), stop the run instead of marking every document."""
        with self._fatal_lock:
            if result.outcome is Outcome.FAILED and result.error_code in ("transient", "membership_lost"):
                self._transient_streak += 1
            elif result.outcome in (Outcome.SYNCED, Outcome.UNCHANGED, Outcome.PENDING):
                self._transient_streak = 0
            tripped = self._transient_streak >= OUTAGE_STREAK
        if tripped:
            self._set_fatal(ServiceUnreachable(
                f"{OUTAGE_STREAK} documents in a row failed with transient errors (last: {result.detail}); "
                "stopping this run, the next run retries"))

    def _set_fatal(self, exc: DocsyncError) -> None:
        with self._fatal_lock:
            if self.fatal is None:
                self.fatal = exc

    # -- document level ------------------------------------------------------------------------------

    def process(self, item: WorkItem) -> DocResult:
        doc = item.doc
        result = DocResult(doc.id, doc.name, Outcome.FAILED, detail=item.reason)
        try:
            with self.locks.document(doc.id):
                self._process(doc, item.explicit, result, item.verify)
        except LockHeld as exc:
            result.outcome, result.detail, result.busy_holder = Outcome.SKIPPED, f"busy: {exc.holder}", exc.holder
        except RunFatal as exc:
            self._set_fatal(exc)
            result.outcome, result.detail, result.error_code = Outcome.DEFERRED, f"run stopped: {exc}", "run_fatal"
            self._restore_status(doc, exc)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS):
                fatal = LocalEnvironmentError(f"local disk problem: {exc.strerror}")
                self._set_fatal(fatal)
                result.outcome, result.detail, result.error_code = Outcome.DEFERRED, str(fatal), "run_fatal"
                self._restore_status(doc, fatal)
            else:
                self._fail(doc, result, TransientDocumentError(f"local error: {exc}", "local_error"))
        except DocumentError as exc:
            self._fail(doc, result, exc)
        except ConflictError:
            result.outcome = Outcome.DEFERRED
            result.detail = "edited in EspoCRM while docsync worked on it; picked up again next run"
        except HttpError as exc:
            self._fail(doc, result, _as_document_error(exc))
        except Exception as exc:
            log.info("%s: unexpected error", doc.id, exc_info=True)  # the traceback, shown at -v
            self._fail(doc, result, PermanentDocumentError(
                f"unexpected error ({type(exc).__name__}: {printable(str(exc), 200)}); see the log with -v",
                "internal_error"))
        self._sources.pop(doc.id, None)
        self._watch_outage(result)
        log.info("%s %s: %s%s", doc.id, result.outcome, result.detail,
                 f" [{', '.join(result.actions)}]" if result.actions else "")
        return result

    def _process(self, listed: CrmDocument, explicit: bool, result: DocResult, verify: bool) -> None:
        self.locks.check()
        # Re-read under the document lock: another run (a second host, an admin's --id) or a person may have
        # changed the record since the listing.
        try:
            doc = self.espo.get_document(listed.id)
        except NotFoundError:
            result.outcome, result.detail = Outcome.SKIPPED, "deleted in EspoCRM since the listing"
            return
        local = self.state.record(doc.id)
        if not explicit and why_work(doc, local, full=verify, explicit=False) is None:
            result.outcome, result.detail = Outcome.UNCHANGED, "already in step (done by another run)"
            return
        if doc.problems:
            raise PermanentDocumentError("unexpected field values: " + "; ".join(doc.problems), "bad_fields")
        if not doc.file_id:
            raise PermanentDocumentError("the document has no file attached", "no_file")
        _check_ids(doc)
        path, handle = private_temp_file(self.settings.temp_dir, suffix=Path(doc.file_name or "").suffix[:16])
        rendering: Future[bytes] | None = None
        try:
            # A --full check of a document this host synced before needs no download: the hashes are known.
            known = known_content(doc, local) if verify else None
            content = known or self._download(doc, handle)
            handle.close()
            required = self.required_collections(doc)
            current = self._membership(doc, required, local)
            earlier = tuple(self.state.owned_files(doc.id))
            previews = self.previews is not None
            doc_plan = plan_document(doc, content, required, current, earlier, local=local, previews=previews)
            if doc_plan.in_step:
                self._remember(doc, content, required, doc.modified_at, local)
                result.outcome, result.detail = Outcome.UNCHANGED, "verified: EspoCRM and xAI agree"
                return
            if known is not None:  # something needs doing after all: now the file is needed
                with path.open("w+b") as again:
                    content = self._download(doc, again)
                doc_plan = plan_document(doc, content, required, current, earlier, local=local, previews=previews)
            rendering = self._start_preview(doc, content, path, local, result)
            # "syncing" says a run works on it; it is written only where it can be taken back (the field accepts
            # the present value again: EspoCRM refuses "" and null where "" is not an option, contract §10.1).
            marked = doc
            if self.espo.schema.accepts("xaiSyncStatus", doc.xai_sync_status):
                marked = self.espo.update(doc.id, {"xaiSyncStatus": SyncStatus.SYNCING.value}, version=doc.version)
            file_id, uploaded = self._apply(doc, content, path, doc_plan, result)
            processing = self._wait_processed(file_id, required)
            preview_id = self._finish_preview(doc, rendering, result)
            cleanup = cleanup_steps(doc_plan, file_id)
            self._write_back(doc, marked, content, file_id, uploaded, required, processing, preview_id, result,
                             cleanup, local)
            if result.outcome is Outcome.SYNCED:
                self._break(doc, cleanup, result)
        finally:
            handle.close()
            if rendering is not None and not rendering.cancel():
                rendering.exception()  # never delete the file under a running render: wait for it to end
            path.unlink(missing_ok=True)

    def _remember(self, doc: CrmDocument, content: Content, required: frozenset[str], modified_at: str,
                  local: LocalRecord | None) -> None:
        self.state.save(LocalRecord(
            doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
            xai_file_id=doc.xai_file_id or None, collections=tuple(sorted(required)), crm_modified_at=modified_at,
            preview_sha=content.sha256 if doc.preview_id else None,
            preview_failed=local.preview_failed if local is not None else None))

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
                f"the file is larger than xAI's upload limit of {exc.limit:,} bytes; not uploaded",
                "too_large") from exc
        content = writer.content()
        if content.size == 0:
            raise PermanentDocumentError("the file is empty (0 bytes)", "empty_file")
        return content

    def required_collections(self, doc: CrmDocument) -> frozenset[str]:
        required = set(self.settings.static_collections)
        sources: dict[str, str] = {}
        for rule in self.settings.links:
            try:
                linked = self.espo.related(doc.id, rule.link, rule.field)
            except NotFoundError as exc:
                # collections.links names a link this CRM lacks: the setup's fault, healed once it is fixed
                raise TransientDocumentError(f"cannot follow link '{rule.link}': {exc.detail or 'not found'}",
                                             "bad_link") from exc
            for value, source in linked:
                if not is_service_id(value):
                    # Transient: the fix is made on the linked record, so the next plain run tries again.
                    raise TransientDocumentError(
                        f"{source} has {rule.field} = {printable(value, 80)!r}, which is not an xAI collection id; "
                        "fix it in EspoCRM", "bad_collection_id")
                sources.setdefault(value, source)
                required.add(value)
        self._sources[doc.id] = sources
        return frozenset(required)

    def _membership(self, doc: CrmDocument, required: frozenset[str], local: LocalRecord | None
                    ) -> Membership | None:
        """Where the document's current xAI file sits, when that file is this installation's upload for this very
        document. None when there is no such file, or when it is not ours (a duplicated record's, another
        installation's, a hand-made file): then the document gets its own upload and that file is left alone."""
        file_id = doc.xai_file_id
        if not file_id or not self.xai.file_exists(file_id):
            return None
        candidates = candidate_collections(doc, required, local)
        statuses: dict[str, str] = {}
        fields: dict[str, Mapping[str, str]] = {}
        for collection_id in sorted(candidates):
            try:
                member = self.xai.member(collection_id, file_id)
            except NotFoundError:
                member = None
            if member is not None:
                statuses[collection_id] = member.status
                fields[collection_id] = member.fields
        if not self._owns(file_id, doc, fields, local):
            log.info("%s: xaiFileId %s is not this installation's upload for this document; it gets its own",
                     doc.id, file_id)
            return None
        def added_by_docsync(values: Mapping[str, str]) -> bool:
            return values.get("crm_document_id") == doc.id and (
                values.get("installation_id") == self.installation
                or (not values.get("installation_id") and values.get("managed_by") == MANAGED_BY))

        # A membership docsync did not make (a person put the file into their own collection) is not docsync's
        # to undo: only required collections and docsync's own memberships count.
        statuses = {c: s for c, s in statuses.items() if c in required or added_by_docsync(fields[c])}
        unmarked = frozenset(c for c in statuses if fields[c].get("installation_id") != self.installation
                             or fields[c].get("crm_document_id") != doc.id)
        return Membership(file_id, statuses, unmarked)

    def _owns(self, file_id: str, doc: CrmDocument, fields: dict[str, Mapping[str, str]],
              local: LocalRecord | None) -> bool:
        """The ownership rule: this installation's record (local state, or the collection document's fields with
        this installation's id) says ``file_id`` is its upload for ``doc``. An upload of an older docsync (fields
        without an installation id) is adopted when this host's record of the document names that file and the
        content hash agrees."""
        owner = self.state.owner(file_id)
        if owner is not None:
            return owner == doc.id
        for values in fields.values():
            if values.get("crm_document_id") != doc.id:
                continue
            if values.get("installation_id") == self.installation:
                self.state.own(file_id, doc.id, values.get("content_sha256") or None)
                return True
            legacy = (not values.get("installation_id") and values.get("managed_by") == MANAGED_BY
                      and local is not None and local.xai_file_id == file_id and local.sha256 is not None
                      and values.get("content_sha256") == local.sha256 == doc.xai_synced_hash)
            if legacy:
                self.state.own(file_id, doc.id, local.sha256 if local else None)
                return True
        return False

    def _apply(self, doc: CrmDocument, content: Content, path: Path, doc_plan: DocPlan,
               result: DocResult) -> tuple[str, bool]:
        # "" when the document is in no collection: nothing to index, so no file at xAI
        file_id = self._upload(doc, content, path, result) if doc_plan.upload else (doc_plan.keep_file_id or "")
        for collection_id in doc_plan.add_to:
            self.locks.check()
            try:
                self.xai.ensure_fields(collection_id)
            except NotFoundError as exc:
                source = self._sources.get(doc.id, {}).get(collection_id, "the configuration (collections.static)")
                # Transient: it heals on a plain run once the account (or xAI) is fixed.
                raise TransientDocumentError(
                    f"collection {collection_id} (from {source}) does not exist in xAI; fix the collection id "
                    "there or create the collection", "collection_missing") from exc
            self.xai.add_document(collection_id, file_id, doc.id, content.sha256, self.installation)
            result.actions.append(f"add {collection_id}")
        for collection_id in doc_plan.reindex:
            self.locks.check()
            self.xai.reindex(collection_id, file_id)
            result.actions.append(f"reindex {collection_id}")
        return file_id, doc_plan.upload

    def _upload(self, doc: CrmDocument, content: Content, path: Path, result: DocResult) -> str:
        name = upload_name(doc.id, content.sha256, doc.file_name or doc.name or "document", self.installation)
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
        file_id = answer.id
        if answer.size not in (None, content.size):
            self.xai.delete_file(file_id)
            raise TransientDocumentError(f"xAI stored {answer.size} bytes of {content.size}; removed it",
                                         "upload_truncated")
        self.state.upload_done(doc.id, content.sha256, file_id)
        result.actions.append(f"upload {file_id}")
        return file_id

    def _adopt(self, doc: CrmDocument, content: Content, known_id: str | None) -> str | None:
        """Find an earlier upload of exactly this content; keep the oldest, delete duplicates."""
        if known_id and self.xai.file_exists(known_id):
            return known_id
        # Only names carrying this installation's tag, and only because this host's journal says it started the
        # upload: another installation's upload of the same document is never adopted.
        found = [f for f in self.xai.find_uploads(doc.id, content.sha256, self.installation)
                 if f.size in (None, content.size)]
        if not found:
            return None
        found.sort(key=lambda f: (f.created_at or 0, f.id))
        keep = found[0].id
        for duplicate in found[1:]:
            self.xai.delete_file(duplicate.id)
            self.state.disown(duplicate.id)
        self.state.upload_done(doc.id, content.sha256, keep)
        return keep

    def _wait_processed(self, file_id: str, required: frozenset[str]) -> tuple[Indexing, str]:
        """(where indexing stands, xAI's error message), polling within the configured bound."""
        if not required:
            return Indexing.PROCESSED, ""
        deadline = self.clock() + self.settings.processing_wait_seconds
        while True:
            waiting = False
            for collection_id in sorted(required):
                status, message = self.xai.statuses(collection_id, [file_id]).get(
                    file_id, ("DOCUMENT_STATUS_MISSING", ""))
                if status == FAILED:
                    why = message or "no reason"
                    return Indexing.FAILED, f"xAI could not process the file in {collection_id}: {why}"
                if status == "DOCUMENT_STATUS_MISSING":
                    raise TransientDocumentError(f"the file vanished from {collection_id} after being added",
                                                 "membership_lost")
                if status != PROCESSED:
                    waiting = True  # PROCESSING, UNKNOWN and any new status all mean "not yet"
            if not waiting:
                return Indexing.PROCESSED, ""
            if self.clock() >= deadline or self.stop.is_set():
                return Indexing.PENDING, ""
            self.sleep(self.settings.poll_interval_seconds)

    def _start_preview(self, doc: CrmDocument, content: Content, path: Path, local: LocalRecord | None,
                       result: DocResult) -> Future[bytes] | None:
        """Start rendering right after the download, so rendering (CPU) overlaps upload and indexing
        (network). None when no preview is needed."""
        if self.previews is None:
            result.preview = Preview.OFF
            return None
        if doc.preview_id and local is not None and local.preview_sha == content.sha256:
            result.preview = Preview.UNCHANGED
            return None
        if local is not None and local.preview_failed == content.sha256:
            result.preview = Preview.KNOWN_FAILURE  # retried when the file changes, or with `docsync preview`
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
            result.preview, result.preview_failure = f"{exc.code}: {exc}", PreviewFailure.RENDER
            log.warning("%s preview failed: %s", doc.id, result.preview)
            return None
        except (RejectedError, TransientHttpError, AmbiguousWriteError) as exc:
            result.preview, result.preview_failure = f"upload_failed: {exc}", PreviewFailure.UPLOAD
            log.warning("%s preview upload failed: %s", doc.id, exc)
            return None
        result.preview = Preview.WRITTEN
        return preview_id

    def close(self) -> None:
        with self._render_pool_lock:
            if self._render_pool is not None:
                self._render_pool.shutdown(wait=True, cancel_futures=True)
                self._render_pool = None

    def _write_back(self, doc: CrmDocument, marked: CrmDocument, content: Content, file_id: str, uploaded: bool,
                    required: frozenset[str], processing: tuple[Indexing, str], preview_id: str | None,
                    result: DocResult, cleanup: list[tuple[str, str]], previous: LocalRecord | None) -> None:
        state, message = processing
        values = write_back_values(state, _clip(message), content, file_id, required)
        if preview_id:
            values[self.espo.preview_attr] = preview_id  # the image field is written through its …Id attribute
        now = self.espo.get_document(doc.id)
        edited = (now.fingerprint != marked.fingerprint or now.modified_at != marked.modified_at
                  or now.file_id != doc.file_id)
        if not edited:
            try:
                self.locks.check()
                if state is Indexing.PROCESSED and cleanup:
                    self.state.cleanup_planned(doc.id, cleanup)  # before the write that makes them due
                after = self.espo.update(doc.id, values, version=marked.version, file_id=doc.file_id)
            except ConflictError:
                edited = True
                with contextlib.suppress(DocsyncError):
                    now = self.espo.get_document(doc.id)  # the file may have been replaced just now
            except SetupError:
                # EspoCRM's validation refused docsync's own write: the record keeps its status, and the upload
                # it would have pointed at is taken back out (nothing docsync uploaded is left unreferenced).
                if uploaded:
                    with contextlib.suppress(DocsyncError):
                        self._roll_back(file_id, required, doc, content)
                raise
        if edited:
            result.outcome = Outcome.DEFERRED
            result.detail = "edited in EspoCRM while docsync worked on it; picked up again next run"
            if uploaded and now.file_id != doc.file_id:
                self._roll_back(file_id, required, doc, content)
            # Only docsync's own progress field, unconditionally: the person's edit stays as it is, and the
            # record says another pass is needed (an upload of unchanged content is adopted, not repeated).
            with contextlib.suppress(ConflictError, NotFoundError):
                self.espo.update(doc.id, {"xaiSyncStatus": SyncStatus.PENDING.value})
            return
        preview_sha = content.sha256 if (preview_id or result.preview is Preview.UNCHANGED) else (
            previous.preview_sha if previous else None)
        failed_preview = preview_failed(result.preview, result.preview_failure, content, previous)
        if state is Indexing.PROCESSED:
            self.state.save(LocalRecord(
                doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
                xai_file_id=file_id or None, collections=tuple(sorted(required)), crm_modified_at=after.modified_at,
                preview_sha=preview_sha, preview_failed=failed_preview))
            self.state.upload_settled(doc.id)
            result.outcome = Outcome.SYNCED
            return
        self.state.save(LocalRecord(
            doc_id=doc.id,
            file_id=doc.file_id if state is Indexing.FAILED else (previous.file_id if previous else None),
            sha256=previous.sha256 if previous else None, md5=previous.md5 if previous else None,
            xai_file_id=doc.xai_file_id, collections=doc.xai_collections, crm_modified_at=after.modified_at,
            failure_code="processing_failed" if state is Indexing.FAILED else None, failure_transient=False,
            preview_sha=preview_sha, pending=state is Indexing.PENDING, preview_failed=failed_preview))
        result.outcome = Outcome.FAILED if state is Indexing.FAILED else Outcome.PENDING
        if state is Indexing.FAILED:
            result.error_code, result.detail = "processing_failed", message
            if uploaded:
                # xAI could not parse this upload: it would sit in the collections unsearchable. The old file
                # (if any) stays in place; a changed document gets a fresh upload.
                with contextlib.suppress(HttpError):
                    self._roll_back(file_id, required, doc, content)

    def _roll_back(self, file_id: str, required: frozenset[str], doc: CrmDocument, content: Content) -> None:
        for collection_id in sorted(required):
            self.xai.remove_document(collection_id, file_id)
        self.xai.delete_file(file_id)
        self.state.disown(file_id)
        self.state.upload_settled(doc.id, content.sha256)

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
                    self.state.disown(file_id)
                    result.actions.append(f"retire {file_id}")
                self.state.cleanup_done(file_id, collection_id)
        except RunFatal:
            raise
        except DocsyncError as exc:
            # The document is correctly synced; the journalled rest is finished at the start of the next run.
            log.warning("%s: cleanup incomplete (%s); the next run finishes it", doc.id, exc)

    def _fail(self, doc: CrmDocument, result: DocResult, exc: DocumentError) -> None:
        result.outcome, result.detail, result.error_code = Outcome.FAILED, str(exc), exc.code
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



def _check_ids(doc: CrmDocument) -> None:
    """CRM values are untrusted: ids docsync would put into xAI URL paths must look like xAI ids."""
    if doc.xai_file_id and not is_service_id(doc.xai_file_id):
        raise PermanentDocumentError(f"xaiFileId {printable(doc.xai_file_id, 80)!r} is not an xAI file id; "
                                     "clear the field in EspoCRM", "bad_file_id")
    bad = [c for c in doc.xai_collections if not is_service_id(c)]
    if bad:
        raise PermanentDocumentError(f"xaiCollections holds {printable(bad[0], 80)!r}, which is not an xAI "
                                     "collection id; clear the field in EspoCRM", "bad_collection_id")


def _as_document_error(exc: HttpError) -> DocumentError:
    if isinstance(exc, TransientHttpError | AmbiguousWriteError):
        return TransientDocumentError(str(exc), "transient")
    if exc.service == "espocrm":
        # EspoCRM refusing docsync's own request (a 403 with a data reason, contract §10.3) is a problem of the
        # setup or of docsync, not of the document: never permanent, the next run tries again.
        return TransientDocumentError(str(exc), "crm_rejected")
    if exc.service == "xai-management":
        # Collection calls (add, remove, field definitions) carry ids and docsync's fields, not the document's
        # content: a refusal there is the setup's or docsync's, healed by a later run.
        return TransientDocumentError(str(exc), "xai_rejected")
    return PermanentDocumentError(str(exc), "rejected")  # the Files API refused the content itself


def _clip(text: str) -> str:
    return short(text, MAX_ERROR_TEXT)
