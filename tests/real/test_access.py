"""Who docsync is on the real EspoCRM: the HMAC API user, and roles that hide records from it.

The hiding roles belong to API users the test makes itself (a role, a team, an API user; deleted afterwards), so
the CRM's own docsync role stays as it is: Document read "team" hides every document outside the user's team,
Account read "own" hides every account the user did not create."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from docsync_sandbox.http import Callback, Request
from docsync_sandbox.seed import corpus_dir
from docsync_sandbox.xai import XaiEmulator
from tests.faults import faults_of
from tests.real.proxy import CountingProxy
from tests.real.realcrm import Admin, Docsync, RealCrm, members

NOTE = b"Telefonnotiz: Frist am Montag, Akte Zebrafink.\n"


def role(document: str = "all", account: str = "all") -> dict[str, Any]:
    """The docsync role of the fixture (README of ../shared/real-espocrm) with other read levels."""
    return {"Document": {"create": "no", "read": document, "edit": document, "delete": "no", "stream": document},
            "Account": {"create": "no", "read": account, "edit": "no", "delete": "no", "stream": account},
            "GlobalStream": True}


def as_user(docsync: Docsync, api_key: str) -> Docsync:
    return dataclasses.replace(docsync, crm=dataclasses.replace(docsync.crm, api_key=api_key))


def test_the_hmac_api_user_syncs_and_a_wrong_secret_is_named(admin: Admin, xai: XaiEmulator, real: RealCrm,
                                                             proxy: CountingProxy, tmp_path: Path) -> None:
    if not (real.hmac_api_key and real.secret_key):
        pytest.skip("the CRM has no HMAC API user (ESPOCRM_HMAC_API_KEY, ESPOCRM_SECRET_KEY)")
    docsync = Docsync(real, xai, tmp_path / "state", proxy, hmac=True, extra=admin.settings())
    collection = xai.create_collection("Mandant HMAC")
    account = admin.account("Mandant HMAC", collection)
    doc = admin.document("Notiz", NOTE, "notiz.txt", mime="text/plain", accounts=[account])
    assert "All checks passed." in docsync.ok("check")
    docsync.ok("sync", "--no-preview")
    assert admin.read(doc)["dateiStatus"] == "Gesynct" and doc in members(xai, collection)
    assert all("X-Hmac-Authorization" in e.headers and "X-Api-Key" not in e.headers for e in proxy.requests())
    admin.replace_file(doc, NOTE + b"Nachtrag.\n", "notiz.txt", mime="text/plain")
    docsync.ok("sync", "--no-preview")
    assert admin.read(doc)["sha"] == admin.read(doc)["xaiSyncedHash"]
    wrong = docsync.run("check", extra_env={"ESPOCRM_SECRET_KEY": "f" * 32})
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert "ESPOCRM_SECRET_KEY" in wrong.stdout


@pytest.fixture
def team_user(admin: Admin, docsync: Docsync) -> tuple[Docsync, str]:
    """docsync as an API user whose role reads and edits only its team's documents; and that team."""
    team = admin.team("docsync")
    _, key = admin.api_user("team", role_data=role(document="team"), teams=[team])
    return as_user(docsync, key), team


def test_a_document_the_api_user_may_not_see_is_left_alone_and_explain_says_why(
        admin: Admin, xai: XaiEmulator, team_user: tuple[Docsync, str]) -> None:
    docsync, team = team_user
    collection = xai.create_collection("Mandant Team")
    account = admin.account("Mandant Team", collection)
    seen = admin.document("Sichtbar", NOTE, "sichtbar.txt", mime="text/plain", accounts=[account], teams=[team])
    hidden = admin.document("Verborgen", NOTE + b"geheim\n", "verborgen.txt", mime="text/plain",
                            accounts=[account])
    docsync.ok("sync", "--no-preview", "--full")
    assert admin.read(seen)["dateiStatus"] == "Gesynct"
    untouched = admin.read(hidden)
    assert untouched["dateiStatus"] == "Neu" and untouched["xaiFileId"] is None
    assert set(members(xai, collection)) == {seen}
    assert not [e for e in docsync.proxy.requests() if hidden in e.path]

    explained = docsync.run("explain", "--id", hidden)
    assert explained.returncode == 2, explained.stdout + explained.stderr
    assert "may not read" in explained.stderr and hidden in explained.stderr


def test_a_synced_document_that_becomes_invisible_keeps_its_file(
        admin: Admin, xai: XaiEmulator, team_user: tuple[Docsync, str]) -> None:
    docsync, team = team_user
    collection = xai.create_collection("Mandant Team")
    account = admin.account("Mandant Team", collection)
    docs = [admin.document(f"Akte {n}", NOTE + bytes([65 + n]), f"akte{n}.txt", mime="text/plain",
                           accounts=[account], teams=[team]) for n in range(3)]
    docsync.ok("sync", "--no-preview")
    file_id = str(admin.read(docs[0])["xaiFileId"])
    admin.update(docs[0], teamsIds=[])  # a person takes the document out of the team: it still exists
    docsync.ok("sync", "--no-preview")
    assert file_id in xai.files() and members(xai, collection).get(docs[0]) == file_id


def test_sync_id_of_a_document_the_api_user_may_not_see_says_so(
        admin: Admin, xai: XaiEmulator, team_user: tuple[Docsync, str]) -> None:
    docsync, _ = team_user
    hidden = admin.document("Verborgen", NOTE, "verborgen.txt", mime="text/plain")
    done = docsync.run("sync", "--no-preview", "--id", hidden)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "may not read" in done.stdout + done.stderr and "page cap" not in done.stdout + done.stderr
    assert admin.read(hidden)["dateiStatus"] == "Neu"


@pytest.fixture
def own_accounts_user(admin: Admin, docsync: Docsync) -> Docsync:
    """docsync as an API user whose role reads only its own Accounts (ESPOCRM_ROLE_ACCOUNT_READ=own)."""
    _, key = admin.api_user("own accounts", role_data=role(account="own"))
    return as_user(docsync, key)


def test_check_fails_when_the_role_cannot_see_every_linked_account(own_accounts_user: Docsync) -> None:
    done = own_accounts_user.run("check")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Account read" in done.stdout and "own" in done.stdout


def test_a_role_that_cannot_see_the_accounts_does_not_empty_their_collections(
        admin: Admin, xai: XaiEmulator, docsync: Docsync, own_accounts_user: Docsync) -> None:
    collection = xai.create_collection("Mandant")
    account = admin.account("Mandant", collection)
    doc = admin.document("Akte", NOTE, "akte.txt", mime="text/plain", accounts=[account])
    docsync.ok("sync", "--no-preview")  # the fixture's API user sees every account
    file_id = admin.read(doc)["xaiFileId"]
    narrowed = dataclasses.replace(own_accounts_user, state=docsync.state)  # the same host, its role narrowed
    done = narrowed.run("sync", "--no-preview", "--full")
    assert done.returncode == 2, done.stdout + done.stderr
    assert members(xai, collection) == {doc: file_id}


def test_a_role_that_may_not_edit_the_file_field_loses_the_guard_silently_and_docsync_copes(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    # contract §11.2: the real server drops the fileId of a PUT (HTTP 200) when the role's field level denies
    # edit on `file`; docsync reads App/user's fieldTable, check warns, and a write-back that landed on a file
    # replaced meanwhile is not left claiming "synced" with the old file's hashes
    _, key = admin.api_user("read-only file", role_data=role(),
                            field_data={"Document": {"file": {"read": "yes", "edit": "no"}}})
    docsync = as_user(docsync, key)
    assert "may not edit the Document field 'file'" in docsync.ok("check")
    collection = xai.create_collection("Mandant")
    corpus = corpus_dir()
    doc_id = admin.document("Vertrag", (corpus / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                            mime="application/pdf", accounts=[admin.account("Mandant", collection)])
    replaced = (corpus / "pdflatex-4-pages.pdf").read_bytes()

    def replace(request: Request) -> None:
        admin.replace_file(doc_id, replaced, "neu.pdf", mime="application/pdf")

    faults_of(docsync.proxy).add(Callback(replace), method="PUT", path=f"/api/v1/Document/{doc_id}", calls=[1])
    docsync.ok("sync", "--no-preview")
    first = admin.read(doc_id)
    assert first["xaiSyncStatus"] != "synced", first  # the next run must take it up again
    assert members(xai, collection) == {}  # the upload of the old file was taken back
    docsync.ok("sync", "--no-preview")
    after = admin.read(doc_id)
    assert after["dateiStatus"] == "Gesynct" and after["xaiSyncStatus"] == "synced"
    assert after["sha"] == hashlib.sha256(replaced).hexdigest() == after["xaiSyncedHash"]
    assert members(xai, collection) == {doc_id: after["xaiFileId"]}
