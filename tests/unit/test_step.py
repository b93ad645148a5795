"""``docsync_cli.sync.step.DocumentReconciler``: one document brought in step under its lock, end to end at the
transport (the ``world``/``run`` fixtures of ``conftest.py`` over ``tests/mock_world.MockWorld``): the requests in
order, make-before-break, document failures, the processing wait, edits by people during the sync, secrets."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from docsync_cli.outcome import run_code
from docsync_cli.xai.client import name_prefix
from tests.mock_world import (
    ESPO_KEY,
    INSTALLATION,
    MGMT_KEY,
    PROCESSED,
    XAI_KEY,
    MockWorld,
    RunFn,
    Sent,
    md5,
    outcomes,
    sha256,
    synced_world,
)


def position(world: MockWorld, label: str, nth: int = 0) -> int:
    """Index in ``world.sent`` of the ``nth`` request whose ``str()`` is ``label``."""
    found = [i for i, s in enumerate(world.sent) if str(s) == label]
    assert len(found) > nth, f"{label} was not sent (sent: {[str(s) for s in world.sent]})"
    return found[nth]


def test_new_document_requests_in_order(world: MockWorld, run: RunFn) -> None:
    content = b"%PDF-1.4 the contract"
    world.add_doc("d1", content, xaiSyncStatus="synced")  # a status the "syncing" mark can be taken back to
    summary = run()
    assert outcomes(summary) == {"d1": "synced"} and run_code(summary) == 0
    # Every write, exactly and in order.
    assert [str(s) for s in world.writes()] == [
        "espo PUT Document/d1",  # xaiSyncStatus = syncing
        "files POST /v1/files",
        "mgmt PUT /v1/collections/col_a",  # field definitions
        "mgmt POST /v1/collections/col_a/documents/file_0",
        "espo PUT Document/d1",  # the write-back
    ]
    mark, upload, fields, add, _final = world.writes()
    assert mark.body == {"xaiSyncStatus": "syncing"}
    assert upload.body["filename"] == f"{name_prefix('d1', sha256(content), INSTALLATION)}-d1.pdf"
    assert [u["field_definition"]["key"] for u in fields.body["field_definition_updates"]] == [
        "crm_document_id", "content_sha256", "managed_by", "installation_id"]
    assert add.body == {"fields": {"crm_document_id": "d1", "content_sha256": sha256(content),
                                   "managed_by": "docsync", "installation_id": INSTALLATION}}
    # The reads in between, relative to the writes.
    download = position(world, "espo GET Attachment/file/att-d1")
    related = position(world, "espo GET Document/d1/accounts")
    collection = position(world, "mgmt GET /v1/collections/col_a")
    status = position(world, "mgmt GET /v1/collections/col_a/documents:batchGet")
    reread = [i for i, s in enumerate(world.sent) if str(s) == "espo GET Document/d1"][-1]
    i_mark, i_upload, i_fields, i_add, i_final = (world.sent.index(w) for w in world.writes())
    # One Metadata and one App/user request learn the CRM's fields and page cap; then the listing.
    assert [str(s) for s in world.sent[:3]] == ["espo GET Metadata", "espo GET App/user", "espo GET Document"]
    assert download < i_upload and related < i_upload
    assert i_mark < i_upload < collection < i_fields < i_add < status < reread < i_final
    assert i_final == len(world.sent) - 1


def test_new_document_final_write_back(world: MockWorld, run: RunFn) -> None:
    content = b"%PDF-1.4 the contract"
    world.add_doc("d1", content, collections=("col_b", "col_a"))
    run()
    final = world.requests("espo", "PUT", "Document/d1")[-1].body
    assert final == {"dateiStatus": "Gesynct", "md5": md5(content), "sha": sha256(content), "xaiFileId": "file_0",
                     "xaiCollections": ["col_a", "col_b"], "xaiSyncedHash": sha256(content),
                     "xaiSyncStatus": "synced", "xaiSyncError": "", "fileId": "att-d1"}
    assert set(world.collections["col_a"]["docs"]) == set(world.collections["col_b"]["docs"]) == {"file_0"}


def test_second_run_with_nothing_changed_writes_nothing(world: MockWorld, run: RunFn) -> None:
    synced_world(world, run)
    summary = run()
    assert summary.results == [] and summary.plan is not None and summary.plan.unchanged == 1
    assert world.writes() == []


def test_changed_file_is_made_before_the_old_one_is_broken(world: MockWorld, run: RunFn) -> None:
    old_file = synced_world(world, run, content=b"version one")
    world.attachments["att-d1"] = b"version two"
    world.records["d1"]["dateiStatus"] = "Geändert"
    assert outcomes(run()) == {"d1": "synced"}
    assert [str(s) for s in world.writes()] == [
        "espo PUT Document/d1",  # syncing mark
        "files POST /v1/files",  # make: the new file ...
        "mgmt POST /v1/collections/col_a/documents/file_1",  # ... joins the collection
        "espo PUT Document/d1",  # the CRM points at the new file
        f"mgmt DELETE /v1/collections/col_a/documents/{old_file}",  # break: the old one leaves ...
        f"files DELETE /v1/files/{old_file}",  # ... and is deleted
    ]
    assert world.records["d1"]["xaiFileId"] == "file_1"
    assert world.records["d1"]["sha"] == sha256(b"version two")
    assert set(world.collections["col_a"]["docs"]) == {"file_1"} and old_file not in world.files


def test_missing_attachment_marks_fehler_and_the_run_goes_on(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    world.add_doc("d2")
    del world.attachments["att-d1"]
    summary = run()
    assert outcomes(summary) == {"d1": "failed", "d2": "synced"} and run_code(summary) == 1
    d1 = world.records["d1"]
    assert d1["dateiStatus"] == "Fehler" and d1["xaiSyncStatus"] == "failed"
    assert "att-d1 does not exist in EspoCRM" in d1["xaiSyncError"]
    assert summary.results[0].error_code == "file_missing"
    assert world.records["d2"]["dateiStatus"] == "Gesynct"


def test_file_over_the_limit_is_fehler_and_never_uploaded(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", b"x" * 5000)
    summary = run(max_file_bytes=1000)
    assert summary.results[0].error_code == "too_large"
    assert world.records["d1"]["dateiStatus"] == "Fehler"
    assert "not uploaded" in world.records["d1"]["xaiSyncError"]
    assert world.requests("files", "POST") == []


def test_processing_failure_is_fehler_with_xais_message(world: MockWorld, run: RunFn) -> None:
    world.processing = ("DOCUMENT_STATUS_FAILED", "could not extract text from the PDF")
    world.add_doc("d1")
    summary = run()
    assert outcomes(summary) == {"d1": "failed"}
    rec = world.records["d1"]
    assert (rec["dateiStatus"], rec["xaiSyncStatus"]) == ("Fehler", "failed")
    assert "could not extract text from the PDF" in rec["xaiSyncError"]
    assert rec["xaiFileId"] is None  # the record keeps pointing at what xAI fully holds (nothing yet)


def test_processing_past_the_wait_is_pending_not_gesynct(world: MockWorld, run: RunFn) -> None:
    world.processing = ("DOCUMENT_STATUS_PROCESSING", "")
    world.add_doc("d1")
    summary = run(processing_wait_seconds=0)
    assert outcomes(summary) == {"d1": "pending"} and run_code(summary) == 0
    rec = world.records["d1"]
    # The design document's xaiSyncStatus has no "pending": "still indexing" is written as "syncing" (a
    # "pending" write would be refused with 400, EspoCRM contract §10.1) and this host's state says pending.
    assert rec["xaiSyncStatus"] == "syncing" and rec["dateiStatus"] == "Neu"
    assert all(s.body.get("dateiStatus") != "Gesynct" for s in world.requests("espo", "PUT"))
    assert all(s.body.get("xaiSyncStatus") != "pending" for s in world.requests("espo", "PUT"))


def test_pending_is_written_where_the_field_offers_it(world: MockWorld, run: RunFn) -> None:
    world.fields["xaiSyncStatus"] = {"type": "enum", "options": ["", "pending", "syncing", "synced", "failed"]}
    world.processing = ("DOCUMENT_STATUS_PROCESSING", "")
    world.add_doc("d1")
    assert outcomes(run(processing_wait_seconds=0)) == {"d1": "pending"}
    assert world.records["d1"]["xaiSyncStatus"] == "pending"


def test_pending_document_is_finished_by_the_next_run(world: MockWorld, run: RunFn) -> None:
    world.processing = ("DOCUMENT_STATUS_PROCESSING", "")
    world.add_doc("d1")
    run()
    assert world.records["d1"]["dateiStatus"] == "Neu"  # not claimed as synced while xAI still processes
    assert world.records["d1"]["xaiSyncStatus"] == "syncing"  # the design document's fields have no "pending"
    world.collections["col_a"]["docs"]["file_0"]["status"] = PROCESSED
    world.processing = (PROCESSED, "")
    world.sent.clear()
    assert outcomes(run()) == {"d1": "synced"}
    assert world.requests("files", "POST") == []  # the upload is adopted from the journal, not repeated
    assert world.records["d1"]["xaiFileId"] == "file_0"
    assert world.records["d1"]["dateiStatus"] == "Gesynct"


def test_the_syncing_mark_is_taken_back_after_a_run_fatal_error(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", dateiStatus="Geändert", xaiSyncStatus="synced")
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(401))
    summary = run()
    assert run_code(summary) == 3
    assert [s.body for s in world.requests("espo", "PUT", "Document/d1")] == [
        {"xaiSyncStatus": "syncing"}, {"xaiSyncStatus": "synced"}]
    assert world.records["d1"]["dateiStatus"] == "Geändert"


def test_a_data_403_from_espocrm_is_not_an_auth_failure(world: MockWorld, run: RunFn) -> None:
    # EspoCRM contract §10.3: a 403 with a data reason is a problem of that request, healed by a later run
    world.add_doc("d1")
    world.add_doc("d2")
    world.fail("espo", "GET", "Document/d1/accounts", lambda r: httpx.Response(
        403, headers={"X-Status-Reason": "Max size should not exceed 100. Use offset and limit."}))
    summary = run()
    assert summary.fatal is None and outcomes(summary) == {"d1": "failed", "d2": "synced"}
    assert world.records["d1"]["dateiStatus"] == "Fehler"
    assert "Max size should not exceed 100" in world.records["d1"]["xaiSyncError"]
    assert outcomes(run()) == {"d1": "synced"}  # not held back: the next plain run tries again


def test_a_collection_call_refused_by_xai_is_healed_by_the_next_run(world: MockWorld, run: RunFn) -> None:
    # not the document's fault: the refusal concerns ids and docsync's fields, not the content
    world.add_doc("d1")
    world.fail("mgmt", "POST", "/v1/collections/col_a/documents/.*", lambda r: httpx.Response(
        400, json={"code": "Client specified an invalid argument", "error": "Unknown field content_sha256"}))
    assert outcomes(run()) == {"d1": "failed"}
    assert world.records["d1"]["dateiStatus"] == "Fehler"
    assert outcomes(run()) == {"d1": "synced"}


def test_user_edit_during_the_sync_defers_the_write_back(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    def user_edits_before_reread(sent: Sent) -> None:
        if str(sent) == "espo GET Document/d1" and world.requests("mgmt", "GET", ".*:batchGet"):
            world.records["d1"]["name"] = "renamed by a person"
            world.records["d1"]["modifiedAt"] = world.tick()

    world.before = user_edits_before_reread
    summary = run()
    assert outcomes(summary) == {"d1": "deferred"}
    puts = world.requests("espo", "PUT", "Document/d1")
    assert puts[0].body == {"xaiSyncStatus": "syncing"}
    assert all(set(p.body) == {"xaiSyncStatus"} for p in puts)  # only docsync's progress field, never the result
    assert world.records["d1"]["xaiSyncStatus"] != "synced"
    assert (world.records["d1"]["dateiStatus"], world.records["d1"]["name"]) == ("Neu", "renamed by a person")


def test_conflict_on_the_write_back_defers(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", xaiSyncStatus="failed")
    world.fail("espo", "PUT", "Document/d1", lambda r: None)  # the syncing mark goes through
    world.fail("espo", "PUT", "Document/d1", lambda r: httpx.Response(409, headers={"X-Status-Reason": "modified"}))
    assert outcomes(run()) == {"d1": "deferred"}
    assert world.records["d1"]["dateiStatus"] == "Neu"


def test_a_file_replaced_just_before_the_write_back_is_caught_by_the_file_id(world: MockWorld, run: RunFn) -> None:
    # EspoCRM contract §10.9: the write-back carries the fileId docsync worked on; EspoCRM refuses it (the
    # old attachment is gone) and the new upload is taken back out; the next run picks the new file up
    world.add_doc("d1", b"first attachment")

    def replaced(request: httpx.Request) -> httpx.Response:
        world.attachments["att-new"] = b"second attachment"
        world.records["d1"].update(fileId="att-new", modifiedAt=world.tick())
        return httpx.Response(403, headers={"X-Status-Reason": "Can't relate with non-existing record. entity type: "
                                                               "Document, link: file."})

    world.fail("espo", "PUT", "Document/d1", replaced)
    assert outcomes(run()) == {"d1": "deferred"}
    assert world.requests("espo", "PUT", "Document/d1")[0].body["fileId"] == "att-d1"
    assert world.files == {}  # the upload of the replaced content was rolled back
    assert world.records["d1"]["fileId"] == "att-new" and world.records["d1"]["dateiStatus"] == "Neu"
    assert outcomes(run()) == {"d1": "synced"}
    assert world.records["d1"]["sha"] == sha256(b"second attachment")


def test_no_key_appears_in_results_or_crm_errors(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")  # attachment missing
    del world.attachments["att-d1"]
    world.add_doc("d2")  # processing fails
    world.add_doc("d3")  # rejected by xAI
    world.add_doc("d4")  # auth failure stops the run
    world.processing = ("DOCUMENT_STATUS_FAILED", "bad pdf")
    world.fail("files", "POST", "/v1/files", lambda r: None)
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(
        400, json={"code": "Client specified an invalid argument", "error": "Unsupported file format"}))
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(401))
    summary = run()
    assert outcomes(summary) == {"d1": "failed", "d2": "failed", "d3": "failed", "d4": "deferred"}
    texts = [r.detail for r in summary.results] + [str(summary.fatal)] + [world.all_text_sent_back()]
    for key in (ESPO_KEY, XAI_KEY, MGMT_KEY):
        assert all(key not in text for text in texts)


def test_an_unexpected_exception_fails_only_its_document(world: MockWorld, run: RunFn,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    world.add_doc("d1")
    world.add_doc("d2")

    def bug(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug in one code path")

    world.fail("espo", "GET", "Document/d1/accounts", bug)
    with caplog.at_level("INFO", logger="docsync.engine"):
        summary = run()
    assert outcomes(summary) == {"d1": "failed", "d2": "synced"} and run_code(summary) == 1
    failed = summary.results[0] if summary.results[0].doc_id == "d1" else summary.results[1]
    assert failed.error_code == "internal_error" and "RuntimeError" in failed.detail
    assert world.records["d1"]["dateiStatus"] == "Fehler" and "RuntimeError" in world.records["d1"]["xaiSyncError"]
    assert any(r.exc_info for r in caplog.records), "the traceback is logged (shown at -v)"


def test_user_edit_before_the_syncing_mark_defers_instead_of_failing(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    edited: list[bool] = []

    def user_edits_after_listing(sent: Sent) -> None:
        if (sent.service, sent.method, sent.path) == ("espo", "PUT", "Document/d1") and not edited:
            edited.append(True)
            world.records["d1"].update(name="renamed", modifiedAt=world.tick(), versionNumber=2)

    world.before = user_edits_after_listing
    summary = run()
    assert outcomes(summary) == {"d1": "deferred"}
    assert world.records["d1"]["dateiStatus"] == "Neu"


def test_unexpected_field_values_fail_the_document_without_touching_xai(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", xaiCollections=7)
    summary = run()
    assert summary.results[0].error_code == "bad_fields"
    assert "xaiCollections" in world.records["d1"]["xaiSyncError"]
    assert world.requests("files") == world.requests("mgmt") == []
    assert [s.body["dateiStatus"] for s in world.writes()] == ["Fehler"]


def test_download_broken_off_midway_is_retried_and_hashed_afresh(world: MockWorld, run: RunFn) -> None:
    content = b"the whole attachment " * 50

    def breaks_midway(request: httpx.Request) -> httpx.Response:
        def body() -> Iterator[bytes]:
            yield content[:100]
            raise httpx.ReadError("connection reset by peer")
        return httpx.Response(200, content=body())

    world.add_doc("d1", content)
    world.fail("espo", "GET", "Attachment/file/att-d1", breaks_midway)
    assert outcomes(run()) == {"d1": "synced"}
    assert len(world.requests("espo", "GET", "Attachment/file/att-d1")) == 2
    assert (world.records["d1"]["sha"], world.records["d1"]["md5"]) == (sha256(content), md5(content))
    assert world.requests("files", "POST")[0].body["sha256"] == sha256(content)  # the full file went up
