"""The planner's change-feed decisions (pure, like ``plan.py``): where the ``modifiedAt`` feed starts, when a
listing pass is due, link drift, edits by others since docsync's own write, and the documents a ``--full`` run
can call in step from its listings alone. ``changes.py`` gathers the feeds and asks these; ``plan.plan_run``
decides the run from what they found."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta

from docsync_cli.model import PROCESSED, CrmDocument, DateiStatus, LocalRecord, Reason, RemoteMember, SyncStatus
from docsync_cli.sync.plan import why_work
from docsync_cli.timestamps import espo_time, parse_espo_time

OVERLAP = timedelta(minutes=2)


def feed_since(watermark: str, server_now: str | None) -> str:
    """Where the ``modifiedAt`` feed starts: the stored watermark (server time at the start of the last complete
    run) minus two minutes of overlap. If the server's clock now reads earlier than the watermark, it was set
    back: start from its current time instead, so records saved since the step are not missed."""
    start = parse_espo_time(watermark)
    if server_now is not None:
        start = min(start, parse_espo_time(server_now))
    return espo_time(start - OVERLAP)


def listing_due(last_listing: float | None, now: float, interval: float) -> bool:
    """A listing pass is due when none ran yet, the interval passed, or the local clock went back."""
    return last_listing is None or now - last_listing >= interval or now < last_listing


def link_drift(local: LocalRecord | None, expected: frozenset[str] | None) -> str | None:
    """Why a document's links need a check: the collections its linked records point at differ from the ones
    it was last synced into."""
    if local is None or expected is None or local.failure_code is not None:
        return None
    if frozenset(local.collections) != expected:
        return Reason.LINKS_CHANGED
    return None



def verified_by_listing(docs: Iterable[CrmDocument], local: Mapping[str, LocalRecord],
                        expected: Mapping[str, frozenset[str]], remote: Iterable[RemoteMember], *,
                        previews: bool) -> frozenset[str]:
    """Documents a ``--full`` run can call in step from its listings alone, without a request of their own: the
    record, this host's memory, the collections its linked records point at (listing pass) and the managed
    collections' listings all agree, and xAI reports the file processed everywhere it belongs."""
    held: dict[str, dict[str, RemoteMember]] = {}
    for member in remote:
        held.setdefault(member.crm_document_id, {})[member.collection_id] = member
    found = set()
    for doc in docs:
        record = local.get(doc.id)
        want = expected.get(doc.id)
        if record is None or want is None or why_work(doc, record, full=False, explicit=False) is not None:
            continue
        if doc.datei_status != DateiStatus.GESYNCT or doc.xai_sync_status != SyncStatus.SYNCED or doc.xai_sync_error:
            continue
        if frozenset(record.collections) != want or frozenset(doc.xai_collections) != want:
            continue
        members = held.get(doc.id, {})
        if set(members) != set(want) or any(
                m.file_id != doc.xai_file_id or m.status != PROCESSED or m.content_sha256 != doc.sha
                for m in members.values()):
            continue
        if not want and doc.xai_file_id:
            continue
        if previews and not ((doc.preview_id and record.preview_sha == doc.sha) or record.preview_failed == doc.sha):
            continue
        found.add(doc.id)
    return frozenset(found)


def edited_since_sync(doc: CrmDocument, local: LocalRecord | None) -> str | None:
    """A record saved by someone else since docsync's own last write (docsync remembers the ``modifiedAt`` its
    write-back left): a PUT of ``accountsIds``, a field edit. It is checked once even if it looks in step."""
    if local is None or local.crm_modified_at is None or local.crm_modified_at == doc.modified_at:
        return None
    return Reason.EDITED
