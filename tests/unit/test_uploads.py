"""``docsync_cli.sync.uploads.Uploads`` at the transport (``MockWorld``): an upload whose answer was lost is looked up
by its marked name and adopted, never blindly repeated; a truncated upload is deleted; an upload nothing may point
at is rolled back out of its collections."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from docsync_cli.model import Content, CrmDocument, LocalRecord
from docsync_cli.state import StateStore
from docsync_cli.sync.services import Services
from docsync_cli.sync.uploads import Uploads
from docsync_cli.xai.client import name_prefix
from tests.fakes import NullLocks
from tests.mock_world import (
    INSTALLATION,
    PROCESSED,
    Fault,
    MockWorld,
    RunFn,
    Sent,
    md5,
    outcomes,
    sha256,
)


def stored_then_500(world: MockWorld) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        world._files(request, Sent("files", "POST", "/v1/files", None))  # the upload lands ...
        return httpx.Response(500, json={"code": "Internal error", "error": "Internal error"})  # ... answer lost
    return fault


def stored_then_dropped(world: MockWorld) -> Fault:
    def fault(request: httpx.Request) -> httpx.Response:
        world._files(request, Sent("files", "POST", "/v1/files", None))
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    return fault


@pytest.mark.parametrize("fault", [stored_then_500, stored_then_dropped], ids=["500", "dropped"])
def test_ambiguous_upload_is_looked_up_and_not_repeated(world: MockWorld, run: RunFn,
                                                        fault: Callable[[MockWorld], Fault]) -> None:
    world.add_doc("d1", b"contract body")
    world.fail("files", "POST", "/v1/files", fault(world))
    summary = run()
    assert outcomes(summary) == {"d1": "synced"}
    assert len(world.requests("files", "POST", "/v1/files")) == 1
    lookups = world.requests("files", "GET", "/v1/files")
    assert len(lookups) == 1
    assert list(world.files) == ["file_0"] and world.records["d1"]["xaiFileId"] == "file_0"
    assert any(a.startswith("adopt file_0") for a in summary.results[0].actions)


def test_lost_upload_that_never_arrived_is_sent_once_more(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", b"contract body")
    world.fail("files", "POST", "/v1/files", lambda r: httpx.Response(500))
    assert outcomes(run()) == {"d1": "synced"}
    assert len(world.requests("files", "POST", "/v1/files")) == 2
    assert list(world.files) == ["file_0"]


def test_replaced_file_during_the_sync_rolls_the_new_upload_back(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", b"first attachment")

    def user_replaces_file(sent: Sent) -> None:
        if str(sent) == "espo GET Document/d1" and world.requests("mgmt", "GET", ".*:batchGet"):
            world.attachments["att-new"] = b"second attachment"
            world.records["d1"].update(fileId="att-new", modifiedAt=world.tick())

    world.before = user_replaces_file
    assert outcomes(run()) == {"d1": "deferred"}
    assert world.files == {} and world.collections["col_a"]["docs"] == {}
    assert [str(s) for s in world.requests(method="DELETE")] == [
        "mgmt DELETE /v1/collections/col_a/documents/file_0", "files DELETE /v1/files/file_0"]
    assert all("xaiFileId" not in p.body for p in world.requests("espo", "PUT"))


def test_truncated_upload_is_deleted_and_fails_transiently(world: MockWorld, run: RunFn) -> None:
    world.add_doc("d1", b"0123456789" * 10)

    def stores_less(request: httpx.Request) -> httpx.Response:
        world._files(request, Sent("files", "POST", "/v1/files", None))
        world.files["file_0"]["bytes"] = 42
        return httpx.Response(200, json=world.files["file_0"])

    world.fail("files", "POST", "/v1/files", stores_less)
    summary = run()
    assert summary.results[0].error_code == "upload_truncated"
    assert world.files == {}
    assert world.requests("mgmt", "POST") == []
    assert world.records["d1"]["dateiStatus"] == "Fehler"


# -- Uploads on its own: the journal, adoption, ownership, rollback ------------------------------------


@pytest.fixture
def uploads(world_services: tuple[Services, StateStore]) -> Uploads:
    services, state = world_services
    return Uploads(services.xai, state, NullLocks())
    state.close()


def crm_doc(doc_id: str = "d1", **values: object) -> CrmDocument:
    return dataclasses.replace(CrmDocument(doc_id, f"Doc {doc_id}", "2025-03-02 10:00:00", file_id=f"att-{doc_id}",
                                           file_name=f"{doc_id}.pdf"), **values)  # type: ignore[arg-type]


def blob(tmp_path: Path, data: bytes) -> tuple[Path, Content]:
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, Content(sha256=sha256(data), md5=md5(data), size=len(data))


def test_an_upload_is_journalled_before_it_is_sent_and_marked_done_after(uploads: Uploads, world: MockWorld,
                                                                     tmp_path: Path) -> None:
    path, content = blob(tmp_path, b"contract body")
    journal: list[tuple[str, str | None] | None] = []
    world.before = lambda sent: journal.append(uploads.state.upload_intent("d1", content.sha256)) if (
        sent.method == "POST" and sent.path == "/v1/files") else None
    actions: list[str] = []
    file_id = uploads.upload(crm_doc(), content, path, actions)
    assert journal and journal[0] is not None and journal[0][1] is None  # started, no file id yet
    assert actions == [f"upload {file_id}"] and uploads.state.upload_intent("d1", content.sha256) == (
        world.files[file_id]["filename"], file_id)
    assert world.files[file_id]["filename"] == f"{name_prefix('d1', content.sha256, INSTALLATION)}-d1.pdf"


def test_a_journalled_upload_is_adopted_and_its_duplicates_deleted(uploads: Uploads, world: MockWorld,
                                                                   tmp_path: Path) -> None:
    path, content = blob(tmp_path, b"contract body")
    name = f"{name_prefix('d1', content.sha256, INSTALLATION)}-d1.pdf"
    world.add_xai_file("file_new", name, b"contract body", {})
    world.add_xai_file("file_old", name, b"contract body", {})
    world.files["file_old"]["created_at"] -= 10
    world.add_xai_file("file_other_size", name, b"other", {})
    uploads.state.upload_started("d1", content.sha256, name)  # an earlier run started it; the answer was lost
    actions: list[str] = []
    assert uploads.upload(crm_doc(), content, path, actions) == "file_old"
    assert actions == ["adopt file_old"]
    assert world.requests("files", "POST", "/v1/files") == []  # never blindly repeated
    assert "file_new" not in world.files and "file_other_size" in world.files


def test_another_installations_upload_is_never_adopted(uploads: Uploads, world: MockWorld, tmp_path: Path) -> None:
    _, content = blob(tmp_path, b"contract body")
    theirs = f"{name_prefix('d1', content.sha256, 'another')}-d1.pdf"
    world.add_xai_file("file_theirs", theirs, b"contract body", {})
    assert uploads.adopt(crm_doc(), content, None) is None
    assert "file_theirs" in world.files


def test_the_ownership_rule(uploads: Uploads, world: MockWorld) -> None:
    doc = crm_doc(xai_file_id="file_1", xai_synced_hash="a" * 64)
    ours = {"crm_document_id": "d1", "installation_id": INSTALLATION, "content_sha256": "a" * 64}
    assert uploads.owns("file_1", doc, {"col_a": ours}, None)
    assert uploads.state.owner("file_1") == "d1"  # remembered from then on
    assert not uploads.owns("file_1", crm_doc("d2"), {}, None)  # this host's record says it is d1's
    other = {"crm_document_id": "d1", "installation_id": "another", "managed_by": "docsync"}
    assert not uploads.owns("file_2", doc, {"col_a": other}, None)
    legacy = {"crm_document_id": "d1", "managed_by": "docsync", "content_sha256": "a" * 64}
    record = LocalRecord("d1", "att-d1", "a" * 64, "m" * 32, "file_3", ("col_a",), None)
    assert not uploads.owns("file_3", doc, {"col_a": legacy}, None)  # an older docsync's, not vouched for
    assert uploads.owns("file_3", dataclasses.replace(doc, xai_file_id="file_3"), {"col_a": legacy}, record)


def test_a_roll_back_takes_the_upload_out_everywhere_and_settles_the_journal(uploads: Uploads, world: MockWorld,
                                                                             tmp_path: Path) -> None:
    path, content = blob(tmp_path, b"contract body")
    file_id = uploads.upload(crm_doc(), content, path, [])
    uploads.roll_back(file_id, frozenset({"col_b", "col_a"}), "d1", content.sha256)
    assert [str(s) for s in world.writes()][1:] == [f"mgmt DELETE /v1/collections/col_a/documents/{file_id}",
                                                    f"mgmt DELETE /v1/collections/col_b/documents/{file_id}",
                                                    f"files DELETE /v1/files/{file_id}"]
    assert uploads.state.owner(file_id) is None and uploads.state.upload_intent("d1", content.sha256) is None


def test_one_cleanup_step_leaves_a_collection_or_deletes_the_file(uploads: Uploads, world: MockWorld) -> None:
    world.add_xai_file("file_1", "x.pdf", b"x", {"col_a": {}})
    uploads.state.own("file_1", "d1", None)
    uploads.take_back("file_1", "col_a")
    assert "file_1" not in world.collections["col_a"]["docs"] and "file_1" in world.files
    uploads.take_back("file_1", "")
    assert "file_1" not in world.files and uploads.state.owner("file_1") is None


def test_the_full_listing_names_only_this_installations_files(uploads: Uploads, world: MockWorld) -> None:
    world.add_xai_file("file_ours", "crm-d1-x.pdf", b"x", {"col_a": {"crm_document_id": "d1",
                                                                     "installation_id": INSTALLATION,
                                                                     "content_sha256": "a" * 64}})
    world.add_xai_file("file_theirs", "crm-d2-x.pdf", b"x", {"col_a": {"crm_document_id": "d2",
                                                                       "installation_id": "another"}})
    world.add_xai_file("file_human", "handbook.pdf", b"x", {"col_a": {}})
    world.add_xai_file("file_recorded", "crm-d3-x.pdf", b"x", {"col_a": {"crm_document_id": "d3"}})
    uploads.state.own("file_recorded", "d3", None)  # an older docsync's upload this host vouches for
    world.add_xai_file("file_orphan", "crm-d4-x.pdf", b"x", {})
    uploads.state.own("file_orphan", "d4", None)
    world.add_xai_file("file_started", "crm-d5-lost.pdf", b"x", {})
    uploads.state.upload_started("d5", "b" * 64, "crm-d5-lost.pdf")  # its answer never came
    world.add_xai_file("file_lookalike", "crm-d6-x.pdf", b"x", {})  # a marked name alone proves nothing
    created = world.files["file_orphan"]["created_at"]
    found = uploads.remote_members(["col_a"], lambda: created + 3600)
    assert [(m.collection_id, m.file_id, m.crm_document_id) for m in found] == [
        ("col_a", "file_ours", "d1"), ("col_a", "file_recorded", "d3"), ("", "file_orphan", "d4"),
        ("", "file_started", "d5")]
    assert found[0].content_sha256 == "a" * 64 and found[0].status == PROCESSED
    assert [m.file_id for m in uploads.remote_members(["col_a"], lambda: created + 3599)] == [
        "file_ours", "file_recorded"]  # files younger than an hour may belong to a run still going on
