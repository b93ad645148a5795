"""The planner's change-feed decisions (``plan_changes.py``): the feed window, when a listing pass is due, link
drift, edits by others; and (``plan.py``) touched documents and retiring the files of deleted documents within the
caps."""

from __future__ import annotations

import dataclasses

import pytest

from docsync_cli.errors import UnsafePlan
from docsync_cli.model import PROCESSED, CrmDocument, DeleteLimits, LocalRecord, RemoteMember
from docsync_cli.sync.plan import plan_gone, plan_run
from docsync_cli.sync.plan_feeds import (
    clock_set_back,
    edited_since_sync,
    feed_since,
    link_drift,
    listing_due,
    next_watermark,
    stored_skew,
    verified_by_listing,
)

SHA = "a" * 64


def synced(doc_id: str = "d1", modified: str = "2026-05-04 09:00:00") -> tuple[CrmDocument, LocalRecord]:
    doc = CrmDocument(id=doc_id, name="D", modified_at=modified, file_id="att1", datei_status="Gesynct",
                      md5="b" * 32, sha=SHA, xai_file_id="file_1", xai_collections=("c1",), xai_synced_hash=SHA,
                      xai_sync_status="synced")
    local = LocalRecord(doc_id=doc_id, file_id="att1", sha256=SHA, md5="b" * 32, xai_file_id="file_1",
                        collections=("c1",), crm_modified_at=modified)
    return doc, local


def test_feed_window_overlaps_two_minutes_widened_by_the_measured_clock_offset() -> None:
    assert feed_since("2026-05-04 09:00:00", None) == "2026-05-04 08:58:00"
    assert feed_since("2026-05-04 09:00:00", -30.0) == "2026-05-04 08:58:00"  # Date behind modifiedAt: no widening
    assert feed_since("2026-05-04 09:00:00", 600.4) == "2026-05-04 08:47:59"  # Date 10 min ahead: 10 min more


def test_a_server_clock_before_the_watermark_is_not_trusted() -> None:
    assert clock_set_back("2026-05-04 09:00:00", "2026-05-04 08:59:59")
    assert not clock_set_back("2026-05-04 09:00:00", "2026-05-04 09:00:00")
    assert not clock_set_back(None, "2026-05-04 09:00:00") and not clock_set_back("2026-05-04 09:00:00", None)
    assert clock_set_back("garbage", "2026-05-04 09:00:00")


def test_the_next_watermark_is_the_start_unless_the_offset_grew_past_what_the_feed_allowed() -> None:
    start, before = "2026-05-04 10:00:00", "2026-05-04 09:00:00"
    assert next_watermark(start, before, listing=False, skew_used=0.0, skew_now=1.0) == start  # rounding
    assert next_watermark(start, before, listing=False, skew_used=0.0, skew_now=300.0) == before
    assert next_watermark(start, before, listing=True, skew_used=0.0, skew_now=300.0) == start
    assert next_watermark(start, before, listing=False, skew_used=300.0, skew_now=200.0) == start
    assert next_watermark(start, None, listing=False, skew_used=None, skew_now=300.0) == start
    assert stored_skew("12.5") == 12.5 and stored_skew(None) is None and stored_skew("nan") is None
    assert stored_skew("x") is None


def test_listing_due() -> None:
    assert listing_due(None, 1000.0, 3600)
    assert not listing_due(1000.0, 4599.0, 3600)
    assert listing_due(1000.0, 4600.0, 3600)
    assert listing_due(1000.0, 900.0, 3600)  # the host's clock went back


def test_link_drift() -> None:
    _, local = synced()
    assert link_drift(local, frozenset({"c1"})) is None
    assert link_drift(local, frozenset({"c1", "c2"})) is not None
    assert link_drift(local, frozenset()) is not None
    assert link_drift(None, frozenset({"c1"})) is None  # never synced: the planner's "new" covers it
    assert link_drift(local, None) is None


def test_edited_since_sync_is_about_other_peoples_saves() -> None:
    doc, local = synced()
    assert edited_since_sync(doc, local) is None  # docsync's own write-back
    later, _ = synced(modified="2026-05-04 09:05:00")
    assert edited_since_sync(later, local) == "edited in EspoCRM since the last sync"
    assert edited_since_sync(later, None) is None


def test_touched_documents_are_verified_even_when_in_step() -> None:
    doc, local = synced()
    assert plan_run([doc], {"d1": local}).work == ()
    plan = plan_run([doc], {"d1": local}, touched={"d1": "linked records changed"})
    assert [(w.reason, w.verify) for w in plan.work] == [("linked records changed", True)]
    failed = CrmDocument(id="d1", name="D", modified_at="x", datei_status="Fehler")
    failed_local = LocalRecord(doc_id="d1", file_id=None, sha256=None, md5=None, xai_file_id=None,
                               collections=(), crm_modified_at="x", failure_code="no_file")
    assert plan_run([failed], {"d1": failed_local}, touched={"d1": "x"}).work == ()  # a permanent failure waits


def test_plan_gone_retires_recorded_files_within_the_caps() -> None:
    _, one = synced("d1")
    two = LocalRecord(doc_id="d2", file_id="att2", sha256=SHA, md5=None, xai_file_id="file_2",
                      collections=("c1", "c2"), crm_modified_at="x")
    never = LocalRecord(doc_id="d3", file_id=None, sha256=None, md5=None, xai_file_id=None, collections=(),
                        crm_modified_at="x")
    deletions = plan_gone([one, two, never], 100, DeleteLimits(max_count=5))
    assert sorted((d.member.file_id, d.member.collection_id) for d in deletions) == [
        ("file_1", "c1"), ("file_2", "c1"), ("file_2", "c2")]
    with pytest.raises(UnsafePlan, match="more than the limits"):
        plan_gone([one, two], 100, DeleteLimits(max_count=1))
    with pytest.raises(UnsafePlan):
        plan_gone([one, two], 3, DeleteLimits(max_count=50, max_percent=50))
    assert len(plan_gone([one, two], 3, DeleteLimits(max_count=1, force=True))) == 3


def test_a_full_run_verifies_from_its_listings_only_what_every_source_agrees_on() -> None:
    doc, local = synced()
    ours = RemoteMember("c1", "file_1", "d1", SHA, PROCESSED)
    expected = {"d1": frozenset({"c1"})}

    def verified(doc: CrmDocument = doc, local: LocalRecord = local, expected: dict[str, frozenset[str]] = expected,
                 remote: tuple[RemoteMember, ...] = (ours,), previews: bool = False) -> bool:
        return "d1" in verified_by_listing([doc], {"d1": local}, expected, remote, previews=previews)

    assert verified()
    assert not verified(remote=(dataclasses.replace(ours, status="DOCUMENT_STATUS_PROCESSING"),))
    assert not verified(remote=(dataclasses.replace(ours, content_sha256="c" * 64),))
    assert not verified(remote=())  # the listing does not show it where it belongs
    assert not verified(remote=(ours, RemoteMember("c2", "file_1", "d1", SHA, PROCESSED)))
    assert not verified(expected={"d1": frozenset({"c1", "c2"})})  # its linked records point elsewhere now
    assert not verified(expected={})  # the listing pass did not see its links
    assert not verified(doc=dataclasses.replace(doc, xai_sync_error="boom"))
    assert not verified(local=dataclasses.replace(local, collections=("c0",)))
    assert not verified(previews=True)  # no preview yet
    assert verified(doc=dataclasses.replace(doc, preview_id="att_p"), local=dataclasses.replace(local, preview_sha=SHA),
                    previews=True)
    assert verified(local=dataclasses.replace(local, preview_failed=SHA), previews=True)
