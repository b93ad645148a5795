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
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.download import download, private_temp_file
from docsync_cli.errors import (
    AuthError,
    ConflictError,
    DocsyncError,
    DocumentError,
    HttpError,
    LockHeld,
    NotFoundError,
    PermanentDocumentError,
    RunFatal,
    SetupError,
    TransientDocumentError,
)
from docsync_cli.model import (
    FAILED,
    PROCESSED,
    Content,
    CrmDocument,
    DateiStatus,
    DocPlan,
    DocResult,
    DocumentLocks,
    EngineSettings,
    Field,
    Indexing,
    Outcome,
    Previewer,
    SyncStatus,
    WorkItem,
)
from docsync_cli.secrets import printable
from docsync_cli.state import StateStore
from docsync_cli.sync.breaker import Breaker
from docsync_cli.sync.failures import as_document_error, check_record, clip, disk_problem
from docsync_cli.sync.plan import (
    known_content,
    plan_document,
    remembered_failure,
    remembered_verified,
    why_work,
)
from docsync_cli.sync.preview_step import Rendering
from docsync_cli.sync.replan import Finish, Learned, replan
from docsync_cli.sync.uploads import Uploads
from docsync_cli.xai.client import XaiClient, is_service_id

log = logging.getLogger("docsync.engine")


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
        self.breaker = Breaker()
        self.uploads = Uploads(xai, state, locks)
        self.rendering = Rendering(previews, espo, locks, settings.concurrency)
        self._sources: dict[str, dict[str, str]] = {}  # doc id -> collection id -> the linked record naming it

    @property
    def fatal(self) -> DocsyncError | None:
        """The run-fatal error that stops the run (None while it goes on)."""
        return self.breaker.fatal

    def close(self) -> None:
        self.rendering.close()

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
            self.breaker.set_fatal(exc)
            result.outcome, result.detail, result.error_code = Outcome.DEFERRED, f"run stopped: {exc}", "run_fatal"
            self._restore_status(doc, exc)
        except OSError as exc:
            fatal = disk_problem(exc)
            if fatal is not None:
                self.breaker.set_fatal(fatal)
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
            self._fail(doc, result, as_document_error(exc))
        except Exception as exc:
            log.info("%s: unexpected error", doc.id, exc_info=True)  # the traceback, shown at -v
            self._fail(doc, result, PermanentDocumentError(
                f"unexpected error ({type(exc).__name__}: {printable(str(exc), 200)}); see the log with -v",
                "internal_error"))
        self._sources.pop(doc.id, None)
        self.breaker.watch(result)
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
        check_record(doc)
        assert doc.file_id is not None
        path, handle = private_temp_file(self.settings.temp_dir, suffix=Path(doc.file_name or "").suffix[:16])
        rendering: Future[bytes] | None = None
        try:
            # A --full check of a document this host synced before needs no download: the hashes are known.
            known = known_content(doc, local) if verify else None
            content = known or download(self.espo, doc.file_id, handle, self.settings.max_file_bytes)
            handle.close()
            required = self.required_collections(doc)
            current = self.uploads.membership(doc, required, local)
            if current is None and self.uploads.waits_for_adopt(doc, content):
                assert doc.xai_file_id is not None
                self.state.wait_for_adopt(doc.id, doc.xai_file_id)
                result.outcome = Outcome.SKIPPED
                result.detail = f"its xAI file {doc.xai_file_id} is not docsync's (yet): run `docsync adopt`"
                return
            if current is None and doc.xai_file_id:
                self.state.adopt_settled(doc.id)  # gets its own upload now: it no longer waits for adopt
            earlier = tuple(self.state.owned_files(doc.id))
            previews = self.previews is not None
            doc_plan = plan_document(doc, content, required, current, earlier, local=local, previews=previews)
            if doc_plan.in_step:
                self.state.save(remembered_verified(doc, content, required, local))
                result.outcome, result.detail = Outcome.UNCHANGED, "verified: EspoCRM and xAI agree"
                return
            if known is not None:  # something needs doing after all: now the file is needed
                with path.open("w+b") as again:
                    content = download(self.espo, doc.file_id, again, self.settings.max_file_bytes)
                doc_plan = plan_document(doc, content, required, current, earlier, local=local, previews=previews)
            rendering = self.rendering.start(doc, content, path, local, result)
            # "syncing" says a run works on it; it is written only where it can be taken back (the field accepts
            # the present value again: EspoCRM refuses "" and null where "" is not an option, contract §10.1).
            marked = doc
            if self.espo.schema.accepts(Field.XAI_SYNC_STATUS, doc.xai_sync_status):
                marked = self.espo.update(doc.id, {Field.XAI_SYNC_STATUS: SyncStatus.SYNCING.value},
                                          version=doc.version)
            file_id, uploaded = self._apply(doc, content, path, doc_plan, result)
            indexing, message = self._wait_processed(file_id, required)
            preview_id = self.rendering.finish(doc, rendering, result)
            # what the work taught goes back to the planner once; the rest is carried out as decided
            learned = Learned(file_id, uploaded, indexing, clip(message), preview_id, result.preview,
                              result.preview_failure)
            finish = replan(doc, content, required, doc_plan, learned, local)
            self._write_back(marked, finish, result, message)
            if result.outcome is Outcome.SYNCED:
                self._break(doc, list(finish.cleanup), result)
        finally:
            handle.close()
            if rendering is not None and not rendering.cancel():
                rendering.exception()  # never delete the file under a running render: wait for it to end
            path.unlink(missing_ok=True)

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

    def _apply(self, doc: CrmDocument, content: Content, path: Path, doc_plan: DocPlan,
               result: DocResult) -> tuple[str, bool]:
        # "" when the document is in no collection: nothing to index, so no file at xAI
        file_id = (self.uploads.upload(doc, content, path, result.actions) if doc_plan.upload
                   else doc_plan.keep_file_id or "")
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

    def _wait_processed(self, file_id: str, required: frozenset[str]) -> tuple[Indexing, str]:
        """(where indexing stands, xAI's error message), polling within the configured bound."""
        if not required:
            return Indexing.PROCESSED, ""
        deadline = self.clock() + self.settings.processing_wait_seconds
        while True:
            waiting = False
            for collection_id in sorted(required):
                answer = self.xai.statuses(collection_id, [file_id]).get(file_id)
                if answer is None:  # not a member (any more)
                    raise TransientDocumentError(f"the file vanished from {collection_id} after being added",
                                                 "membership_lost")
                status, message = answer
                if status == FAILED:
                    why = message or "no reason"
                    return Indexing.FAILED, f"xAI could not process the file in {collection_id}: {why}"
                if status != PROCESSED:
                    waiting = True  # PROCESSING, UNKNOWN and any new status all mean "not yet"
            if not waiting:
                return Indexing.PROCESSED, ""
            if self.clock() >= deadline or self.stop.is_set():
                return Indexing.PENDING, ""
            self.sleep(self.settings.poll_interval_seconds)

    def _write_back(self, marked: CrmDocument, finish: Finish, result: DocResult, message: str) -> None:
        doc, content, required, learned = finish.doc, finish.content, finish.required, finish.learned
        file_id, uploaded = learned.file_id, learned.uploaded
        values = dict(finish.values)
        if learned.preview_id:
            values[self.espo.preview_attr] = learned.preview_id  # the image field is written through its …Id
        now = self.espo.get_document(doc.id)
        edited = (now.fingerprint != marked.fingerprint or now.modified_at != marked.modified_at
                  or now.file_id != doc.file_id)
        if not edited:
            try:
                self.locks.check()
                if finish.settled and finish.cleanup:
                    self.state.cleanup_planned(doc.id, list(finish.cleanup))  # before the write that makes them due
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
                        self.uploads.roll_back(file_id, required, doc.id, content.sha256)
                raise
        if edited:
            result.outcome = Outcome.DEFERRED
            result.detail = "edited in EspoCRM while docsync worked on it; picked up again next run"
            if uploaded and now.file_id != doc.file_id:
                self.uploads.roll_back(file_id, required, doc.id, content.sha256)
            # Only docsync's own progress field, unconditionally: the person's edit stays as it is, and the
            # record says another pass is needed (an upload of unchanged content is adopted, not repeated).
            with contextlib.suppress(ConflictError, NotFoundError):
                self.espo.update(doc.id, {Field.XAI_SYNC_STATUS: SyncStatus.PENDING.value})
            return
        self.state.save(finish.remember(after.modified_at))
        if finish.settled:
            self.state.upload_settled(doc.id)
        result.outcome = finish.outcome
        if finish.outcome is Outcome.FAILED:
            result.error_code, result.detail = "processing_failed", message
        if finish.roll_back:
            # xAI could not parse this upload: it would sit in the collections unsearchable. The old file (if any)
            # stays in place; a changed document gets a fresh upload.
            with contextlib.suppress(HttpError):
                self.uploads.roll_back(file_id, required, doc.id, content.sha256)

    def _break(self, doc: CrmDocument, cleanup: list[tuple[str, str]], result: DocResult) -> None:
        """After the CRM points at the new state: leave stale collections, retire the superseded file."""
        try:
            for file_id, collection_id in cleanup:
                self.locks.check()
                self.uploads.take_back(file_id, collection_id)
                result.actions.append(f"remove {file_id} from {collection_id}" if collection_id
                                      else f"retire {file_id}")
                self.state.cleanup_done(file_id, collection_id)
        except RunFatal:
            raise
        except DocsyncError as exc:
            # The document is correctly synced; the journalled rest is finished at the start of the next run.
            log.warning("%s: cleanup incomplete (%s); the next run finishes it", doc.id, exc)

    def _fail(self, doc: CrmDocument, result: DocResult, exc: DocumentError) -> None:
        result.outcome, result.detail, result.error_code = Outcome.FAILED, str(exc), exc.code
        try:
            after = self.espo.update(doc.id, {Field.DATEI_STATUS: DateiStatus.FEHLER.value,
                                              Field.XAI_SYNC_STATUS: SyncStatus.FAILED.value,
                                              Field.XAI_SYNC_ERROR: clip(str(exc))})
            self.state.save(remembered_failure(doc, exc.code, exc.transient, after.modified_at,
                                               self.state.record(doc.id)))
        except RunFatal as fatal:
            self.breaker.set_fatal(fatal)
        except DocsyncError as write_error:
            result.detail += f" (and the error could not be written to EspoCRM: {write_error})"

    def _restore_status(self, doc: CrmDocument, cause: DocsyncError) -> None:
        """After a run-fatal error, put ``xaiSyncStatus`` back so the record does not claim work in progress."""
        if isinstance(cause, AuthError) and cause.service == "espocrm":
            return
        with contextlib.suppress(DocsyncError):
            self.espo.update(doc.id, {Field.XAI_SYNC_STATUS: doc.xai_sync_status or ""})
