"""Contract tests for the xAI emulator's search, ``POST /v1/documents/search`` (xAI contract §10; errors §2/§3).

Real HTTP on loopback. The emulator must behave like a search service: keyword scoring over the text it
extracted at "processing" (PDF pages, office XML, plain text; images none), ``limit``, ``source.collection_ids``
required, chunks with ``page_number``, the ``{"code", "error"}`` envelope. [I] marks an emulator decision where
the contract is silent (listed in ``docsync_sandbox/xai.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from docsync_sandbox.xai import XaiEmulator
from tests.corpus import CORPUS

API_KEY = "xai-search-key"
MGMT_KEY = "xai-search-management-key"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
CODE_400 = "Client specified an invalid argument"
CODE_401 = "The request does not have valid authentication credentials"
CODE_404 = "Some requested entity was not found"


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (objects and xref written by hand)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    font = 3 + 2 * count
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode())
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture(scope="module")
def server() -> Iterator[XaiEmulator]:
    with XaiEmulator(api_key=API_KEY, management_key=MGMT_KEY) as emulator:
        yield emulator


@pytest.fixture
def emu(server: XaiEmulator) -> XaiEmulator:
    server.reset()
    return server


@pytest.fixture
def api(emu: XaiEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as c:
        yield c


@pytest.fixture
def mgmt(emu: XaiEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.management_url, headers={"Authorization": f"Bearer {MGMT_KEY}"},
                      timeout=10) as c:
        yield c


@pytest.fixture
def coll(mgmt: httpx.Client) -> str:
    resp = mgmt.post("/v1/collections", json={"collection_name": "Mandant", "field_definitions": [
        {"key": "crm_document_id"}, {"key": "managed_by"}]})
    assert resp.status_code == 200, resp.text
    cid: str = resp.json()["collection_id"]
    return cid


def add(api: httpx.Client, mgmt: httpx.Client, cid: str, name: str, content: bytes, crm_id: str = "",
        ctype: str = "application/octet-stream") -> str:
    resp = api.post("/v1/files", files={"file": (name, content, ctype)})
    assert resp.status_code == 200, resp.text
    file_id: str = resp.json()["id"]
    fields = {"crm_document_id": crm_id} if crm_id else {}
    assert mgmt.post(f"/v1/collections/{cid}/documents/{file_id}", json={"fields": fields}).status_code == 200
    return file_id


def search(api: httpx.Client, query: str, cids: list[str], **extra: Any) -> list[dict[str, Any]]:
    resp = api.post("/v1/documents/search", json={"query": query, "source": {"collection_ids": cids}, **extra})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert set(body) == {"matches"}
    matches: list[dict[str, Any]] = body["matches"]
    return matches


def assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "error"} and body["code"] == code


def test_match_shape_and_keyword_ranking(api: httpx.Client, mgmt: httpx.Client, coll: str) -> None:
    # §10 response: file_id, bare-UUID chunk_id (§2), chunk_content, float score, collection_ids, fields,
    # page_number; a chunk with every query term outranks one with a single term; no term → no match
    both = add(api, mgmt, coll, "rev.txt", b"Revenue grew in the last quarter.", "1")
    one = add(api, mgmt, coll, "rev2.txt", b"Revenue of the bakery, unchanged for years.", "2")
    add(api, mgmt, coll, "cats.txt", b"Cats sleep a lot.", "3")
    matches = search(api, "revenue quarter", [coll])
    assert [m["file_id"] for m in matches] == [both, one]
    top = matches[0]
    assert set(top) == {"file_id", "chunk_id", "chunk_content", "score", "collection_ids", "fields", "page_number"}
    assert UUID.match(top["chunk_id"]) and isinstance(top["score"], float) and top["score"] > matches[1]["score"]
    assert top["chunk_content"] == "Revenue grew in the last quarter."
    assert top["collection_ids"] == [coll] and top["fields"] == {"crm_document_id": "1"}
    assert top["page_number"] == 0  # [I] formats without pages
    assert search(api, "zebra xylophone", [coll]) == []


def test_a_search_is_not_a_write(emu: XaiEmulator, api: httpx.Client, mgmt: httpx.Client, coll: str) -> None:
    # §10: search is a read-only POST; the journal's writes() (what "changed nothing" tests assert) skips it
    add(api, mgmt, coll, "a.txt", b"Vollmacht")
    emu.clear_journal()
    search(api, "Vollmacht", [coll])
    assert emu.writes() == [] and [e.method for e in emu.requests()] == ["POST"]


def test_pdf_text_is_read_per_page(api: httpx.Client, mgmt: httpx.Client, coll: str) -> None:
    # §10 page_number + §4 special parsing for PDF: the text of each page, pages numbered from 1 [I]
    pdf = add(api, mgmt, coll, "akte.pdf", make_pdf(["Mietvertrag Wohnung Berlin", "Kaution Nebenkosten Heizung"]))
    hits = search(api, "Nebenkosten", [coll])
    assert [(m["file_id"], m["page_number"]) for m in hits] == [(pdf, 2)]
    assert "Kaution Nebenkosten Heizung" in hits[0]["chunk_content"]
    assert search(api, "mietvertrag", [coll])[0]["page_number"] == 1


def test_office_xml_text_is_searchable_and_images_have_none(api: httpx.Client, mgmt: httpx.Client,
                                                            coll: str) -> None:
    # §4: DOCX/ODT parsed (zip + XML); images carry no text even where their bytes contain words (EXIF)
    docx = add(api, mgmt, coll, "brief.docx", (CORPUS / "python-docx-test.docx").read_bytes())
    odt = add(api, mgmt, coll, "notiz.odt", (CORPUS / "libreoffice-source.odt").read_bytes())
    jpg_bytes = (CORPUS / "exif-Portrait_5.jpg").read_bytes()
    assert b"Exif" in jpg_bytes
    add(api, mgmt, coll, "foto.jpg", jpg_bytes, ctype="image/jpeg")
    assert [m["file_id"] for m in search(api, "python-docx was here", [coll])] == [docx]
    assert [m["file_id"] for m in search(api, "consetetur sadipscing", [coll])] == [odt]
    assert search(api, "Exif", [coll]) == []


def test_only_processed_members_of_the_named_collections_are_found(emu: XaiEmulator, api: httpx.Client,
                                                                   mgmt: httpx.Client, coll: str) -> None:
    # §8: search sees PROCESSED documents; §7.7: a removed document is gone from that collection's results
    other = mgmt.post("/v1/collections", json={"collection_name": "Andere"}).json()["collection_id"]
    fid = add(api, mgmt, coll, "a.txt", b"Grundbuchauszug Flurstueck")
    assert mgmt.post(f"/v1/collections/{other}/documents/{fid}").status_code == 200
    both = search(api, "Flurstueck", [coll, other])
    assert len(both) == 1 and both[0]["collection_ids"] == [coll, other]  # [I] one match per chunk
    assert mgmt.delete(f"/v1/collections/{coll}/documents/{fid}").status_code == 200
    assert search(api, "Flurstueck", [coll]) == []
    assert [m["collection_ids"] for m in search(api, "Flurstueck", [other])] == [[other]]
    emu.processing_delay = 60.0
    fresh = add(api, mgmt, coll, "b.txt", b"Flurstueck neu")
    assert fresh not in {m["file_id"] for m in search(api, "Flurstueck", [coll, other])}


def test_a_silently_lost_index_is_unfindable_until_reindexed(emu: XaiEmulator, api: httpx.Client,
                                                             mgmt: httpx.Client, coll: str) -> None:
    # the failure `docsync verify` exists for: the document says PROCESSED, search does not find it
    fid = add(api, mgmt, coll, "a.txt", b"Vollmacht Erbschein")
    emu.lose_index(coll, fid)
    assert mgmt.get(f"/v1/collections/{coll}/documents/{fid}").json()["status"] == "DOCUMENT_STATUS_PROCESSED"
    assert search(api, "Erbschein", [coll]) == []
    assert mgmt.patch(f"/v1/collections/{coll}/documents/{fid}").status_code == 200
    assert [m["file_id"] for m in search(api, "Erbschein", [coll])] == [fid]


def test_limit_filter_and_long_text_chunks(api: httpx.Client, mgmt: httpx.Client, coll: str) -> None:
    # §10: limit = number of chunks (default 10); filter on bare field keys; long text is chunked
    for i in range(12):
        add(api, mgmt, coll, f"{i}.txt", f"Frist Nummer {i}".encode(), str(i))
    assert len(search(api, "Frist", [coll])) == 10
    assert len(search(api, "Frist", [coll], limit=3)) == 3
    assert [m["fields"] for m in search(api, "Frist", [coll], filter='crm_document_id = "7"')] == [
        {"crm_document_id": "7"}]
    long_text = ("Lorem ipsum dolor sit amet. " * 100 + "Schlusswort Vergleich").encode()
    fid = add(api, mgmt, coll, "long.txt", long_text)
    hits = search(api, "Schlusswort", [coll])
    assert hits[0]["file_id"] == fid and len(hits[0]["chunk_content"]) <= 1000
    assert hits[0]["chunk_content"].endswith("Schlusswort Vergleich")
    assert search(api, "Frist", [coll], retrieval_mode={"type": "keyword"})


def test_request_errors_as_the_service_gives_them(api: httpx.Client, coll: str, emu: XaiEmulator) -> None:
    # §10 required fields → 400; §3: wrong field format 422, no JSON body / Content-Type 415, unknown
    # collection 404, the API key only (§1) → 400 "Incorrect API key provided" for the management key (§15);
    # always {"code","error"}
    url = "/v1/documents/search"
    src = {"collection_ids": [coll]}
    assert_error(api.post(url, json={"source": src}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "  ", "source": src}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "x"}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": {"collection_ids": []}}), 400, CODE_400)
    assert_error(api.post(url, json={"query": 5, "source": src}), 422, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": {"collection_ids": "abc"}}), 422, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": src, "limit": "5"}), 422, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": src, "limit": 0}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": src, "limit": 101}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": src, "retrieval_mode": {"type": "fuzzy"}}), 400,
                 CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": src, "filter": "a ="}), 400, CODE_400)
    assert_error(api.post(url, json={"query": "x", "source": {"collection_ids": ["collection_nope"]}}), 404,
                 CODE_404)
    assert_error(api.post(url, content=b'{"query": "x"}'), 415, CODE_400)
    assert_error(api.post(url, content=b"", headers={"Content-Type": "application/json"}), 415, CODE_400)
    with httpx.Client(timeout=5) as plain:
        wrong = plain.post(f"{emu.api_url}{url}", json={"query": "x", "source": src},
                           headers={"Authorization": f"Bearer {MGMT_KEY}"})
    assert_error(wrong, 400, CODE_400)
    assert "Incorrect API key provided" in wrong.json()["error"]
