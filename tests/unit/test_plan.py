"""The pure planner (``docsync_cli.sync.plan``): every branch of ``why_work``, run selection, deletion caps and the
per-document plan. No I/O; every test builds its snapshots with the small builders below."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from docsync_cli.errors import UnsafePlan
from docsync_cli.model import (
    Content,
    CrmDocument,
    DeleteLimits,
    Deletion,
    Indexing,
    LocalRecord,
    Membership,
    Preview,
    PreviewFailure,
    Reason,
    RemoteMember,
)
from docsync_cli.sync.plan import (
    candidate_collections,
    cleanup_steps,
    deletion_steps,
    in_step,
    known_content,
    plan_deletions,
    plan_document,
    plan_run,
    preview_failed,
    remembered_after,
    remembered_failure,
    remembered_verified,
    still_used,
    why_work,
    write_back_values,
)

SHA = "a" * 64
OTHER_SHA = "b" * 64
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
FAILED = "DOCUMENT_STATUS_FAILED"


def synced_doc(**changes: object) -> CrmDocument:
    """A document in step with xAI: Gesynct, hashes agree, an xAI file recorded."""
    base = CrmDocument(id="doc1", name="Vertrag", modified_at="2025-03-01 12:00:00", file_id="att1",
                       file_name="vertrag.pdf", datei_status="Gesynct", md5="m" * 32, sha=SHA, xai_file_id="file_1",
                       xai_collections=("col_a",), xai_synced_hash=SHA, xai_sync_status="synced")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def local_for(doc: CrmDocument, **changes: object) -> LocalRecord:
    """What this host would remember after syncing ``doc`` itself."""
    base = LocalRecord(doc_id=doc.id, file_id=doc.file_id, sha256=doc.sha, md5=doc.md5, xai_file_id=doc.xai_file_id,
                       collections=doc.xai_collections, crm_modified_at=doc.modified_at)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def failed_local(doc: CrmDocument, **changes: object) -> LocalRecord:
    return local_for(doc, **({"failure_code": "file_missing", "failure_transient": False} | changes))


def member(doc_id: str, file_id: str | None = None, collection: str = "col_a") -> RemoteMember:
    return RemoteMember(collection, file_id or f"file_{doc_id}", doc_id, SHA)


def content(sha: str = SHA) -> Content:
    return Content(sha256=sha, md5="m" * 32, size=10)


# -- why_work ------------------------------------------------------------------------------------------


def test_explicit_id_always_works_even_when_in_step() -> None:
    doc = synced_doc()
    assert why_work(doc, local_for(doc), full=False, explicit=True) == "requested with --id"


def test_status_neu_is_new() -> None:
    assert why_work(synced_doc(datei_status="Neu"), None, full=False, explicit=False) == "new"


def test_status_geaendert_is_changed() -> None:
    assert why_work(synced_doc(datei_status="Geändert"), None, full=False, explicit=False) == "changed"


def test_fehler_unknown_to_this_host_is_retried() -> None:
    reason = why_work(synced_doc(datei_status="Fehler"), None, full=False, explicit=False)
    assert reason is not None and "cause unknown" in reason


def test_fehler_after_transient_failure_is_retried() -> None:
    doc = synced_doc(datei_status="Fehler")
    reason = why_work(doc, failed_local(doc, failure_transient=True), full=False, explicit=False)
    assert reason is not None and "transient" in reason


def test_fehler_permanent_waits_while_document_unchanged() -> None:
    doc = synced_doc(datei_status="Fehler")
    assert why_work(doc, failed_local(doc), full=False, explicit=False) is None


def test_fehler_permanent_is_retried_with_retry_failed() -> None:
    doc = synced_doc(datei_status="Fehler")
    reason = why_work(doc, failed_local(doc), full=False, explicit=False, retry_failed=True)
    assert reason is not None and "--retry-failed" in reason
    planned = plan_run([doc], {doc.id: failed_local(doc)}, retry_failed=True)
    assert [item.doc.id for item in planned.work] == [doc.id] and planned.held_back == ()
    assert plan_run([doc], {doc.id: failed_local(doc)}).held_back[0].reason.endswith("--retry-failed")


def test_a_document_this_host_left_indexing_is_finished_even_if_the_crm_says_syncing() -> None:
    # the design document's xaiSyncStatus has no "pending": the CRM shows "syncing", this host knows better
    doc = synced_doc(xai_sync_status="syncing")
    reason = why_work(doc, local_for(doc, pending=True), full=False, explicit=False)
    assert reason is not None and "still indexing" in reason


def test_fehler_permanent_is_retried_once_the_document_changed() -> None:
    doc = synced_doc(datei_status="Fehler")
    local = failed_local(doc, crm_modified_at="2025-02-01 00:00:00")
    reason = why_work(doc, local, full=False, explicit=False)
    assert reason is not None and "changed since" in reason


def test_fehler_permanent_is_retried_once_the_file_was_replaced() -> None:
    doc = synced_doc(datei_status="Fehler")
    reason = why_work(doc, failed_local(doc, file_id="att_old"), full=False, explicit=False)
    assert reason is not None and "file was replaced" in reason


@pytest.mark.parametrize("sync_status", ["syncing", "pending", "failed"])
def test_gesynct_but_unfinished_is_worked_on(sync_status: str) -> None:
    doc = synced_doc(xai_sync_status=sync_status)
    assert why_work(doc, local_for(doc), full=False, explicit=False) == f"unfinished ({sync_status})"


def test_gesynct_without_xai_file_id_has_drifted() -> None:
    doc = synced_doc(xai_file_id=None)
    reason = why_work(doc, local_for(doc), full=False, explicit=False)
    assert reason is not None and "no xAI file" in reason


@pytest.mark.parametrize("changes", [
    {"xai_synced_hash": OTHER_SHA},  # CRM hash differs from what xAI holds
    {"sha": None, "xai_synced_hash": None},  # no hash at all
    {"sha": "A" * 64, "xai_synced_hash": "A" * 64},  # not lower-case hex
    {"sha": "abc", "xai_synced_hash": "abc"},  # too short
], ids=["differs", "missing", "upper-case", "short"])
def test_gesynct_with_hash_drift_is_worked_on(changes: dict[str, object]) -> None:
    doc = synced_doc(**changes)
    reason = why_work(doc, local_for(doc), full=False, explicit=False)
    assert reason == "drifted: hash differs from what xAI holds"


def test_gesynct_not_yet_verified_by_this_host() -> None:
    assert why_work(synced_doc(), None, full=False, explicit=False) == "not yet verified by this host"


def test_gesynct_with_replaced_file_has_drifted() -> None:
    doc = synced_doc()
    reason = why_work(doc, local_for(doc, file_id="att_old"), full=False, explicit=False)
    assert reason == "drifted: the file was replaced"


@pytest.mark.parametrize("changes", [{"sha256": OTHER_SHA}, {"xai_file_id": "file_other"}])
def test_gesynct_with_crm_fields_differing_from_last_sync_has_drifted(changes: dict[str, object]) -> None:
    doc = synced_doc()
    reason = why_work(doc, local_for(doc, **changes), full=False, explicit=False)
    assert reason == "drifted: CRM fields differ from the last sync"


def test_gesynct_in_step_needs_no_work() -> None:
    doc = synced_doc()
    assert why_work(doc, local_for(doc), full=False, explicit=False) is None


def test_gesynct_in_step_is_checked_in_a_full_run() -> None:
    doc = synced_doc()
    assert why_work(doc, local_for(doc), full=True, explicit=False) == "full check"


def test_empty_status_counts_as_new() -> None:
    assert why_work(synced_doc(datei_status=None), None, full=False, explicit=False) == "new (no dateiStatus)"


def test_unknown_status_is_treated_as_changed() -> None:
    reason = why_work(synced_doc(datei_status="Archiviert"), None, full=False, explicit=False)
    assert reason is not None and "'Archiviert'" in reason and "changed" in reason


# -- plan_run ------------------------------------------------------------------------------------------


def test_work_is_ordered_by_modified_at_then_id() -> None:
    docs = [synced_doc(id="c", datei_status="Neu", modified_at="2025-03-02 00:00:00"),
            synced_doc(id="b", datei_status="Neu", modified_at="2025-03-01 00:00:00"),
            synced_doc(id="a", datei_status="Neu", modified_at="2025-03-02 00:00:00")]
    plan = plan_run(docs, {})
    assert [item.doc.id for item in plan.work] == ["b", "a", "c"]


def test_in_step_documents_are_counted_unchanged_and_permanent_failures_held_back() -> None:
    in_step = synced_doc(id="ok")
    failed = synced_doc(id="bad", datei_status="Fehler")
    new = synced_doc(id="new", datei_status="Neu")
    plan = plan_run([in_step, failed, new], {"ok": local_for(in_step), "bad": failed_local(failed)})
    assert [item.doc.id for item in plan.work] == ["new"]
    assert [item.doc.id for item in plan.held_back] == ["bad"]
    assert plan.unchanged == 1


def test_id_selection_works_only_on_the_named_documents_even_in_step() -> None:
    docs = [synced_doc(id="a"), synced_doc(id="b", datei_status="Neu")]
    plan = plan_run(docs, {"a": local_for(docs[0])}, ids=frozenset({"a"}))
    assert [(item.doc.id, item.reason) for item in plan.work] == [("a", "requested with --id")]
    assert plan.unchanged == 0


def test_id_run_never_plans_deletions() -> None:
    plan = plan_run([synced_doc(id="a")], {}, ids=frozenset({"a"}), remote=[member("gone")])
    assert plan.deletions == ()


def test_limit_caps_the_work_keeping_the_oldest() -> None:
    docs = [synced_doc(id=f"d{i}", datei_status="Neu", modified_at=f"2025-03-0{i} 00:00:00") for i in range(1, 6)]
    plan = plan_run(docs, {}, limit=2)
    assert [item.doc.id for item in plan.work] == ["d1", "d2"]


def test_deletions_are_planned_only_when_the_remote_listing_is_given() -> None:
    docs = [synced_doc(id=f"d{i}") for i in range(4)]
    remote = [member(f"d{i}") for i in range(4)] + [member("gone")]
    assert plan_run(docs, {}, remote=None).deletions == ()
    planned = plan_run(docs, {}, remote=remote).deletions
    assert [d.member.crm_document_id for d in planned] == ["gone"]


# -- plan_deletions ------------------------------------------------------------------------------------


def test_only_members_whose_crm_document_is_missing_are_deleted() -> None:
    docs = [synced_doc(id="kept1"), synced_doc(id="kept2"), synced_doc(id="kept3")]
    remote = [member("kept1"), member("kept2"), member("kept3"), member("gone", collection="col_a"),
              member("gone", collection="col_b")]
    deletions = plan_deletions(docs, remote, DeleteLimits())
    assert sorted((d.member.crm_document_id, d.member.collection_id) for d in deletions) == [
        ("gone", "col_a"), ("gone", "col_b")]
    assert all("no longer exists" in d.reason for d in deletions)


def test_empty_crm_listing_is_refused() -> None:
    with pytest.raises(UnsafePlan, match="--force-delete"):
        plan_deletions([], [member("a"), member("b")], DeleteLimits(max_count=100, max_percent=100))


def test_more_deletions_than_max_count_are_refused() -> None:
    docs = [synced_doc(id=f"keep{i}") for i in range(100)]
    remote = [member(f"keep{i}") for i in range(100)] + [member(f"gone{i}") for i in range(3)]
    with pytest.raises(UnsafePlan, match="--force-delete") as caught:
        plan_deletions(docs, remote, DeleteLimits(max_count=2, max_percent=100))
    assert "3 documents" in str(caught.value)


def test_a_share_above_max_percent_is_refused() -> None:
    docs = [synced_doc(id="keep")]
    remote = [member("keep"), member("gone1"), member("gone2")]
    with pytest.raises(UnsafePlan, match="--force-delete"):
        plan_deletions(docs, remote, DeleteLimits(max_count=50, max_percent=50))


def test_deletions_within_the_limits_pass() -> None:
    docs = [synced_doc(id="keep")]
    remote = [member("keep"), member("gone")]
    assert len(plan_deletions(docs, remote, DeleteLimits(max_count=1, max_percent=50))) == 1


def test_force_passes_mass_deletions_and_an_empty_listing() -> None:
    remote = [member(f"gone{i}") for i in range(10)]
    forced = DeleteLimits(max_count=1, max_percent=1, force=True)
    assert len(plan_deletions([], remote, forced)) == 10
    assert len(plan_deletions([synced_doc(id="x")], remote, forced)) == 10


def test_empty_crm_listing_with_nothing_managed_is_fine() -> None:
    assert plan_deletions([], [], DeleteLimits()) == ()


# -- plan_document -------------------------------------------------------------------------------------


def test_same_content_in_place_keeps_the_file() -> None:
    doc = synced_doc()
    plan = plan_document(doc, content(), frozenset({"col_a"}), Membership("file_1", {"col_a": PROCESSED}))
    assert (plan.upload, plan.keep_file_id, plan.add_to, plan.remove_from, plan.retire, plan.reindex) == (
        False, "file_1", (), (), None, ())
    assert plan.reason == "in step"


def test_kept_file_joins_new_and_leaves_old_collections() -> None:
    doc = synced_doc()
    current = Membership("file_1", {"col_a": PROCESSED, "col_old": PROCESSED})
    plan = plan_document(doc, content(), frozenset({"col_a", "col_new", "col_b"}), current)
    assert plan.upload is False
    assert plan.add_to == ("col_b", "col_new")
    assert plan.remove_from == ("col_old",)
    assert plan.reason == "membership changed"


def test_kept_file_whose_processing_failed_is_reindexed() -> None:
    doc = synced_doc()
    current = Membership("file_1", {"col_a": FAILED, "col_gone": FAILED})
    plan = plan_document(doc, content(), frozenset({"col_a"}), current)
    assert plan.reindex == ("col_a",)
    assert plan.remove_from == ("col_gone",)


def test_changed_content_uploads_and_retires_the_old_file() -> None:
    doc = synced_doc()
    plan = plan_document(doc, content(OTHER_SHA), frozenset({"col_a"}), Membership("file_1", {"col_a": PROCESSED}))
    assert (plan.upload, plan.keep_file_id, plan.add_to, plan.remove_from, plan.retire) == (
        True, None, ("col_a",), (), "file_1")
    assert plan.reason == "new content"


def test_first_upload_retires_nothing() -> None:
    doc = synced_doc(xai_file_id=None, xai_synced_hash=None, datei_status="Neu")
    plan = plan_document(doc, content(), frozenset({"col_b", "col_a"}), None)
    assert (plan.upload, plan.add_to, plan.retire, plan.reason) == (True, ("col_a", "col_b"), None, "first upload")


def test_vanished_xai_file_is_uploaded_again() -> None:
    plan = plan_document(synced_doc(), content(), frozenset({"col_a"}), None)
    assert plan.upload is True and plan.add_to == ("col_a",)


# -- property ------------------------------------------------------------------------------------------

statuses = st.sampled_from([None, "", "Neu", "Geändert", "Fehler", "Gesynct", "Other"])
sync_statuses = st.sampled_from([None, "synced", "syncing", "pending", "failed"])
doc_strategy = st.builds(
    CrmDocument,
    id=st.text("abcdef0123456789", min_size=1, max_size=4),
    name=st.just("n"),
    modified_at=st.sampled_from(["2025-01-01 00:00:00", "2025-02-01 00:00:00", "2025-03-01 00:00:00"]),
    file_id=st.sampled_from([None, "att1", "att2"]),
    datei_status=statuses,
    sha=st.sampled_from([None, SHA, OTHER_SHA]),
    xai_file_id=st.sampled_from([None, "file_1"]),
    xai_synced_hash=st.sampled_from([None, SHA]),
    xai_sync_status=sync_statuses,
)


@given(docs=st.lists(doc_strategy, max_size=12, unique_by=lambda d: d.id), full=st.booleans(),
       with_local=st.booleans())
def test_plan_without_remote_listing_never_deletes_and_only_works_on_given_docs(
        docs: list[CrmDocument], full: bool, with_local: bool) -> None:
    local = {d.id: local_for(d) for d in docs} if with_local else {}
    plan = plan_run(docs, local, full=full, remote=None)
    assert plan.deletions == ()
    assert all(item.doc in docs for item in plan.work + plan.held_back)
    assert len(plan.work) + len(plan.held_back) + plan.unchanged == len(docs)
    keys = [(item.doc.modified_at, item.doc.id) for item in plan.work]
    assert keys == sorted(keys)


def test_document_in_no_collection_is_not_uploaded_and_its_old_file_is_retired() -> None:
    doc = synced_doc()
    plan = plan_document(doc, content(), frozenset(), Membership("file_1", {"col_a": PROCESSED}))
    assert not plan.upload and plan.add_to == () and plan.keep_file_id is None
    assert plan.retire == "file_1"
    fresh = plan_document(synced_doc(xai_file_id=None, xai_collections=()), content(), frozenset(), None)
    assert not fresh.upload and fresh.retire is None


def test_gesynct_document_in_no_collection_stays_in_step() -> None:
    doc = synced_doc(xai_file_id=None, xai_collections=())
    assert why_work(doc, local_for(doc, xai_file_id=None), full=False, explicit=False) is None
    assert why_work(synced_doc(xai_file_id=None), None, full=False, explicit=False) == "drifted: no xAI file recorded"


def test_full_run_retires_managed_files_the_crm_no_longer_points_at() -> None:
    doc = synced_doc()  # points at file_1
    leftover = member("doc1", "file_old")
    plan = plan_run([doc], {doc.id: local_for(doc)}, full=False, remote=[member("doc1", "file_1"), leftover])
    assert [d.member for d in plan.deletions] == [leftover]
    busy = plan_run([synced_doc(datei_status="Neu")], {}, remote=[leftover])
    assert busy.deletions == ()  # a document this run works on decides about its own files


def test_a_typed_xai_file_id_never_costs_a_document_its_file() -> None:
    typed = synced_doc(xai_file_id="file_someone_typed", datei_status="Fehler")  # held back, not worked on
    mine = member("doc1", "file_1")
    plan = plan_run([typed], {typed.id: local_for(synced_doc())}, remote=[mine])
    assert plan.deletions == ()


# -- structured reasons ----------------------------------------------------------------------------------


def test_explicit_and_full_check_are_fields_of_the_work_item_not_its_text() -> None:
    doc = synced_doc()
    asked = plan_run([doc], {doc.id: local_for(doc)}, ids=frozenset({doc.id})).work[0]
    assert (asked.reason, asked.explicit, asked.verify) == (Reason.EXPLICIT, True, False)
    retried = synced_doc(datei_status="Fehler")
    again = plan_run([retried], {doc.id: failed_local(retried)}, retry_failed=True).work[0]
    assert (again.reason, again.explicit) == (Reason.RETRY_FAILED, True)
    full = plan_run([doc], {doc.id: local_for(doc)}, full=True).work[0]
    assert (full.reason, full.explicit, full.verify) == ("full check", False, True)
    new = plan_run([synced_doc(datei_status="Neu")], {}).work[0]
    assert (new.explicit, new.verify) == (False, False)


# -- the per-document decisions reconcile follows ----------------------------------------------------------


def test_candidate_collections_are_required_recorded_and_remembered() -> None:
    doc = synced_doc(xai_collections=("col_crm",))
    local = local_for(doc, collections=("col_host",))
    assert candidate_collections(doc, {"col_new"}, local) == {"col_new", "col_crm", "col_host"}
    assert candidate_collections(doc, (), None) == {"col_crm"}


def test_known_content_only_when_this_host_synced_exactly_this_file() -> None:
    doc = synced_doc()
    assert known_content(doc, local_for(doc)) == Content(sha256=SHA, md5="m" * 32, size=-1)
    assert known_content(doc, None) is None
    assert known_content(doc, local_for(doc, file_id="att_other")) is None
    assert known_content(doc, local_for(doc, sha256=OTHER_SHA)) is None
    assert known_content(doc, local_for(doc, md5=None)) is None
    assert known_content(synced_doc(md5="n" * 32), local_for(doc)) is None


def test_a_document_in_step_everywhere_is_planned_as_verify_only() -> None:
    doc = synced_doc()
    current = Membership("file_1", {"col_a": PROCESSED})
    assert plan_document(doc, content(), frozenset({"col_a"}), current, local=local_for(doc)).in_step
    processing = Membership("file_1", {"col_a": "DOCUMENT_STATUS_PROCESSING"})
    assert not plan_document(doc, content(), frozenset({"col_a"}), processing).in_step
    assert not plan_document(doc, content(OTHER_SHA), frozenset({"col_a"}), current).in_step
    assert not plan_document(synced_doc(xai_sync_status="pending"), content(), frozenset({"col_a"}), current).in_step
    assert not plan_document(doc, content(), frozenset({"col_a"}), current, ("file_old",)).in_step  # retires one


def test_in_step_asks_for_a_preview_only_when_the_run_makes_previews() -> None:
    doc = synced_doc()
    current = Membership("file_1", {"col_a": PROCESSED})
    plan = plan_document(doc, content(), frozenset({"col_a"}), current)
    assert in_step(doc, content(), frozenset({"col_a"}), plan, current, None, previews=False)
    assert not in_step(doc, content(), frozenset({"col_a"}), plan, current, None, previews=True)
    with_preview = synced_doc(preview_id="att_preview")
    assert in_step(with_preview, content(), frozenset({"col_a"}), plan, current, None, previews=True)
    stale = local_for(doc, preview_sha=OTHER_SHA)
    assert not in_step(with_preview, content(), frozenset({"col_a"}), plan, current, stale, previews=True)
    failed_before = local_for(doc, preview_failed=SHA)  # recorded once, not retried
    assert in_step(doc, content(), frozenset({"col_a"}), plan, current, failed_before, previews=True)


def test_in_step_in_no_collection_means_no_file_at_all() -> None:
    none = synced_doc(xai_file_id=None, xai_collections=())
    plan = plan_document(none, content(), frozenset(), None)
    assert plan.in_step
    assert not plan_document(synced_doc(xai_collections=()), content(), frozenset(), None).in_step


def test_cleanup_leaves_stale_collections_and_retires_old_files_everywhere_they_may_be() -> None:
    doc = synced_doc(xai_collections=("col_a", "col_old"))
    current = Membership("file_1", {"col_a": PROCESSED, "col_old": PROCESSED})
    kept = plan_document(doc, content(), frozenset({"col_a"}), current, ("file_1", "file_pending"))
    assert cleanup_steps(kept, "file_1") == [("file_1", "col_old"), ("file_pending", "col_a"),
                                             ("file_pending", "col_old"), ("file_pending", "")]
    replaced = plan_document(doc, content(OTHER_SHA), frozenset({"col_a"}), current, ("file_pending",),
                             local=local_for(doc, collections=("col_host",)))
    assert cleanup_steps(replaced, "file_new") == [
        ("file_1", "col_a"), ("file_1", "col_host"), ("file_1", "col_old"), ("file_1", ""),
        ("file_pending", "col_a"), ("file_pending", "col_host"), ("file_pending", "col_old"), ("file_pending", "")]
    # the upload was adopted: the earlier pending file is the document's file now, never retired
    assert ("file_pending", "") not in cleanup_steps(replaced, "file_pending")


def test_write_back_values_by_where_indexing_stands() -> None:
    done = write_back_values(Indexing.PROCESSED, "", content(), "file_9", frozenset({"col_b", "col_a"}))
    assert done == {"md5": "m" * 32, "sha": SHA, "dateiStatus": "Gesynct", "xaiSyncStatus": "synced",
                    "xaiSyncError": "", "xaiFileId": "file_9", "xaiCollections": ["col_a", "col_b"],
                    "xaiSyncedHash": SHA}
    pending = write_back_values(Indexing.PENDING, "", content(), "file_9", frozenset({"col_a"}))
    assert pending == {"md5": "m" * 32, "sha": SHA, "xaiSyncStatus": "pending", "xaiSyncError": ""}
    failed = write_back_values(Indexing.FAILED, "cannot parse", content(), "file_9", frozenset({"col_a"}))
    assert failed == {"md5": "m" * 32, "sha": SHA, "dateiStatus": "Fehler", "xaiSyncStatus": "failed",
                      "xaiSyncError": "cannot parse"}


def test_a_preview_that_cannot_be_made_is_remembered_an_upload_hiccup_is_not() -> None:
    doc = synced_doc()
    before = local_for(doc, preview_failed=OTHER_SHA)
    assert preview_failed("render_failed: boom", PreviewFailure.RENDER, content(), before) == SHA
    assert preview_failed(Preview.KNOWN_FAILURE, None, content(), before) == SHA
    assert preview_failed(Preview.WRITTEN, None, content(), before) is None
    assert preview_failed(Preview.UNCHANGED, None, content(), before) is None
    assert preview_failed("upload_failed: 503", PreviewFailure.UPLOAD, content(), before) == OTHER_SHA
    assert preview_failed(Preview.OFF, None, content(), before) == OTHER_SHA
    assert preview_failed(None, None, content(), None) is None


def test_what_this_host_remembers_after_the_write_back() -> None:
    doc = synced_doc(xai_collections=("col_old",))
    before = local_for(doc, sha256=OTHER_SHA, md5="o" * 32, file_id="att_old", preview_sha=OTHER_SHA)
    done = remembered_after(doc, content(), "file_9", frozenset({"col_b", "col_a"}), Indexing.PROCESSED,
                            "2025-03-02 10:00:00", before, preview_now=True, preview_failed=None)
    assert done == LocalRecord("doc1", "att1", SHA, "m" * 32, "file_9", ("col_a", "col_b"), "2025-03-02 10:00:00",
                               preview_sha=SHA)
    pending = remembered_after(doc, content(), "file_9", frozenset({"col_a"}), Indexing.PENDING,
                               "2025-03-02 10:00:00", before, preview_now=False, preview_failed=None)
    # what xAI fully holds stays the record: the next run adopts the upload and finishes
    assert (pending.file_id, pending.sha256, pending.xai_file_id, pending.collections, pending.pending,
            pending.failure_code, pending.preview_sha) == ("att_old", OTHER_SHA, "file_1", ("col_old",), True, None,
                                                           OTHER_SHA)
    failed = remembered_after(doc, content(), "file_9", frozenset({"col_a"}), Indexing.FAILED,
                              "2025-03-02 10:00:00", None, preview_now=False, preview_failed=SHA)
    assert (failed.file_id, failed.sha256, failed.failure_code, failed.failure_transient, failed.pending,
            failed.preview_failed) == ("att1", None, "processing_failed", False, False, SHA)


def test_what_this_host_remembers_of_a_verified_and_of_a_failed_document() -> None:
    doc = synced_doc(preview_id="att_p")
    verified = remembered_verified(doc, content(), frozenset({"col_a"}), local_for(doc, preview_failed=OTHER_SHA))
    assert verified == LocalRecord("doc1", "att1", SHA, "m" * 32, "file_1", ("col_a",), doc.modified_at,
                                   preview_sha=SHA, preview_failed=OTHER_SHA)
    failed = remembered_failure(doc, "too_large", False, "2025-03-02 10:00:00", local_for(doc, preview_sha=SHA))
    assert failed == LocalRecord("doc1", "att1", SHA, "m" * 32, "file_1", ("col_a",), "2025-03-02 10:00:00",
                                 failure_code="too_large", failure_transient=False, preview_sha=SHA)
    assert remembered_failure(doc, "transient", True, "t", None).sha256 is None


def test_deletions_are_done_per_file_out_of_each_collection_then_the_file() -> None:
    deletions = [Deletion(member("d2", "file_b", "col_a"), "gone"), Deletion(member("d1", "file_a", "col_b"), "gone"),
                 Deletion(member("d2", "file_b", "col_c"), "gone"), Deletion(member("d3", "file_c", ""), "orphan")]
    assert deletion_steps(deletions) == [
        ("file_a", "d1", [("file_a", "col_b"), ("file_a", "")]),
        ("file_b", "d2", [("file_b", "col_a"), ("file_b", "col_c"), ("file_b", "")]),
        ("file_c", "d3", [("file_c", "")])]


def test_a_journalled_cleanup_is_dropped_while_the_record_still_points_at_the_file() -> None:
    doc = synced_doc(xai_collections=("col_a",))  # points at file_1 in col_a
    assert still_used(doc, "file_1", "col_a") and still_used(doc, "file_1", "")
    assert not still_used(doc, "file_1", "col_old")  # it left that collection: the removal is due
    assert not still_used(doc, "file_old", "")  # the write-back happened: the old file goes
    assert not still_used(None, "file_1", "")  # the document is gone
