"""``docsync_cli.sync.engine.Engine`` at the run level, end to end at the transport: real ``EspoClient``/``XaiClient``
(built by ``open_services``) over ``httpx.MockTransport`` handlers of one small stateful fake of EspoCRM and xAI
(``tests/mock_world.MockWorld``), a real ``StateStore`` and no-op locks: run-fatal errors, the field check before
any write, run options, deletions, concurrency. One document's reconcile is tested in ``test_step.py``, the
journalled upload, adoption and rollback in ``test_uploads.py``."""

from __future__ import annotations

from pathlib import Path

import httpx

from docsync_cli.config import load_settings
from docsync_cli.errors import AuthError, UnsafePlan
from docsync_cli.model import EngineSettings, RunOptions
from docsync_cli.outcome import run_code
from docsync_cli.state import StateStore
from docsync_cli.sync.engine import Engine
from docsync_cli.sync.services import open_services
from tests.fakes import NullLocks
from tests.mock_world import (
    CRM,
    ESPO_KEY,
    FILES,
    MGMT,
    MGMT_KEY,
    XAI_KEY,
    MockWorld,
    RunFn,
    outcomes,
    sha256,
)

# -- run-fatal errors ----------------------------------------------------------------------------------


def test_401_from_xai_stops_the_run_and_leaves_later_documents_alone(world: MockWorld, run: RunFn) -> None:
    for doc_id in ("d1", "d2", "d3"):
        world.add_doc(doc_id, doc_id.encode() * 10)
    world.fail("files", "POST", "/v1/files", lambda r: None)  # d1 uploads fine
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(
        401, json={"code": "The request does not have valid authentication credentials", "error": "bad key"}))
    summary = run()
    assert run_code(summary) == 3 and isinstance(summary.fatal, AuthError)
    assert outcomes(summary) == {"d1": "synced", "d2": "deferred"}
    assert world.requests("espo", "PUT", "Document/d3") == []
    d2 = world.records["d2"]
    # A "syncing" mark could not be cleared where "" is not an option (EspoCRM refuses "" and null there), so a
    # document without xaiSyncStatus is not marked at all: d2 is untouched and keeps "Neu".
    assert d2["dateiStatus"] == "Neu" and d2["xaiSyncStatus"] is None
    assert world.requests("espo", "PUT", "Document/d2") == []


def test_a_wrong_xai_key_answered_400_is_an_auth_failure_of_the_run(world: MockWorld, run: RunFn) -> None:
    # xAI contract §15: the real service answers a wrong or revoked key with 400 "Incorrect API key provided"
    for doc_id in ("d1", "d2"):
        world.add_doc(doc_id, doc_id.encode() * 10)
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(
        400, json={"code": "Client specified an invalid argument",
                   "error": "Incorrect API key provided: xa***02. You can obtain an API key from https://console.x.ai."}))
    summary = run()
    assert run_code(summary) == 3 and isinstance(summary.fatal, AuthError)
    assert all(rec["dateiStatus"] == "Neu" for rec in world.records.values())  # nothing marked "Fehler"


def test_a_listing_refused_for_a_data_reason_is_a_setup_problem(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    world.fail("espo", "GET", "Document", lambda r: httpx.Response(
        403, headers={"X-Status-Reason": "Max size should not exceed 20. Use offset and limit."}))
    summary = run()
    assert run_code(summary) == 2 and "Max size should not exceed 20" in str(summary.fatal)
    assert world.writes() == []


def test_a_403_with_an_acl_reason_is_an_auth_failure(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    world.fail("espo", "GET", "Document/d1/accounts", lambda r: httpx.Response(
        403, headers={"X-Status-Reason": "No read access."}))
    summary = run()
    assert run_code(summary) == 3 and isinstance(summary.fatal, AuthError)


def test_missing_required_fields_stop_the_run_before_any_write(world: MockWorld, run: RunFn) -> None:
    del world.fields["xaiSyncedHash"]
    world.fields["xaiSyncStatus"] = {"type": "enum", "options": ["synced", "failed"]}
    world.add_doc("d1")
    summary = run()
    assert run_code(summary) == 2 and world.writes() == []
    text = str(summary.fatal)
    assert "xaiSyncedHash" in text and "'syncing'" in text


def test_a_missing_preview_field_matters_only_when_previews_are_made(world: MockWorld, run: RunFn,
                                                                     tmp_path: Path) -> None:
    del world.fields["preview"]
    world.add_doc("d1")
    assert outcomes(run()) == {"d1": "synced"}  # this run makes no previews (previews=None)

    class Never:
        def render(self, source: Path, filename: str) -> bytes:
            raise AssertionError("no render: the run must stop before any work")

    with open_services(load_settings(None, env={
            "ESPOCRM_URL": CRM, "ESPOCRM_API_KEY": ESPO_KEY, "XAI_API_KEY": XAI_KEY, "XAI_MANAGEMENT_KEY": MGMT_KEY,
            "XAI_API_URL": FILES, "XAI_MANAGEMENT_URL": MGMT}), world.transports()) as services:
        state = StateStore(tmp_path / "other-state")
        engine = Engine(services.espo, services.xai, state, NullLocks(), EngineSettings(temp_dir=tmp_path),
                        previews=Never())
        summary = engine.run(RunOptions(ids=frozenset({"d1"})))
        state.close()
    assert run_code(summary) == 2 and "preview" in str(summary.fatal)


def test_the_page_cap_of_app_user_is_the_listing_page_size(world: MockWorld, run: RunFn) -> None:
    # EspoCRM contract §10.4
    world.page_cap = 2
    for n in range(5):
        world.add_doc(f"d{n}")
    assert len(run().results) == 5
    assert set(world.list_sizes) == {2} and len(world.list_sizes) == 3


def test_a_validation_failure_of_the_write_back_stops_the_run_and_leaves_nothing_behind(
        world: MockWorld, run: RunFn) -> None:
    # EspoCRM contract §10.1: a 400 `valid` on docsync's own write is a setup problem, not the document's
    world.add_doc("d1")
    world.add_doc("d2")
    world.fail("espo", "PUT", "Document/d1", lambda r: httpx.Response(400, headers={
        "X-Status-Reason": "Field validation failure; entityType: Document, field: xaiCollections, type: valid."}))
    summary = run()
    assert run_code(summary) == 2
    assert "xaiCollections" in str(summary.fatal) and "['col_a']" in str(summary.fatal)
    assert world.records["d1"]["dateiStatus"] == "Neu"  # keeps its status, not "Fehler"
    assert world.files == {} and world.collections["col_a"]["docs"] == {}  # the upload was taken back out
    assert world.requests("espo", "PUT", "Document/d2") == []  # the run stopped


def test_retry_failed_retries_documents_an_older_version_marked_permanently(world: MockWorld, run: RunFn,
                                                                           tmp_path: Path) -> None:
    world.add_doc("d1", dateiStatus="Fehler", xaiSyncError="Field validation failure; ... xaiSyncStatus")
    world.add_doc("d2", dateiStatus="Fehler")
    from docsync_cli.model import LocalRecord

    state = StateStore(tmp_path / "state")
    for doc_id in ("d1", "d2"):
        state.save(LocalRecord(doc_id, f"att-{doc_id}", None, None, None, (), world.records[doc_id]["modifiedAt"],
                               failure_code="rejected"))
    state.close()
    summary = run()
    assert summary.results == [] and summary.plan is not None and len(summary.plan.held_back) == 2
    assert outcomes(run(RunOptions(retry_failed=True))) == {"d1": "synced", "d2": "synced"}


# -- dry runs, deletions, concurrency ----------------------------------------------------------------


def test_dry_run_writes_nothing(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    summary = run(RunOptions(dry_run=True))
    assert summary.plan is not None and len(summary.plan.work) == 1
    assert world.writes() == [] and summary.results == []


def test_full_run_deletes_only_docsyncs_files_of_documents_gone_from_crm(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", b"one")
    world.add_doc("d2", b"two")
    world.add_doc("d3", b"three")
    run()
    gone = world.records.pop("d3")["xaiFileId"]
    world.add_xai_file("file_human", "handbook.pdf", b"by hand", {"col_a": {}})
    world.sent.clear()
    summary = run(RunOptions(full=True))
    assert summary.deleted == [gone] and run_code(summary) == 0
    deletes = [str(s) for s in world.requests(method="DELETE")]
    assert deletes == [f"mgmt DELETE /v1/collections/col_a/documents/{gone}", f"files DELETE /v1/files/{gone}"]
    assert "file_human" in world.files and "file_human" in world.collections["col_a"]["docs"]


def test_full_run_refuses_to_delete_everything_when_crm_lists_nothing(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    run()
    world.records.clear()
    world.sent.clear()
    summary = run(RunOptions(full=True))
    assert isinstance(summary.fatal, UnsafePlan) and run_code(summary) == 4
    assert world.writes() == []


def test_failed_xai_listing_skips_deletions_but_syncs(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1")
    run()
    world.records["d1"]["dateiStatus"] = "Geändert"
    world.fail("mgmt", "GET", "/v1/collections/col_a/documents", lambda r: httpx.Response(500))
    world.fail("mgmt", "GET", "/v1/collections/col_a/documents", lambda r: httpx.Response(500))
    summary = run(RunOptions(full=True))
    assert any("no deletions" in note for note in summary.notes)
    assert outcomes(summary) == {"d1": "synced"}


def test_several_documents_in_parallel_all_sync(world: MockWorld, run: RunFn) -> None:
    for i in range(6):
        world.add_doc(f"d{i}", f"content {i}".encode(), collections=("col_a", f"col_{i % 2}"))
    summary = run(concurrency=4)
    assert set(outcomes(summary).values()) == {"synced"} and len(summary.results) == 6
    assert {r["xaiSyncedHash"] for r in world.records.values()} == {sha256(f"content {i}".encode())
                                                                     for i in range(6)}


