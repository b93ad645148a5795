"""EspoCRM contract §2–§5 (docs/contracts.md), as a real EspoCRM 9.2.7 answers them, on both backends: errors and
their reasons, `select`, related lists, attachments (upload, file saver, download), what a person's new record
holds."""

from __future__ import annotations

import base64
import struct
import zlib

import httpx

from tests.contract.backends import PDF, Backend


def reason(response: httpx.Response) -> str | None:
    value = response.headers.get("x-status-reason")
    return None if value is None else str(value)


def test_errors_and_their_reasons(backend: Backend) -> None:
    http = backend.client()
    doc = backend.add_document(backend.unique("Errors"))
    cases = [
        (http.get("Document/nope"), 404, "Record nope does not exist."),
        (http.put("Document/nope", json={"name": "x"}), 404, "Record nope not found."),
        (http.get("Document/nope/accounts"), 404, ""),
        (http.get(f"Document/{doc}/nolink"), 404, "Link does not exist."),
        (http.get("Foo"), 404, "Controller 'Foo' does not exist."),
        (http.get("Document", params={"order": "sideways"}), 400, "order value is bad."),
        (http.get("Document", params={"orderBy": "nope"}), 400, "Order by non-existing field 'nope'."),
        (http.get("Document", params={"primaryFilter": "nope"}), 400, "No primary filter 'nope' for 'Document'."),
        (http.get("Document", params={"searchParams": "{bad"}), 400, "Invalid search params JSON."),
        (http.get("Attachment"), 403, ""),
    ]
    for response, status, text in cases:
        assert (response.status_code, reason(response)) == (status, text), response.request.url
        assert response.content == b""


def test_select_adds_id_the_owner_attributes_and_the_order_attribute(backend: Backend) -> None:
    name = backend.unique("Select")
    backend.add_document(name)
    answer = backend.client().get("Document", params={"select": "name,noSuchAttribute", "where[0][type]": "equals",
                                                      "where[0][attribute]": "name", "where[0][value]": name}).json()
    assert answer["total"] == 1
    assert sorted(answer["list"][0]) == ["assignedUserId", "createdAt", "createdById", "id", "name"]


def test_a_related_list_counts_even_with_x_no_total(backend: Backend) -> None:
    # §4.1: X-No-Total is not honoured for related lists
    doc = backend.add_document(backend.unique("Related"))
    accounts = [backend.add_account(backend.unique("Acme")) for _ in range(3)]
    backend.link(doc, accounts)
    answer = backend.client().get(f"Document/{doc}/accounts", params={"maxSize": 2, "select": "id,name"},
                                  headers={"X-No-Total": "true"}).json()
    assert answer["total"] == 3 and len(answer["list"]) == 2
    back = backend.client().get(f"Account/{accounts[0]}/documents", params={"select": "id"}).json()
    assert [d["id"] for d in back["list"]] == [doc]


def test_upload_attach_replace_and_download(backend: Backend) -> None:
    # §5.2 upload (the role may edit Document and its file field), §5.3 the file saver removes the previous
    # attachment, §5.5 the download's headers
    http = backend.client()
    doc = backend.add_document(backend.unique("Upload"))
    old = http.get(f"Document/{doc}").json()["fileId"]
    content = b"%PDF-1.4 replaced by docsync\n"
    upload = http.post("Attachment", json={
        "name": "neu.pdf", "type": "application/pdf", "role": "Attachment", "relatedType": "Document",
        "field": "file", "file": "data:application/pdf;base64," + base64.b64encode(content).decode()})
    assert upload.status_code == 200
    attachment = upload.json()
    assert sorted(attachment) == sorted([
        "id", "name", "deleted", "type", "size", "field", "isBeingUploaded", "createdAt", "modifiedAt", "role",
        "storage", "storageFilePath", "global", "parentName", "relatedType", "relatedName", "createdById",
        "createdByName"])  # no relatedId/parentId/sourceId in the answer
    assert (attachment["size"], attachment["type"], attachment["field"]) == (len(content), "application/pdf", "file")
    assert attachment["createdById"] == backend.api_user_id()
    answer = http.put(f"Document/{doc}", json={"fileId": attachment["id"]})
    assert answer.status_code == 200
    assert (answer.json()["fileId"], answer.json()["fileName"]) == (attachment["id"], "neu.pdf")
    gone = http.get(f"Attachment/file/{old}")
    assert gone.status_code == 404
    download = http.get(f"Attachment/file/{attachment['id']}")
    assert download.status_code == 200 and download.content == content
    assert download.headers["content-disposition"] == 'attachment; filename="neu.pdf"'
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-length"] == str(len(content))


def test_a_new_document_made_by_a_person(backend: Backend) -> None:
    # what docsync reads of a record a person created with a file and nothing else; array fields never set may
    # be null or [] (§6.1)
    doc = backend.add_document(backend.unique("Fresh"), PDF, "fresh.pdf")
    record = backend.client().get(f"Document/{doc}").json()
    assert record["dateiStatus"] == "Neu" and record["status"] == "Active"
    assert record["xaiSyncStatus"] is None and record["xaiFileId"] is None and record["md5"] is None
    assert record["xaiCollections"] in (None, [])
    assert record["fileName"] == "fresh.pdf" and record["deleted"] is False
    assert record["createdAt"] == record["modifiedAt"]
    assert "accountsIds" not in record  # noLoad (§10.6)


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
            + chunk(b"IEND", b""))


def test_the_preview_image_field_checks_extension_type_and_content(backend: Backend) -> None:
    # §5.2 image fields: the extension's mime must be allowed, equal the sent type and the detected one
    http = backend.client()
    png = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()

    def upload(name: str, mime: str, data: str) -> httpx.Response:
        return http.post("Attachment", json={"name": name, "type": mime, "role": "Attachment",
                                             "relatedType": "Document", "field": "preview", "file": data})

    assert upload("p.png", "image/png", png).status_code == 200
    cases = [(upload("p.png", "image/jpeg", png), "Passed type does not correspond to extension."),
             (upload("p.jpg", "image/jpeg", png), "Detected mime type does not correspond to extension."),
             (upload("p.pdf", "application/pdf", "data:application/pdf;base64,"
                     + base64.b64encode(PDF).decode()), "Not allowed file type.")]
    for response, text in cases:
        assert (response.status_code, reason(response)) == (403, text)
