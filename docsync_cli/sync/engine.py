"""Executes a run: gather → plan (``plan.py``) → finish journalled cleanups → reconcile each document
(``reconcile.py``, in worker threads) → delete (``--full``/prune only, within the caps) → summary.

A run-fatal error stops the run: documents not reached keep their status.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.reasons import record_hidden
from docsync_cli.crm.role import narrowed_reads
from docsync_cli.errors import (
    AmbiguousWriteError,
    AuthError,
    DocsyncError,
    LockHeld,
    NotFoundError,
    RejectedError,
    RunFatal,
    ServiceUnreachable,
    SetupError,
    TransientHttpError,
    UnsafePlan,
)
from docsync_cli.model import (
    CrmDocument,
    DeleteLimits,
    Deletion,
    DocResult,
    DocumentLocks,
    EngineSettings,
    Field,
    LocalRecord,
    Outcome,
    Previewer,
    RemoteMember,
    RunOptions,
    RunPlan,
    RunSummary,
    WorkItem,
)
from docsync_cli.state import StateStore
from docsync_cli.sync.deletions import confirm_unlisted
from docsync_cli.sync.gather import ChangeFeed, Changes
from docsync_cli.sync.plan import deletion_steps, plan_gone, plan_run, still_used
from docsync_cli.sync.plan_feeds import verified_by_listing
from docsync_cli.sync.step import DocumentReconciler
from docsync_cli.xai.client import XaiClient, is_service_id

log = logging.getLogger("docsync.engine")


@contextlib.contextmanager
def listing_outage() -> Iterator[None]:
    """5xx, HTML error pages, resets past the retries while listing (the full listing or the change feeds):
    without the listing there is no run, and an outage is no problem of the documents (exit 3)."""
    try:
        yield
    except (TransientHttpError, AmbiguousWriteError) as exc:
        raise ServiceUnreachable(f"the listing could not be read: {exc}") from exc


class Engine:
    def __init__(
        self,
        espo: EspoClient,
        xai: XaiClient,
        state: StateStore,
        locks: DocumentLocks,
        settings: EngineSettings,
        *,
        previews: Previewer | None = None,
        on_result: Callable[[DocResult], None] | None = None,
        on_plan: Callable[[RunPlan], None] | None = None,
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
        self.on_result = on_result or (lambda result: None)
        self.on_plan = on_plan or (lambda plan: None)
        self.stop = stop or threading.Event()
        self.wall = wall
        self.reconciler = DocumentReconciler(espo, xai, state, locks, settings, previews=previews, stop=self.stop,
                                             sleep=sleep, clock=clock)
        self.uploads = self.reconciler.uploads
        self.feed = ChangeFeed(espo, xai, state, settings, wall)
        self.changes: Changes | None = None  # what the change feeds found (None: they were not asked)
        self.confirmed_gone: set[str] = set()  # documents GET Document/{id} answered 404 for in this run

    # -- run level -----------------------------------------------------------------------------------

    def gather(self, options: RunOptions) -> tuple[list[CrmDocument], dict[str, str]]:
        """The documents to look at, and those asked for by id that the API user may not read (id -> reason)."""
        if options.ids is None:
            with listing_outage():
                return list(self.espo.iter_documents()), {}
        docs, hidden = [], {}
        for doc_id in sorted(options.ids):
            try:
                docs.append(self.espo.get_document(doc_id))
            except NotFoundError:
                log.warning("document %s does not exist in EspoCRM", doc_id)
            except (AuthError, RejectedError) as exc:
                if exc.status != 403 or not record_hidden(exc.detail):
                    raise
                hidden[doc_id] = exc.detail  # it exists; the role or its teams hide it (contract §11.3)
        return docs, hidden

    def managed_collections(self, docs: Iterable[CrmDocument], local: dict[str, LocalRecord]) -> list[str]:
        """The collections docsync manages: configured ones and those the CRM or this host's records name (values
        that are not xAI ids are never used; those documents fail with a reason of their own)."""
        found = set(self.settings.static_collections)
        for doc in docs:
            found.update(doc.xai_collections)
        for record in local.values():
            found.update(record.collections)
        return sorted(c for c in found if is_service_id(c))

    def _feeds(self, options: RunOptions) -> bool:
        return self.settings.change_feeds and options.ids is None and not options.prune_only

    def plan_incremental(self, options: RunOptions, summary: RunSummary) -> RunPlan:
        """A plain run: only what the change feeds report (``changes.py``); deletions found by the count check
        are retired within the caps."""
        with listing_outage():
            changes = self.changes = self.feed.gather()
        summary.notes += changes.notes
        docs = list(changes.docs.values())
        local = self.state.records_for([doc.id for doc in docs])
        run_plan = plan_run(docs, local, limit=options.limit, touched=changes.touched,
                            retry_failed=options.retry_failed)
        deletions: tuple[Deletion, ...] = ()
        gone = changes.gone
        self.confirmed_gone.update(r.doc_id for r in gone)
        if gone:
            foreign = [r for r in gone if not self.feed.owned(r)]
            for record in foreign:
                summary.notes.append(f"{record.doc_id} is gone from EspoCRM; its recorded xAI file "
                                     f"{record.xai_file_id} is not docsync's upload for it and is left alone")
            limits = DeleteLimits(self.settings.delete_limits.max_count, self.settings.delete_limits.max_percent,
                                  force=options.force_delete)
            try:
                deletions = plan_gone([r for r in gone if r not in foreign], self.state.count_between(), limits)
            except UnsafePlan as exc:
                summary.notes.append(str(exc))
                changes.gone = []  # kept: found again by the next run
        # Permanent failures no feed reported did not change: held back, counted as a --full run counts them.
        seen = set(changes.docs) | {record.doc_id for record in gone}
        unread = tuple(i for i in self.state.permanent_failures() if i not in seen)
        if changes.crm_total is None:  # not counted: in step are the documents read and found so
            unchanged = len(docs) - len(run_plan.work) - len(run_plan.held_back)
        else:
            unchanged = changes.crm_total - len(run_plan.work) - len(run_plan.held_back) - len(unread)
        unchanged = max(0, unchanged)
        return RunPlan(run_plan.work, unchanged, run_plan.held_back, deletions, unread)

    def plan(self, options: RunOptions, summary: RunSummary) -> tuple[RunPlan, list[CrmDocument]]:
        touched: dict[str, str] = {}
        hidden: dict[str, str] = {}
        if self._feeds(options) and not options.full:
            return self.plan_incremental(options, summary), []
        if self._feeds(options):
            with listing_outage():
                self.changes = self.feed.gather(full=True, keep_all=True)  # the listing pass of a --full run
            docs, touched = list(self.changes.docs.values()), self.changes.touched
        else:
            docs, hidden = self.gather(options)
            for doc_id, reason in sorted(hidden.items()):
                summary.results.append(DocResult(
                    doc_id, "", Outcome.FAILED, error_code="hidden",
                    detail=f"the EspoCRM API user may not read this document ({reason}): its role or teams hide "
                           "it; give the API user's role Document read 'all' or add the user to its team"))
        for missing in sorted((options.ids or frozenset()) - {doc.id for doc in docs} - set(hidden)):
            # Asked for by id but not there: a failure of the run (exit 1) that names it.
            summary.results.append(DocResult(missing, "", Outcome.FAILED, detail="no such document in EspoCRM",
                                             error_code="not_found"))
        local = self.state.records()
        remote: list[RemoteMember] | None = None
        if options.full and options.ids is None:
            try:
                remote = self.uploads.remote_members(self.managed_collections(docs, local), self.wall)
            except RunFatal:
                raise
            except DocsyncError as exc:
                summary.notes.append(f"xAI listing failed ({exc}); no deletions in this run")
        limits = DeleteLimits(self.settings.delete_limits.max_count, self.settings.delete_limits.max_percent,
                              force=options.force_delete)
        verified: frozenset[str] = frozenset()
        if self.changes is not None and remote is not None:
            verified = verified_by_listing(docs, local, self.changes.expected, remote,
                                           previews=self.reconciler.previews is not None)
        present: frozenset[str] = frozenset()
        if remote is not None and options.ids is None:
            verdicts = confirm_unlisted(self.espo, self.state, docs, local, remote)
            summary.notes += verdicts.notes
            present = frozenset([*verdicts.live, *verdicts.hidden, *verdicts.unknown])
            self.confirmed_gone.update(verdicts.gone)
        run_plan = plan_run(docs, local, ids=options.ids, full=options.full, remote=remote, limits=limits,
                            limit=options.limit, retry_failed=options.retry_failed, touched=touched,
                            verified=verified, present=present)
        if self.changes is not None and remote is not None:
            # forgotten after the deletions: only documents confirmed gone (404) in this run
            self.changes.gone = [r for i, r in local.items() if i in self.confirmed_gone]
        if options.prune_only:
            run_plan = RunPlan((), run_plan.unchanged + len(run_plan.work), run_plan.held_back, run_plan.deletions)
        return run_plan, docs

    def learn_fields(self) -> None:
        """Learn the CRM's Document fields (one Metadata request, cached) and run ``docsync check``'s required
        field checks before anything is written: a CRM that cannot take docsync's writes stops the run (exit 2)."""
        schema = self.espo.learn()
        previews = self.reconciler.previews is not None
        problems = [text for text, logical in zip(schema.problems, schema.problem_fields, strict=True)
                    if previews or logical != Field.PREVIEW]  # no previews in this run: no preview field needed
        if schema.known and problems:
            raise SetupError(
                "EspoCRM's Document fields cannot take docsync's writes: " + "; ".join(problems),
                "fix the fields named above (or point espocrm.fields.<name> at the right ones), then run "
                "`docsync check`; nothing was written", problems)
        narrowed = narrowed_reads(self.espo.api_user, self.feed.linked_entities())
        if narrowed:
            # EspoCRM hides the other records and their links (HTTP 200, contract §11.2): a document's collections
            # would look empty and its file would be taken out of them. `docsync check` names the same.
            raise SetupError(
                "the API user's role reads only some linked records (" + ", ".join(
                    f"{entity} read '{level}'" for entity, level in narrowed) + "): EspoCRM hides the others and "
                "their links, so documents would wrongly leave their collections; nothing was changed",
                "Administration > Roles: set " + ", ".join(f"{entity} read" for entity, _ in narrowed) +
                " to 'all' for the API user's role, then run `docsync check`")

    def run(self, options: RunOptions) -> RunSummary:
        summary = RunSummary()
        try:
            self.learn_fields()
            summary.plan, _ = self.plan(options, summary)
        except DocsyncError as exc:
            if isinstance(exc, RejectedError) and exc.service == "espocrm":
                # EspoCRM refused the listing itself for a data reason (contract §10.3): the setup's problem
                summary.fatal = SetupError(f"EspoCRM refused the document listing: {exc}",
                                           "run `docsync check`; it tests the fields and the page cap")
                return summary
            if isinstance(exc, RunFatal):
                summary.fatal = exc
                return summary
            raise
        if options.dry_run:
            return summary
        self.on_plan(summary.plan)
        try:
            self.finish_cleanups(summary)
        except RunFatal as exc:
            summary.fatal = exc
            return summary
        try:
            self._work(summary.plan.work, summary)
        finally:
            self.reconciler.close()
        summary.fatal = self.reconciler.fatal
        summary.stopped = self.stop.is_set() and len(summary.results) < len(summary.plan.work)
        if summary.fatal is None and not summary.stopped and summary.plan.deletions:
            self._delete(summary.plan.deletions, summary)
        self._settle_changes(options, summary)
        return summary

    def _settle_changes(self, options: RunOptions, summary: RunSummary) -> None:
        """Forget gone documents whose files are retired; store the watermark once the run completed."""
        changes = self.changes
        if changes is None:
            return
        pending = {d.member.file_id for d in summary.plan.deletions} - set(summary.deleted) if summary.plan else set()
        forget = [r.doc_id for r in changes.gone if not r.xai_file_id or r.xai_file_id not in pending]
        if forget and summary.fatal is None:
            self.state.forget(forget)
        complete = summary.fatal is None and not summary.stopped and (
            options.limit is None or summary.plan is None or len(summary.plan.work) < options.limit)
        if complete:
            self.feed.commit(changes)

    def _work(self, items: tuple[WorkItem, ...], summary: RunSummary) -> None:
        lock = threading.Lock()

        def one(item: WorkItem) -> None:
            if self.stop.is_set() or self.reconciler.fatal is not None:
                return
            result = self.reconciler.process(item)
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
        unconfirmed = {d.member.crm_document_id for d in deletions
                       if d.document_gone and d.member.crm_document_id not in self.confirmed_gone}
        for doc_id in sorted(unconfirmed):  # the one rule: a document's files go only after a 404 in this run
            summary.notes.append(f"{doc_id} was not confirmed deleted in EspoCRM; its files are kept")
        deletions = tuple(d for d in deletions if d.member.crm_document_id not in unconfirmed)
        for file_id, owner, steps in deletion_steps(deletions):
            try:
                # Under the document's lock: a concurrent run may be in the middle of replacing that file.
                with self.locks.document(owner):
                    self.locks.check()
                    self.state.cleanup_planned(owner, steps)  # a crash midway is finished next run
                    for step_file, collection_id in steps:
                        self.uploads.take_back(step_file, collection_id)
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
                    except (AuthError, RejectedError) as exc:
                        if exc.status != 403 or not record_hidden(exc.detail):
                            raise
                        summary.notes.append(f"cleanup for {doc_id} waits: the document is hidden from docsync")
                        continue
                    for file_id, collection_id in items:
                        if not still_used(doc, file_id, collection_id):
                            self.locks.check()
                            self.uploads.take_back(file_id, collection_id)
                            if not collection_id:
                                summary.deleted.append(file_id)
                        self.state.cleanup_done(file_id, collection_id)
            except LockHeld:
                continue
            except RunFatal:
                raise
            except DocsyncError as exc:
                summary.notes.append(f"cleanup for {doc_id} not finished ({exc}); retried next run")
