"""Issue 11: docsync touches only what it owns, whatever the CRM says. One test per numbered case, against the
emulators (a shared xAI team used by two installations, duplicated CRM records, hostile CRM values), through the
real engine in-process; the cases about exit codes and printed text run the CLI (``test_safety_cli.py``).

Everything is checked through the emulators' own state, never through docsync's output.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.errors import ForeignInstallation
from docsync_cli.model import Outcome
from docsync_cli.state import ReadOnlyState, installation_id
from docsync_sandbox.seed import Sandbox

from .helpers import pdf_bytes, run_engine, sandbox_running
from .invariants import assert_invariants


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with sandbox_running() as running:
        yield running


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def members(sandbox: Sandbox, collection_id: str) -> set[str]:
    return set(sandbox.xai.collection_documents(collection_id))


def seed(sandbox: Sandbox, n: int, *, accounts: int = 2, label: str = "doc") -> tuple[list[str], list[str]]:
    """``accounts`` client accounts with a collection each and ``n`` documents spread over them (all "Neu")."""
    collections, account_ids = [], []
    for a in range(accounts):
        collections.append(sandbox.xai.create_collection(f"Mandant {a}"))
        account_ids.append(sandbox.espo.add_account(f"Mandant {a}", collections[-1]))
    docs = [sandbox.espo.add_document(f"Dokument {label} {i}", pdf_bytes(f"{label} {i}"), f"{label}-{i}.pdf",
                                      accounts=[account_ids[i % accounts]]) for i in range(n)]
    return collections, docs


def synced(sandbox: Sandbox, state: Path, **env: str) -> None:
    result = run_engine(sandbox, state, full=False, **env)  # type: ignore[arg-type]  # env: DOCSYNC_* only
    assert result.exit_code == 0, result
    assert_invariants(sandbox, all_synced=True)


# -- 1. the --full sweep ------------------------------------------------------------------------------------


def test_full_sweep_leaves_a_hand_made_file_whose_name_looks_like_docsyncs_alone(sandbox: Sandbox,
                                                                                 tmp_path: Path) -> None:
    seed(sandbox, 2)
    synced(sandbox, tmp_path / "state")
    handbook = sandbox.xai.create_collection("Handbuch (von Hand)")
    backup = sandbox.xai.add_foreign_file_to_collection(handbook, "crm-backup-20240101-Protokoll.pdf", b"%PDF-1.4 x")
    loose = sandbox.xai.add_file("crm-archiv-deadbeef-Altakte.pdf", b"%PDF-1.4 y")  # in no collection at all
    sandbox.xai.age_files(7200)  # older than the orphan grace period
    result = run_engine(sandbox, tmp_path / "state", full=True)
    assert result.exit_code == 0, result
    files = sandbox.xai.files()
    assert backup in files and loose in files, "a file docsync did not upload was deleted"
    assert members(sandbox, handbook) == {backup}


def test_staging_sharing_the_xai_team_deletes_nothing_of_production(sandbox: Sandbox, tmp_path: Path) -> None:
    _, docs = seed(sandbox, 10)
    synced(sandbox, tmp_path / "prod")
    before = sandbox.xai.files()
    # Staging: restored from production's backup (same ids, same xai* values), then 4 of 10 documents deleted
    # there (40 %, under the 50 % cap), running its own docsync against the same xAI team.
    staging = sandbox.second_crm()
    staging.restore_from(sandbox.espo)
    for doc_id in docs[:4]:
        staging.delete_document(doc_id)
    sandbox.xai.age_files(7200)
    for _ in range(2):
        # Staging finds production's ownership record on its documents' files: a second installation on the
        # same documents and collections. It adds no copy into production's collections and stops (exit 2).
        result = run_engine(sandbox, tmp_path / "staging", full=True, crm=staging)
        assert result.exit_code == 2, result
        assert isinstance(result.summary.fatal, ForeignInstallation), result
    after = sandbox.xai.files()
    assert set(before) <= set(after), f"staging deleted production files: {sorted(set(before) - set(after))}"
    assert set(after) == set(before), "staging added copies into production's collections"
    # Production is untouched and in step; its plain and --full runs find nothing to repair.
    assert_invariants(sandbox, all_synced=True, installation=installation_id(tmp_path / "prod"))
    assert run_engine(sandbox, tmp_path / "prod", full=True).exit_code == 0
    assert_invariants(sandbox, all_synced=True, installation=installation_id(tmp_path / "prod"))
    assert set(before) <= set(sandbox.xai.files())


# -- 2. duplicated records and foreign xaiFileIds -----------------------------------------------------------


def test_a_duplicated_record_gets_its_own_upload_and_the_original_stays(sandbox: Sandbox, tmp_path: Path) -> None:
    _, docs = seed(sandbox, 1)
    synced(sandbox, tmp_path / "state")
    original = sandbox.espo.document(docs[0])
    copy_same = sandbox.espo.duplicate_document(docs[0], name="Kopie, gleiche Datei")
    copy_changed = sandbox.espo.duplicate_document(docs[0], name="Kopie, neue Datei")
    sandbox.espo.replace_file(copy_changed, pdf_bytes("the copy's own version"))
    sandbox.espo.user_update(copy_changed, dateiStatus="Geändert")
    result = run_engine(sandbox, tmp_path / "state", full=False)
    assert result.exit_code == 0, result
    assert original["xaiFileId"] in sandbox.xai.files(), "the original's xAI file was deleted"
    assert sandbox.espo.document(docs[0])["xaiFileId"] == original["xaiFileId"]
    pointers = [sandbox.espo.document(d)["xaiFileId"] for d in (docs[0], copy_same, copy_changed)]
    assert len(set(pointers)) == 3, f"records share an xAI file: {pointers}"
    assert_invariants(sandbox, all_synced=True)


def test_a_foreign_file_named_in_xai_file_id_is_neither_reused_nor_deleted(sandbox: Sandbox,
                                                                           tmp_path: Path) -> None:
    collections, docs = seed(sandbox, 1, accounts=1)
    content = pdf_bytes("doc 0")
    # Somebody typed the id of a hand-made file (same bytes!) into the record, with a matching hash.
    foreign = sandbox.xai.add_foreign_file_to_collection(collections[0], "Mandantenakte.pdf", content)
    sandbox.espo.user_update(docs[0], dateiStatus="Gesynct", xaiFileId=foreign, xaiSyncedHash=sha256(content),
                             sha=sha256(content), md5=hashlib.md5(content).hexdigest(), xaiSyncStatus="synced",
                             xaiCollections=[collections[0]])
    result = run_engine(sandbox, tmp_path / "state", full=True)
    assert result.exit_code == 0, result
    # Not reused as docsync's, and no second copy of the same content: it waits for `docsync adopt`.
    doc = sandbox.espo.document(docs[0])
    assert doc["xaiFileId"] == foreign and set(sandbox.xai.files()) == {foreign}, "a copy was uploaded beside it"
    assert [r.outcome for r in result.summary.results] == [Outcome.SKIPPED], result
    assert sandbox.xai.document(collections[0], foreign)["fields"] == {}, "the hand-made member was rewritten"
    assert ReadOnlyState(tmp_path / "state").waiting_for_adopt() == 1
    # a changed file must not delete it either
    sandbox.espo.replace_file(docs[0], pdf_bytes("version two"))
    sandbox.espo.user_update(docs[0], dateiStatus="Geändert", xaiFileId=foreign)
    assert run_engine(sandbox, tmp_path / "state", full=True).exit_code == 0
    assert foreign in sandbox.xai.files() and foreign in members(sandbox, collections[0])
    assert ReadOnlyState(tmp_path / "state").waiting_for_adopt() == 0  # it has its own upload now


def test_a_persons_own_use_of_docsyncs_file_in_their_collection_is_left_alone(sandbox: Sandbox,
                                                                             tmp_path: Path) -> None:
    collections, docs = seed(sandbox, 1, accounts=1)
    synced(sandbox, tmp_path / "state")
    file_id = sandbox.espo.document(docs[0])["xaiFileId"]
    reading_list = sandbox.xai.create_collection("Leseliste (von Hand)")
    sandbox.xai.add_member_by_hand(reading_list, file_id)
    sandbox.espo.user_update(docs[0], xaiCollections=[collections[0], reading_list])  # and the CRM names it
    assert run_engine(sandbox, tmp_path / "state", full=True).exit_code == 0
    assert members(sandbox, reading_list) == {file_id}, "docsync undid a membership it did not make"
    record = sandbox.espo.document(docs[0])
    assert (record["dateiStatus"], record["xaiFileId"], record["xaiCollections"]) == (
        "Gesynct", file_id, [collections[0]])  # the CRM is corrected, the person's list stays
    assert file_id in members(sandbox, collections[0])


# -- 3. CRM values never steer a request elsewhere -----------------------------------------------------------


def test_crm_values_cannot_steer_requests_into_other_paths(sandbox: Sandbox, tmp_path: Path) -> None:
    collections, docs = seed(sandbox, 3)
    synced(sandbox, tmp_path / "state")
    handbook = sandbox.xai.create_collection("Handbuch")
    manual = sandbox.xai.add_foreign_file_to_collection(handbook, "Handbuch.pdf", b"%PDF-1.4 manual")
    hostile_collection = f"{handbook}/documents/{manual}?x="
    sandbox.espo.user_update(docs[0], xaiCollections=[collections[0], hostile_collection])
    sandbox.espo.user_update(docs[1], xaiFileId=f"{manual}/../../v1/files/{manual}", dateiStatus="Geändert")
    account = sandbox.espo.add_account("Tippfehler GmbH", "../collections/x")
    sandbox.espo.link(docs[2], "accounts", account)
    sandbox.espo.user_update(docs[2], dateiStatus="Geändert")
    sandbox.xai.clear_journal()
    result = run_engine(sandbox, tmp_path / "state", full=True)
    assert result.exit_code == 1, result
    assert manual in sandbox.xai.files() and manual in members(sandbox, handbook)
    sent = [e.path for e in sandbox.xai.requests()]
    assert not [p for p in sent if handbook in p or manual in p], sent
    errors = {d: str(sandbox.espo.document(d)["xaiSyncError"]) for d in docs}
    assert all(sandbox.espo.document(d)["dateiStatus"] == "Fehler" for d in docs), errors
    assert "xaiCollections" in errors[docs[0]] and "not an xAI collection id" in errors[docs[0]]
    assert "xaiFileId" in errors[docs[1]]
    assert "Tippfehler GmbH" in errors[docs[2]] and "../collections/x" in errors[docs[2]]
    # fixed on the account, the document heals on the next plain run
    sandbox.espo.set_account_collection(account, collections[1])
    run_engine(sandbox, tmp_path / "state", full=False)
    assert sandbox.espo.document(docs[2])["dateiStatus"] == "Gesynct"


# -- 5. superseded versions ----------------------------------------------------------------------------------


def test_a_pending_upload_and_then_a_changed_file_leave_only_the_newest_version(sandbox: Sandbox,
                                                                                tmp_path: Path) -> None:
    collections, docs = seed(sandbox, 1, accounts=1)
    state = tmp_path / "state"
    synced(sandbox, state)
    v1 = sandbox.espo.document(docs[0])["xaiFileId"]
    sandbox.xai.processing_delay = 3600.0  # indexing slower than docsync waits
    sandbox.espo.replace_file(docs[0], pdf_bytes("version 2"))
    sandbox.espo.user_update(docs[0], dateiStatus="Geändert")
    assert run_engine(sandbox, state, full=False, DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS="0").exit_code == 0
    assert len(members(sandbox, collections[0])) == 2  # v1 still searchable, v2 pending
    sandbox.xai.processing_delay = 0.0
    sandbox.espo.replace_file(docs[0], pdf_bytes("version 3"))
    sandbox.espo.user_update(docs[0], dateiStatus="Geändert")
    assert run_engine(sandbox, state, full=False).exit_code == 0
    v3 = sandbox.espo.document(docs[0])["xaiFileId"]
    assert members(sandbox, collections[0]) == {v3}, "a superseded version is still in the collection"
    assert v1 not in sandbox.xai.files()
    assert_invariants(sandbox, all_synced=True)


# -- 8. a collection that does not exist ----------------------------------------------------------------------


def test_a_missing_collection_names_account_and_collection_and_heals_after_the_fix(sandbox: Sandbox,
                                                                                   tmp_path: Path) -> None:
    missing = "collection_00000000-0000-4000-8000-000000000000"
    account = sandbox.espo.add_account("Müller GmbH", missing)
    doc = sandbox.espo.add_document("Vertrag", pdf_bytes("vertrag"), "vertrag.pdf", accounts=[account])
    assert run_engine(sandbox, tmp_path / "state", full=False).exit_code == 1
    record = sandbox.espo.document(doc)
    assert record["dateiStatus"] == "Fehler"
    assert "Müller GmbH" in record["xaiSyncError"] and missing in record["xaiSyncError"], record["xaiSyncError"]
    sandbox.espo.set_account_collection(account, sandbox.xai.create_collection("Mandant Müller"))
    assert run_engine(sandbox, tmp_path / "state", full=False).exit_code == 0  # a plain run heals it
    assert sandbox.espo.document(doc)["dateiStatus"] == "Gesynct"
    assert_invariants(sandbox, all_synced=True)


# -- adoption of uploads made by an older docsync -------------------------------------------------------------


def test_uploads_of_an_older_version_are_adopted_and_then_carry_the_installation_id(sandbox: Sandbox,
                                                                                    tmp_path: Path) -> None:
    collections, docs = seed(sandbox, 2, accounts=1)
    state = tmp_path / "state"
    synced(sandbox, state)
    # What an older docsync left: members without an installation id, and no ownership table.
    with sandbox.xai.lock:
        for document in sandbox.xai._collections[collections[0]].documents.values():
            document.fields.pop("installation_id", None)
    import sqlite3

    with sqlite3.connect(state / "state.sqlite3") as db:
        db.execute("DELETE FROM owned")
    for doc_id in docs:
        sandbox.espo.user_update(doc_id, dateiStatus="Geändert")
    before = {d: sandbox.espo.document(d)["xaiFileId"] for d in docs}
    assert run_engine(sandbox, state, full=True).exit_code == 0
    assert {d: sandbox.espo.document(d)["xaiFileId"] for d in docs} == before, "adopted files were re-uploaded"
    mine = installation_id(state)
    assert {m["fields"].get("installation_id") for m in sandbox.xai.collection_documents(collections[0]).values()
            } == {mine}
    # and from now on a changed file retires the adopted one
    sandbox.espo.replace_file(docs[0], pdf_bytes("newer"))
    sandbox.espo.user_update(docs[0], dateiStatus="Geändert")
    assert run_engine(sandbox, state, full=False).exit_code == 0
    assert before[docs[0]] not in sandbox.xai.files()
    assert_invariants(sandbox, all_synced=True)
