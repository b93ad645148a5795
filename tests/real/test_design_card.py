"""The design card's path against the real EspoCRM: new, changed, a file replaced without a status change, linked,
unlinked, deleted and restored documents, each in step after the run the README promises (a plain run, or the
listing pass where the README says only that sees it). docsync runs as the API-key user through the counting
proxy; records are made and changed by an admin through the REST API; every assertion reads the CRM (as the
admin) or the xAI emulator, never docsync's output alone."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import pytest
from PIL import Image

from docsync_sandbox.http import Callback, Request
from docsync_sandbox.seed import corpus_dir
from docsync_sandbox.xai import XaiEmulator
from tests.faults import faults_of
from tests.real.realcrm import Admin, Docsync, members

CORPUS = corpus_dir()
NOTE = b"Telefonnotiz: Frist am Montag, Akte Zebrafink.\n"


@dataclass
class Firm:
    c1: str
    c2: str
    a1: str
    a2: str
    pdf: str
    docx: str
    note: str


def small_firm(admin: Admin, xai: XaiEmulator) -> Firm:
    """Two clients with a collection each; a PDF (client 1), a DOCX (both) and a text note (client 2, Geändert)."""
    c1, c2 = xai.create_collection("Mandant A"), xai.create_collection("Mandant B")
    a1, a2 = admin.account("Mandant A", c1), admin.account("Mandant B", c2)
    pdf = admin.document("Vertrag", (CORPUS / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                         mime="application/pdf", accounts=[a1])
    docx = admin.document("Klage", (CORPUS / "python-docx-test.docx").read_bytes(), "klage.docx",
                          mime="application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                          accounts=[a1, a2])
    note = admin.document("Notiz", NOTE, "notiz.txt", mime="text/plain", status="Geändert", accounts=[a2])
    return Firm(c1, c2, a1, a2, pdf, docx, note)


def assert_in_step(admin: Admin, xai: XaiEmulator, doc_id: str, collections: set[str]) -> dict[str, object]:
    """The document is Gesynct, its hashes are its file's, and xAI holds exactly that file in exactly its
    collections."""
    doc = admin.read(doc_id)
    content = admin.file_bytes(str(doc["fileId"]))
    assert doc["dateiStatus"] == "Gesynct", doc
    assert doc["xaiSyncStatus"] == "synced" and doc["xaiSyncError"] in ("", None), doc
    assert doc["sha"] == hashlib.sha256(content).hexdigest() == doc["xaiSyncedHash"]
    assert doc["md5"] == hashlib.md5(content).hexdigest()
    assert xai.file_bytes(str(doc["xaiFileId"])) == content
    assert sorted(doc["xaiCollections"] or []) == sorted(collections)
    holding = {c for c in xai.collection_ids() if members(xai, c).get(doc_id) == doc["xaiFileId"]}
    assert holding == collections
    return doc


def test_new_documents_are_synced_with_previews_and_a_second_run_writes_nothing(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    firm = small_firm(admin, xai)
    docsync.ok("check")

    out = docsync.ok("sync")
    assert "3 synced" in out
    assert_in_step(admin, xai, firm.pdf, {firm.c1})
    assert_in_step(admin, xai, firm.docx, {firm.c1, firm.c2})
    assert_in_step(admin, xai, firm.note, {firm.c2})
    for doc_id in (firm.pdf, firm.docx, firm.note):  # the real server took the WebP into the image field
        preview = admin.read(doc_id)["previewId"]
        assert preview, doc_id
        with Image.open(io.BytesIO(admin.file_bytes(str(preview)))) as image:
            assert image.format == "WEBP" and image.width <= 600 and image.height <= 800
    assert docsync.proxy.requests(), "docsync did not go through the counting proxy"

    docsync.clear_journals()
    before = {d: admin.read(d)["modifiedAt"] for d in (firm.pdf, firm.docx, firm.note)}
    again = docsync.ok("sync")
    assert "3 unchanged" in again
    assert docsync.crm_writes() == [] and xai.writes() == []
    assert {d: admin.read(d)["modifiedAt"] for d in before} == before
    assert len(docsync.proxy.requests()) <= 10, [e.raw_path for e in docsync.proxy.requests()]


def test_a_status_edit_and_a_silently_replaced_file_are_picked_up_by_a_plain_run(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    firm = small_firm(admin, xai)
    docsync.ok("sync", "--no-preview")
    old_pdf = str(admin.read(firm.pdf)["xaiFileId"])
    old_note = str(admin.read(firm.note)["xaiFileId"])

    admin.update(firm.note, dateiStatus="Geändert")  # a person asks for a re-sync; the file is the same
    new_pdf = (CORPUS / "libreoffice-writer.pdf").read_bytes()
    admin.replace_file(firm.pdf, new_pdf, "vertrag-v2.pdf", mime="application/pdf")  # status stays Gesynct
    assert admin.read(firm.pdf)["dateiStatus"] == "Gesynct"
    docsync.clear_journals()
    out = docsync.ok("sync", "--no-preview")
    assert "2 synced" in out, out

    pdf = assert_in_step(admin, xai, firm.pdf, {firm.c1})
    assert pdf["sha"] == hashlib.sha256(new_pdf).hexdigest() and pdf["xaiFileId"] != old_pdf
    assert old_pdf not in xai.files()  # the superseded upload is retired
    note = assert_in_step(admin, xai, firm.note, {firm.c2})
    assert note["xaiFileId"] == old_note  # same content: no second upload
    assert not [e for e in xai.writes() if e.path == "/v1/files" and e.method == "POST"][1:]
    # the write-back of the replaced file named the attachment docsync worked on (the fileId guard)
    puts = [e for e in docsync.proxy.writes() if e.path == f"/api/v1/Document/{firm.pdf}"]
    assert puts and any(str(pdf["fileId"]).encode() in e.body for e in puts)


def test_linking_and_unlinking_are_noticed_by_a_plain_run_through_the_stream(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    firm = small_firm(admin, xai)
    docsync.ok("sync", "--no-preview")
    admin.link(firm.note, firm.a1)  # the note now belongs to client 1 as well
    admin.unlink(firm.docx, firm.a2)  # the complaint no longer concerns client 2
    docsync.ok("sync", "--no-preview")
    assert_in_step(admin, xai, firm.note, {firm.c1, firm.c2})
    assert_in_step(admin, xai, firm.docx, {firm.c1})
    assert_in_step(admin, xai, firm.pdf, {firm.c1})


def test_an_account_given_a_collection_brings_its_documents_in(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    firm = small_firm(admin, xai)
    c3 = xai.create_collection("Mandant C")
    a3 = admin.account("Mandant C", None)
    extra = admin.document("Gutachten", (CORPUS / "pdflatex-4-pages.pdf").read_bytes(), "gutachten.pdf",
                           mime="application/pdf", accounts=[a3, firm.a1])
    docsync.ok("sync", "--no-preview")
    assert_in_step(admin, xai, extra, {firm.c1})
    admin.set_account_collection(a3, c3)
    docsync.ok("sync", "--no-preview")
    assert_in_step(admin, xai, extra, {firm.c1, c3})


def test_a_deleted_document_is_retired_and_a_restored_one_comes_back_with_the_listing_pass(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    firm = small_firm(admin, xai)
    docsync.ok("sync", "--no-preview")
    foreign = xai.add_foreign_file_to_collection(firm.c2, "handbuch.txt", b"von Hand hochgeladen")
    gone = str(admin.read(firm.note)["xaiFileId"])

    admin.delete("Document", firm.note)
    out = docsync.ok("sync", "--no-preview")  # the deletion feed: a count, then the id ranges
    assert gone not in xai.files(), out
    assert firm.note not in members(xai, firm.c2)
    assert foreign in xai.collection_documents(firm.c2)  # a file docsync did not upload stays
    assert_in_step(admin, xai, firm.docx, {firm.c1, firm.c2})

    admin.restore("Document", firm.note)  # silent: no modifiedAt, no note (README: only a listing pass sees it)
    docsync.ok("sync", "--no-preview", "--full")
    note = assert_in_step(admin, xai, firm.note, {firm.c2})
    assert note["xaiFileId"] != gone


@pytest.mark.parametrize("how", ["prune", "full"])
def test_prune_and_full_retire_only_what_is_gone(admin: Admin, xai: XaiEmulator, docsync: Docsync,
                                                 how: str) -> None:
    firm = small_firm(admin, xai)
    docsync.ok("sync", "--no-preview")
    gone = str(admin.read(firm.pdf)["xaiFileId"])
    admin.delete("Document", firm.pdf)
    if how == "prune":
        dry = docsync.ok("prune", "--dry-run", code=1)
        assert gone in dry and gone in xai.files()
        docsync.ok("prune")
    else:
        docsync.ok("sync", "--no-preview", "--full")
    assert gone not in xai.files()
    assert_in_step(admin, xai, firm.docx, {firm.c1, firm.c2})
    assert_in_step(admin, xai, firm.note, {firm.c2})


def test_a_file_replaced_while_docsync_works_is_refused_by_the_real_server_and_picked_up_next_run(
        admin: Admin, xai: XaiEmulator, docsync: Docsync) -> None:
    # contract §10.9/§11.2: the write-back names the fileId docsync worked on; EspoCRM deleted that attachment when
    # the person replaced the file, so it refuses to relate it and the old file's hashes never land on the record
    collection = xai.create_collection("Mandant")
    doc_id = admin.document("Vertrag", (CORPUS / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                            mime="application/pdf", accounts=[admin.account("Mandant", collection)])
    replaced = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()

    def replace(request: Request) -> None:
        admin.replace_file(doc_id, replaced, "neu.pdf", mime="application/pdf")

    faults_of(docsync.proxy).add(Callback(replace), method="PUT", path=f"/api/v1/Document/{doc_id}", calls=[1])
    docsync.ok("sync", "--no-preview")
    doc = admin.read(doc_id)
    assert doc["dateiStatus"] == "Neu" and doc["sha"] is None, doc  # nothing of the old file was written
    refused = [e for e in docsync.proxy.requests("PUT", f"/api/v1/Document/{doc_id}") if e.status == 403]
    assert len(refused) == 1
    assert xai.files() == {} and xai.collection_documents(collection) == {}  # the upload was taken back
    docsync.ok("sync", "--no-preview")
    doc = assert_in_step(admin, xai, doc_id, {collection})
    assert doc["sha"] == hashlib.sha256(replaced).hexdigest()
