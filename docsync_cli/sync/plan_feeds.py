"""The planner's change-feed decisions (pure, like ``plan.py``): where the ``modifiedAt`` feed starts, when a
listing pass is due, link drift, edits by others since docsync's own write, and the documents a ``--full`` run
can call in step from its listings alone. ``changes.py`` gathers the feeds and asks these; ``plan.plan_run``
decides the run from what they found."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import timedelta

from docsync_cli.model import PROCESSED, CrmDocument, DateiStatus, LocalRecord, Reason, RemoteMember, SyncStatus
from docsync_cli.sync.plan import why_work
from docsync_cli.timestamps import espo_time, parse_espo_time

OVERLAP = timedelta(minutes=2)


def feed_since(watermark: str, skew: float | None = None) -> str:
    """Where the ``modifiedAt`` feed starts: the stored watermark (EspoCRM's ``Date`` at the start of the last
    complete run) minus two minutes of overlap, widened by how far the ``Date`` clock was measured ahead of the
    ``modifiedAt`` clock (``skew`` seconds; a clock behind needs no widening)."""
    widen = timedelta(seconds=math.ceil(max(skew or 0.0, 0.0)))
    return espo_time(parse_espo_time(watermark) - OVERLAP - widen)


def stored_skew(text: str | None) -> float | None:
    """The clocks' offset a run stored (``clock_skew``), None when none was measured or it is unreadable."""
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def clock_set_back(watermark: str | None, server_now: str | None) -> bool:
    """EspoCRM's clock now reads earlier than the stored watermark: it was set back (or had jumped ahead when the
    watermark was taken), so saves stamped in between may lie below the watermark. The watermark is not trusted:
    a listing pass runs now."""
    if watermark is None or server_now is None:
        return False
    try:
        return parse_espo_time(server_now) < parse_espo_time(watermark)
    except ValueError:
        return True


def next_watermark(started: str, previous: str | None, *, listing: bool, skew_used: float | None,
                   skew_now: float | None) -> str:
    """The watermark a completed run stores: the server's time at its start. A plain run that measured the
    ``Date`` clock further ahead than the feed allowed for (more than a second) keeps the previous one, so the next
    run asks again from there with the wider overlap (a listing pass saw every record: it always moves on)."""
    if listing or previous is None or skew_now is None:
        return started
    if skew_now > max(skew_used or 0.0, 0.0) + 1.0:
        return min(previous, started)
    return started


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
