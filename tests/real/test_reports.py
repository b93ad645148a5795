"""`check`, `status`, `explain`, `search`, `verify` and `sync --id` against the real EspoCRM (xAI: the emulator).

One small firm, synced once, serves the module: a PDF and a text note of one client, and a "scan" xAI cannot read
(so one document is Fehler). The read-only commands must send no write to EspoCRM (counted by the proxy)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from docsync_sandbox.seed import corpus_dir
from docsync_sandbox.xai import XaiEmulator
from tests.real.realcrm import Admin, Docsync, RealCrm, counting_proxy, members, xai_emulator

CORPUS = corpus_dir()
GUTACHTEN_PHRASE = "Huardest gefburn Kjift"  # words on the first page of the corpus's pdflatex-4-pages.pdf
NOTE = b"Aktennotiz: Berufungsbegruendung bis zum Freitag einreichen, Stellungnahme Gutachter Wasserschaden.\n"
UNRELATED = "Zebrastreifen Quantenchromodynamik Xylophon"


@dataclass
class World:
    admin: Admin
    xai: XaiEmulator
    docsync: Docsync
    collection: str
    account: str
    gutachten: str
    note: str
    scan: str


@pytest.fixture(scope="module")
def world(real: RealCrm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    admin = Admin(real)
    try:
        with xai_emulator() as xai, counting_proxy(real) as proxy:
            collection = xai.create_collection("Mandant Reports")
            account = admin.account("Mandant Reports", collection)
            gutachten = admin.document("Gutachten", (CORPUS / "pdflatex-4-pages.pdf").read_bytes(), "gutachten.pdf",
                                       mime="application/pdf", accounts=[account])
            note = admin.document("Aktennotiz", NOTE, "aktennotiz.txt", mime="text/plain", accounts=[account])
            scan = admin.document("Scan", b"\x00\x17 scanner wrote noise here \xff" * 40, "scan.pdf",
                                  mime="application/pdf", accounts=[account])
            docsync = Docsync(real, xai, tmp_path_factory.mktemp("reports") / "state", proxy,
                              extra=admin.settings())
            first = docsync.run("sync", "--no-preview")
            assert first.returncode == 1, first.stdout + first.stderr  # the unreadable scan fails, by design
            yield World(admin, xai, docsync, collection, account, gutachten, note, scan)
    finally:
        admin.learn_fields()
        admin.cleanup()
        admin.close()


def status_json(world: World) -> dict[str, Any]:
    data: dict[str, Any] = world.docsync.json("status")
    return data


def test_status_counts_what_the_crm_holds_and_lists_the_failure(world: World) -> None:
    world.docsync.clear_journals()
    data = status_json(world)
    assert world.docsync.crm_writes() == []
    assert data["espocrm"] == {"reachable": True, "error": None}
    docs = [world.admin.read(d) for d in (world.gutachten, world.note, world.scan)]
    assert data["documents"]["total"] == 3
    assert data["documents"]["dateiStatus"]["Gesynct"] == 2 and data["documents"]["dateiStatus"]["Fehler"] == 1
    failed = {d["id"]: d for d in data["failed"]["documents"]}
    assert set(failed) == {world.scan}
    assert failed[world.scan]["error"] == docs[2]["xaiSyncError"] and "could not process" in failed[world.scan]["error"]
    assert data["waiting"]["failed_held_back"] == 1 and data["waiting"]["next_run"] == 0
    text = world.docsync.ok("status")
    assert "Gesynct" in text and "Fehler" in text and world.scan in text


def test_check_passes_reads_only_and_names_a_wrong_key(world: World) -> None:
    world.docsync.clear_journals()
    out = world.docsync.ok("check")
    assert "All checks passed." in out
    assert "reachable, key accepted" in out and "Stream notes (GlobalStream): readable" in out
    assert world.docsync.crm_writes() == [] and world.xai.writes() == []
    wrong = world.docsync.run("check", extra_env={"ESPOCRM_API_KEY": "0" * 32})
    assert wrong.returncode == 3, wrong.stdout + wrong.stderr
    assert "ESPOCRM_API_KEY" in wrong.stdout + wrong.stderr


def test_explain_shows_the_collections_the_hashes_and_finds_the_document(world: World) -> None:
    world.docsync.clear_journals()
    out = world.docsync.ok("explain", "--id", world.gutachten)
    assert world.docsync.crm_writes() == [] and world.xai.writes() == []
    doc = world.admin.read(world.gutachten)
    assert world.collection in out and str(doc["xaiFileId"]) in out and str(doc["sha"]) in out
    assert "Next run: nothing to do" in out
    assert f"{world.collection}: found (rank 1)" in out
    failed = world.docsync.ok("explain", "--id", world.scan)
    assert "could not process" in failed and "held back" in failed
    unknown = world.docsync.run("explain", "--id", "0123456789abcdef0")
    assert unknown.returncode == 2 and "no Document with id" in unknown.stderr


def test_search_maps_hits_back_to_crm_documents(world: World) -> None:
    data = world.docsync.json("search", GUTACHTEN_PHRASE)
    top = data["hits"][0]
    assert top["document"] == {"id": world.gutachten, "name": world.admin.label("Gutachten"), "current_file": True}
    assert top["file_id"] == world.admin.read(world.gutachten)["xaiFileId"] and top["managed"] is True
    by_account = world.docsync.json("search", "Berufungsbegruendung Stellungnahme", "--account", world.account)
    assert by_account["collections"] == [world.collection]
    assert by_account["hits"][0]["document"]["id"] == world.note
    assert world.docsync.json("search", UNRELATED)["hits"] == []


def test_verify_finds_every_synced_document(world: World) -> None:
    world.docsync.clear_journals()
    data = world.docsync.json("verify")
    assert world.docsync.crm_writes() == [] and world.xai.writes() == []
    assert data["probed"] == 2 and data["found"] == 2 and data["passed"] is True and data["misses"] == []


def test_sync_id_syncs_only_the_named_document(world: World) -> None:
    other = world.admin.document("Nachtrag", b"Nachtrag zur Akte: Termin verlegt.\n", "nachtrag.txt",
                                 mime="text/plain", accounts=[world.account])
    world.admin.update(world.note, dateiStatus="Geändert")
    world.docsync.clear_journals()
    out = world.docsync.ok("sync", "--no-preview", "--id", world.note)
    assert "1 synced" in out or "1 unchanged" in out, out
    assert world.admin.read(world.note)["dateiStatus"] == "Gesynct"
    assert world.admin.read(other)["dateiStatus"] == "Neu"  # not named: untouched
    assert {e.path for e in world.docsync.proxy.writes()} <= {f"/api/v1/Document/{world.note}"}
    # a held-back failure is retried when an admin names it
    retried = world.docsync.run("sync", "--no-preview", "--id", world.scan)
    assert retried.returncode == 1 and world.admin.read(world.scan)["dateiStatus"] == "Fehler"
    missing = world.docsync.run("sync", "--no-preview", "--id", "0123456789abcdef0")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    world.docsync.ok("sync", "--no-preview", "--id", other)
    assert world.admin.read(other)["dateiStatus"] == "Gesynct"
    assert other in members(world.xai, world.collection)
