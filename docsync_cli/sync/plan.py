"""The pure planner: what needs doing, decided from snapshots alone (no I/O, no clock, no httpx).

Two decisions live here:

* :func:`plan_run` — from the CRM listing, this host's local records and (in ``--full`` runs) the managed remote
  documents: which documents to work on, in which order (oldest ``modifiedAt`` first), which to leave alone, and
  which remote files to delete because their CRM document is gone or points at another file. Each branch says
  why in plain words.
* :func:`plan_document` — for one document, once its content hash and required collections are known: upload or
  keep, which collections to join and leave, which superseded file to retire after the write-back
  (make-before-break), and whether everything is in step already (verify only). What follows from it, once the
  work is done, is decided here too: :func:`cleanup_steps`, :func:`write_back_values`, :func:`preview_failed`;
  and :func:`candidate_collections` is the one answer to "which collections may hold this document's file".

The change-feed decisions (the feed window, when a listing pass is due, link drift, edits by others, what a
``--full`` run verifies from its listings alone) are in ``plan_changes.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from docsync_cli.errors import UnsafePlan
from docsync_cli.model import (
    FAILED,
    PROCESSED,
    UNFINISHED,
    UNKNOWN_STATUS,
    Content,
    CrmDocument,
    DateiStatus,
    DeleteLimits,
    Deletion,
    DocPlan,
    Field,
    Indexing,
    LocalRecord,
    Membership,
    Preview,
    PreviewFailure,
    Reason,
    RemoteMember,
    RunPlan,
    SyncStatus,
    WorkItem,
    id_key,
    is_hex,
)


def why_work(doc: CrmDocument, local: LocalRecord | None, *, full: bool, explicit: bool,
             retry_failed: bool = False) -> str | None:
    """The reason a document needs work, or None when it is in step. Order of checks = order of importance."""
    status = doc.datei_status or ""
    if explicit:
        return Reason.EXPLICIT
    if local is not None and local.pending and status != DateiStatus.FEHLER:
        return Reason.FINISH_PENDING
    if status == DateiStatus.NEU:
        return Reason.NEW
    if status == DateiStatus.GEAENDERT:
        return Reason.CHANGED
    if status == DateiStatus.FEHLER:
        if retry_failed:
            return Reason.RETRY_FAILED
        if local is None:
            return Reason.FAILED_UNKNOWN_CAUSE
        if local.failure_transient:
            return Reason.FAILED_TRANSIENT
        if local.crm_modified_at is not None and doc.modified_at != local.crm_modified_at:
            return Reason.FAILED_DOCUMENT_CHANGED
        if local.file_id != doc.file_id:
            return Reason.FAILED_FILE_REPLACED
        return None
    if status == DateiStatus.GESYNCT:
        if doc.xai_sync_status in (SyncStatus.SYNCING, SyncStatus.PENDING, SyncStatus.FAILED):
            return UNFINISHED.format(doc.xai_sync_status)
        if not doc.xai_file_id and doc.xai_collections:
            return Reason.NO_XAI_FILE
        if not is_hex(doc.sha, 64) or doc.sha != doc.xai_synced_hash:
            return Reason.HASH_DIFFERS
        if local is None:
            return Reason.NOT_VERIFIED
        if local.file_id != doc.file_id:
            return Reason.FILE_REPLACED
        if local.sha256 != doc.sha or local.xai_file_id != (doc.xai_file_id or None):
            return Reason.FIELDS_DIFFER
        if full:
            return Reason.FULL_CHECK
        return None
    # An empty or unknown status: documents created before docsync's field existed count as new.
    return Reason.NEW_NO_STATUS if not status else UNKNOWN_STATUS.format(status)


def plan_run(
    docs: Iterable[CrmDocument],
    local: Mapping[str, LocalRecord],
    *,
    ids: frozenset[str] | None = None,
    full: bool = False,
    remote: Iterable[RemoteMember] | None = None,
    limits: DeleteLimits | None = None,
    limit: int | None = None,
    retry_failed: bool = False,
    touched: Mapping[str, str] | None = None,
    verified: frozenset[str] = frozenset(),
    present: frozenset[str] = frozenset(),
) -> RunPlan:
    """Decide the work of one run. ``remote`` is given only when the remote listing completed without error;
    deletions are planned only then (and never in an ``--id`` run). ``touched`` names documents a change feed
    saw change outside the record itself (its links, a linked account's collection): they are checked even when
    the record looks in step. ``verified`` names documents a ``--full`` run found in step from the listings
    alone (:func:`verified_by_listing`): they need no check of their own. ``present`` names documents the listing
    did not show that exist all the same (``GET`` answered 200 or 403, or could not be asked): none of their
    files is retired."""
    docs = list(docs)
    work: list[WorkItem] = []
    held_back: list[WorkItem] = []
    unchanged = 0
    touched = touched or {}
    for doc in sorted(docs, key=lambda d: (d.modified_at, d.id)):
        if ids is not None and doc.id not in ids:
            continue
        reason = why_work(doc, local.get(doc.id), full=full and doc.id not in verified, explicit=ids is not None,
                          retry_failed=retry_failed)
        if reason is None and doc.id in touched and doc.datei_status != DateiStatus.FEHLER:
            work.append(WorkItem(doc, touched[doc.id], verify=True))
        elif reason is not None:
            work.append(WorkItem(doc, reason, verify=reason is Reason.FULL_CHECK,
                                 explicit=reason in (Reason.EXPLICIT, Reason.RETRY_FAILED)))
        elif doc.datei_status == DateiStatus.FEHLER:
            held_back.append(WorkItem(doc, Reason.HELD_BACK))
        else:
            unchanged += 1
    if limit is not None:
        work = work[:limit]
    deletions: tuple[Deletion, ...] = ()
    if remote is not None and ids is None:
        members = list(remote)
        deletions = plan_deletions(docs, members, limits or DeleteLimits(), present)
        deletions += plan_superseded(docs, members, frozenset(item.doc.id for item in work))
    return RunPlan(tuple(work), unchanged, tuple(held_back), deletions)


def plan_gone(gone: Iterable[LocalRecord], managed: int, limits: DeleteLimits) -> tuple[Deletion, ...]:
    """Retire the files of documents deleted in EspoCRM (found by a plain run's count check), within the same
    caps as ``--full``. ``managed`` = documents this host keeps records of."""
    deletions = []
    doomed = 0
    for record in gone:
        if not record.xai_file_id:
            continue
        doomed += 1
        sha = record.sha256 or ""
        collections = record.collections or ("",)
        deletions += [Deletion(RemoteMember(c, record.xai_file_id, record.doc_id, sha),
                               "its EspoCRM document was deleted", document_gone=True) for c in collections]
    share = 100.0 * doomed / max(1, managed)
    if deletions and not limits.force and (doomed > limits.max_count or share > limits.max_percent):
        raise UnsafePlan(
            f"{doomed} documents ({share:.0f}% of {managed}) are gone from EspoCRM, more than the limits "
            f"(sync.max_delete = {limits.max_count}, sync.max_delete_percent = {limits.max_percent:g}); their "
            "files were not deleted. Check EspoCRM, then run `docsync prune --force-delete` to go ahead.")
    return tuple(deletions)


def plan_superseded(docs: list[CrmDocument], remote: list[RemoteMember], working: frozenset[str]
                    ) -> tuple[Deletion, ...]:
    """Managed files the CRM no longer points at (leftovers of a crash or of a failed cleanup), except files of
    documents this run is about to work on (their turn decides). Only when the document points at nothing or at
    another file of this installation (its replacement is in place): a value somebody typed into ``xaiFileId``
    never costs the document its searchable file."""
    current = {doc.id: doc.xai_file_id for doc in docs}
    ours = {m.file_id for m in remote}
    return tuple(Deletion(m, "superseded: its EspoCRM document points at another file")
                 for m in remote
                 if m.crm_document_id in current and m.crm_document_id not in working
                 and current[m.crm_document_id] != m.file_id
                 and (not current[m.crm_document_id] or current[m.crm_document_id] in ours))


def plan_deletions(docs: list[CrmDocument], remote: list[RemoteMember], limits: DeleteLimits,
                   present: frozenset[str] = frozenset()) -> tuple[Deletion, ...]:
    """Remote documents docsync put there whose CRM document is gone (not listed, not known ``present``; ids
    compared ignoring case, as EspoCRM does). Refuses mass deletions (rclone's ``--max-delete``, vdirsyncer's
    empty-side check) unless forced."""
    listed = {id_key(doc.id) for doc in docs} | {id_key(i) for i in present}
    deletions = [Deletion(member, "its EspoCRM document no longer exists", document_gone=True)
                 for member in remote if id_key(member.crm_document_id) not in listed]
    if not deletions or limits.force:
        return tuple(deletions)
    managed_docs = {member.crm_document_id for member in remote}
    doomed_docs = {d.member.crm_document_id for d in deletions}
    share = 100.0 * len(doomed_docs) / max(1, len(managed_docs))
    if not docs:
        raise UnsafePlan(
            f"EspoCRM listed no documents at all, but {len(managed_docs)} documents are in the managed "
            "collections; refusing to delete them all. If that is really intended, run with --force-delete.")
    if len(doomed_docs) > limits.max_count or share > limits.max_percent:
        raise UnsafePlan(
            f"this run would delete {len(doomed_docs)} documents ({share:.0f}% of {len(managed_docs)} managed), "
            f"more than the limits (sync.max_delete = {limits.max_count}, sync.max_delete_percent = "
            f"{limits.max_percent:g}); nothing was deleted. Check the EspoCRM listing, then rerun with "
            "--force-delete to go ahead.")
    return tuple(deletions)


def deletion_steps(deletions: Iterable[Deletion]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """The planned deletions as (file, its document, cleanup steps) per file, in file order: out of every
    collection it was listed in, then ("") the file itself."""
    files: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for deletion in deletions:
        files.setdefault(deletion.member.file_id, []).append(deletion.member.collection_id)
        owners[deletion.member.file_id] = deletion.member.crm_document_id
    return [(file_id, owners[file_id], [(file_id, c) for c in collections if c] + [(file_id, "")])
            for file_id, collections in sorted(files.items())]


def still_used(doc: CrmDocument | None, file_id: str, collection_id: str) -> bool:
    """Whether a journalled cleanup step must be dropped instead of done: the record still points at that file
    (in that collection), so the write-back that made the step due never happened."""
    return doc is not None and doc.xai_file_id == file_id and (
        not collection_id or collection_id in doc.xai_collections)


def candidate_collections(doc: CrmDocument, required: Iterable[str], local: LocalRecord | None) -> frozenset[str]:
    """Every collection a document's xAI file may sit in: the ones it belongs in now, the ones EspoCRM records
    (``xaiCollections``) and the ones this host last synced it into."""
    return frozenset(required) | frozenset(doc.xai_collections) | frozenset(local.collections if local else ())


def known_content(doc: CrmDocument, local: LocalRecord | None) -> Content | None:
    """The content a ``--full`` check may take as known without a download: this host synced exactly this file
    with exactly these hashes (``size`` is unknown: -1). None when the file has to be downloaded."""
    if (local is None or local.file_id != doc.file_id or not local.sha256 or not local.md5
            or local.sha256 != doc.sha or local.md5 != doc.md5):
        return None
    return Content(sha256=local.sha256, md5=local.md5, size=-1)


def plan_document(
    doc: CrmDocument,
    content: Content,
    required: frozenset[str],
    current: Membership | None,
    earlier: Iterable[str] = (),
    *,
    local: LocalRecord | None = None,
    previews: bool = False,
) -> DocPlan:
    """What one document needs, given its downloaded content and where its current xAI file sits.

    ``current`` describes ``doc.xai_file_id`` on xAI when it exists and is this installation's upload for this
    very document (None otherwise: a file that is not ours is never reused, removed or retired). ``earlier``: other
    files this installation uploaded for the document (a pending upload, a crash leftover); they are retired once
    the document points at its new state. ``local`` is this host's record of the document and ``previews`` whether
    this run makes previews: together they decide :attr:`DocPlan.in_step`.
    """
    plan = _plan_document(doc, content, required, current, earlier)
    plan = replace(plan, retire_from=tuple(sorted(candidate_collections(doc, required, local))))
    return replace(plan, in_step=in_step(doc, content, required, plan, current, local, previews=previews))


def _plan_document(doc: CrmDocument, content: Content, required: frozenset[str], current: Membership | None,
                   earlier: Iterable[str]) -> DocPlan:
    others = tuple(sorted(set(earlier) - {current.file_id if current is not None else ""}))
    if not required:
        # In no collection: nothing to index. A file it had is retired after the write-back.
        gone = current.file_id if current is not None else None
        return DocPlan(upload=False, keep_file_id=None, add_to=(), remove_from=(), retire=gone,
                       reason="in no collection", also_retire=others)
    keep = current is not None and doc.xai_synced_hash == content.sha256
    if keep:
        assert current is not None
        held = frozenset(current.statuses)
        failed = frozenset(c for c, s in current.statuses.items() if s == FAILED)
        # A member without this installation's fields (an upload of an older docsync, adopted) is added again:
        # the add is an upsert that writes the ownership record.
        add_to = tuple(sorted((required - held) | (current.unmarked & required)))
        remove_from = tuple(sorted(held - required))
        reindex = tuple(sorted(failed & required))
        reason = "in step" if not (add_to or remove_from or reindex) else "membership changed"
        return DocPlan(upload=False, keep_file_id=current.file_id, add_to=add_to, remove_from=remove_from,
                       retire=None, reason=reason, reindex=reindex, also_retire=others)
    reason = "new content" if current is not None else "first upload"
    return DocPlan(upload=True, keep_file_id=None, add_to=tuple(sorted(required)), remove_from=(),
                   retire=current.file_id if current is not None else None, reason=reason, also_retire=others)


def in_step(doc: CrmDocument, content: Content, required: frozenset[str], doc_plan: DocPlan,
            current: Membership | None, local: LocalRecord | None, *, previews: bool) -> bool:
    """True when nothing needs writing anywhere: the check path of a host that has not seen the document yet,
    and of ``--full`` runs (zero write requests)."""
    if doc_plan.upload or doc_plan.add_to or doc_plan.remove_from or doc_plan.reindex or doc_plan.also_retire:
        return False
    if required:
        if current is None or doc.xai_file_id != current.file_id:
            return False
        if any(status != PROCESSED for c, status in current.statuses.items() if c in required):
            return False
    elif doc.xai_file_id or doc_plan.retire:
        return False
    preview_ok = not previews or (doc.preview_id is not None and (
        local is None or local.preview_sha in (None, content.sha256))) or (
        local is not None and local.preview_failed == content.sha256)  # recorded once, not retried
    return (doc.datei_status == DateiStatus.GESYNCT and doc.xai_sync_status == SyncStatus.SYNCED
            and not doc.xai_sync_error and doc.sha == content.sha256 and doc.md5 == content.md5
            and doc.xai_synced_hash == content.sha256
            and sorted(doc.xai_collections) == sorted(required) and preview_ok)


def cleanup_steps(doc_plan: DocPlan, file_id: str) -> list[tuple[str, str]]:
    """The break half: (file, collection) removals and (file, "") deletions, due once EspoCRM points at
    ``file_id`` (the kept, adopted or new file; "" when the document is in no collection)."""
    steps = [(file_id, collection_id) for collection_id in doc_plan.remove_from]
    for old in dict.fromkeys(((doc_plan.retire,) if doc_plan.retire else ()) + doc_plan.also_retire):
        if old != file_id:  # an adopted earlier upload is the document's file now, not a file to retire
            steps += [(old, collection_id) for collection_id in doc_plan.retire_from] + [(old, "")]
    return steps


def write_back_values(indexing: Indexing, error_text: str, content: Content, file_id: str,
                      required: frozenset[str]) -> dict[str, Any]:
    """The one conditional update after the work (logical field names; the preview is added by its writer)."""
    values: dict[str, Any] = {Field.MD5: content.md5, Field.SHA: content.sha256}
    if indexing is Indexing.PROCESSED:
        return values | {Field.DATEI_STATUS: DateiStatus.GESYNCT.value, Field.XAI_SYNC_STATUS: SyncStatus.SYNCED.value,
                         Field.XAI_SYNC_ERROR: "", Field.XAI_FILE_ID: file_id, Field.XAI_COLLECTIONS: sorted(required),
                         Field.XAI_SYNCED_HASH: content.sha256}
    if indexing is Indexing.PENDING:
        # Not searchable everywhere yet: the record keeps pointing at what xAI fully holds (the old file, if
        # any, stays in place); the next run adopts the upload from the journal and finishes. Where the field
        # has no "pending" option, EspoClient writes "syncing"; this host's state says pending.
        return values | {Field.XAI_SYNC_STATUS: SyncStatus.PENDING.value, Field.XAI_SYNC_ERROR: ""}
    return values | {Field.DATEI_STATUS: DateiStatus.FEHLER.value, Field.XAI_SYNC_STATUS: SyncStatus.FAILED.value,
                     Field.XAI_SYNC_ERROR: error_text}


def preview_failed(preview: str | None, failure: PreviewFailure | None, content: Content,
                   previous: LocalRecord | None) -> str | None:
    """The content hash to remember as "no preview possible": a rendering failure (not an upload hiccup)."""
    if preview == Preview.KNOWN_FAILURE or failure is PreviewFailure.RENDER:
        return content.sha256
    if preview in (Preview.WRITTEN, Preview.UNCHANGED):
        return None
    return previous.preview_failed if previous is not None else None


def remembered_after(doc: CrmDocument, content: Content, file_id: str, required: frozenset[str], indexing: Indexing,
                     crm_modified_at: str, previous: LocalRecord | None, *, preview_now: bool,
                     preview_failed: str | None) -> LocalRecord:
    """What this host remembers after its write-back. Processed: the new state. Pending or failed: what xAI
    fully holds stays the record (the hashes of the last complete sync), so the next run finishes or retries.
    ``preview_now``: the preview is made from this content (written now, or found unchanged)."""
    preview_sha = content.sha256 if preview_now else (previous.preview_sha if previous else None)
    if indexing is Indexing.PROCESSED:
        return LocalRecord(doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
                           xai_file_id=file_id or None, collections=tuple(sorted(required)),
                           crm_modified_at=crm_modified_at, preview_sha=preview_sha, preview_failed=preview_failed)
    failed = indexing is Indexing.FAILED
    return LocalRecord(
        doc_id=doc.id, file_id=doc.file_id if failed else (previous.file_id if previous else None),
        sha256=previous.sha256 if previous else None, md5=previous.md5 if previous else None,
        xai_file_id=doc.xai_file_id, collections=doc.xai_collections, crm_modified_at=crm_modified_at,
        failure_code="processing_failed" if failed else None, failure_transient=False,
        preview_sha=preview_sha, pending=indexing is Indexing.PENDING, preview_failed=preview_failed)


def remembered_verified(doc: CrmDocument, content: Content, required: frozenset[str],
                        local: LocalRecord | None) -> LocalRecord:
    """What this host remembers of a document it found in step (nothing written)."""
    return LocalRecord(doc_id=doc.id, file_id=doc.file_id, sha256=content.sha256, md5=content.md5,
                       xai_file_id=doc.xai_file_id or None, collections=tuple(sorted(required)),
                       crm_modified_at=doc.modified_at, preview_sha=content.sha256 if doc.preview_id else None,
                       preview_failed=local.preview_failed if local is not None else None)


def remembered_failure(doc: CrmDocument, code: str, transient: bool, crm_modified_at: str,
                       previous: LocalRecord | None) -> LocalRecord:
    """What this host remembers of a document that failed: the failure, and the hashes of its last sync."""
    return LocalRecord(doc_id=doc.id, file_id=doc.file_id, sha256=previous.sha256 if previous else None,
                       md5=previous.md5 if previous else None, xai_file_id=doc.xai_file_id,
                       collections=doc.xai_collections, crm_modified_at=crm_modified_at, failure_code=code,
                       failure_transient=transient, preview_sha=previous.preview_sha if previous else None)
