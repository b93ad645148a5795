"""EspoCRM contract §11.2 (docs/contracts.md): field-level ACL, records hidden from the role, and which stream
notes GlobalStream shows a role, on both backends. Role variants are :class:`RoleSpec` (on the real server a role
and an API user each, made through the admin API)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.contract.backends import PDF, Backend, RoleSpec

FILE_READ_ONLY = RoleSpec(read_only=frozenset({"status", "file"}))
TEAM_READ = RoleSpec(document_read="team")
ACCOUNTS_OWN = RoleSpec(account_read="own", account_stream="own")
ACCOUNTS_NO_STREAM = RoleSpec(account_stream="no")
ACCOUNTS_READ_OWN_STREAM_ALL = RoleSpec(account_read="own", account_stream="all")


def notes(http: httpx.Client, doc: str, max_size: int = 50) -> dict[str, Any]:
    response = http.get("GlobalStream", params={"maxSize": max_size, "where[0][type]": "equals",
                                                "where[0][attribute]": "relatedId", "where[0][value]": doc})
    assert response.status_code == 200, response.headers.get("x-status-reason")
    answer: dict[str, Any] = response.json()
    return answer


def kinds(answer: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["type"], n["parentId"]) for n in answer["list"]]


# -- field-level ACL ----------------------------------------------------------------------------------


def test_a_file_id_the_role_may_not_edit_is_dropped_with_200(backend: Backend) -> None:
    # §11.2 (corrects §10.9): the fileId guard of a write-back vanishes silently
    http = backend.client(FILE_READ_ONLY)
    doc = backend.add_document(backend.unique("Guard"))
    before = http.get(f"Document/{doc}").json()
    response = http.put(f"Document/{doc}", json={"fileId": "doesnotexist00000", "fileName": "x.pdf",
                                                 "dateiStatus": "Gesynct"})
    assert response.status_code == 200
    assert response.json()["fileId"] == before["fileId"] and response.json()["dateiStatus"] == "Gesynct"
    acl = http.get("App/user").json()["acl"]
    assert acl["fieldTable"]["Document"]["file"] == {"read": "yes", "edit": "no"}
    quick = acl["fieldTableQuickAccess"]["Document"]
    assert {"fileId", "fileName"} <= set(quick["attributes"]["edit"]["no"])
    assert "file" in quick["fields"]["edit"]["no"] and "file" in quick["fields"]["read"]["yes"]


def test_the_file_guard_of_a_write_back_after_a_replacement(backend: Backend) -> None:
    # disagreements.md #4: a person replaced the file while docsync worked; docsync's PUT sends the fileId it
    # downloaded. Without field edit access: 200, the other values written, the answer names the new file.
    # With it: 403, because the replacement deleted the attachment that was sent.
    for role, status in ((FILE_READ_ONLY, 200), (RoleSpec(), 403)):
        http = backend.client(role)
        doc = backend.add_document(backend.unique("Replaced"))
        downloaded = http.get(f"Document/{doc}").json()["fileId"]
        new = backend.replace_file(doc, b"%PDF-1.4 replaced by a person\n")
        answer = http.put(f"Document/{doc}", json={"fileId": downloaded, "md5": "0" * 32, "dateiStatus": "Gesynct"})
        assert answer.status_code == status
        after = http.get(f"Document/{doc}").json()
        assert after["fileId"] == new
        if status == 200:
            assert answer.json()["fileId"] == new and after["md5"] == "0" * 32 and after["dateiStatus"] == "Gesynct"
        else:
            assert answer.json()["messageTranslation"]["label"] == "cannotRelateNonExisting"
            assert after["md5"] is None and after["dateiStatus"] == "Neu"


def test_with_field_edit_access_a_missing_file_id_is_refused(backend: Backend) -> None:
    # the default role may edit file: the same PUT is checked (a guard that works), 403 cannotRelateNonExisting
    doc = backend.add_document(backend.unique("Guarded"))
    response = backend.client().put(f"Document/{doc}", json={"fileId": "doesnotexist00000"})
    assert response.status_code == 403
    assert response.json()["messageTranslation"]["label"] == "cannotRelateNonExisting"


def test_an_upload_to_a_field_the_role_may_not_edit_is_403(backend: Backend) -> None:
    body = {"name": "a.txt", "type": "text/plain", "role": "Attachment", "relatedType": "Document",
            "field": "file", "file": "data:text/plain;base64,aGVsbG8="}
    response = backend.client(FILE_READ_ONLY).post("Attachment", json=body)
    assert response.status_code == 403
    assert response.headers["x-status-reason"] == "No access to field 'file'."


# -- a record hidden from the role --------------------------------------------------------------------


def test_a_hidden_document_is_403_and_absent_from_lists_and_counts(backend: Backend) -> None:
    http = backend.client(TEAM_READ)
    name = backend.unique("Hidden")
    docs = [backend.add_document(f"{name} {i}") for i in range(3)]
    where = {"where[0][type]": "startsWith", "where[0][attribute]": "name", "where[0][value]": name}
    file_id = http.get(f"Document/{docs[1]}").json()["fileId"]
    table = http.get("App/user").json()["acl"]["table"]["Document"]
    assert (table["read"], table["edit"]) == ("team", "team")  # what tells docsync some records may be hidden
    backend.hide(docs[1])
    response = http.get(f"Document/{docs[1]}")
    assert response.status_code == 403 and response.headers["x-status-reason"] == "No 'read' access."
    assert response.content == b""
    assert http.put(f"Document/{docs[1]}", json={"dateiStatus": "Gesynct"}).headers["x-status-reason"] == (
        "No edit access.")
    assert http.get(f"Attachment/file/{file_id}").status_code == 403
    listed = http.get("Document", params={**where, "select": "id"}).json()
    assert listed["total"] == 2 and {d["id"] for d in listed["list"]} == {docs[0], docs[2]}
    in_ids = http.get("Document", params={"select": "id", "where[0][type]": "in", "where[0][attribute]": "id",
                                          "where[0][value][]": docs}).json()
    assert in_ids["total"] == 2
    assert http.get("Document/doesnotexist00000").status_code == 404  # gone is 404, hidden is 403
    backend.unhide(docs[1])
    assert http.get(f"Document/{docs[1]}").status_code == 200
    assert http.get("Document", params={**where, "select": "id"}).json()["total"] == 3


# -- GlobalStream: per-parent stream access ---------------------------------------------------------


def test_relate_and_unrelate_notes_and_a_relink_writes_a_new_note(backend: Backend) -> None:
    # §10.7 on 9.2.7: a note per relate/unrelate (either side), no de-duplication (9.1.0 removed it)
    doc = backend.add_document(backend.unique("Notes"))
    account = backend.add_account(backend.unique("Acme"))
    backend.link(doc, [account])
    backend.unlink(doc, account)
    backend.link(doc, [account])
    answer = notes(backend.client(), doc)
    assert kinds(answer) == [("Relate", account), ("Unrelate", account), ("Relate", account)]
    assert answer["total"] == -2
    first = answer["list"][0]
    assert first["parentType"] == "Account" and first["relatedType"] == "Document" and first["relatedId"] == doc
    numbers = [n["number"] for n in answer["list"]]
    assert numbers == sorted(numbers, reverse=True)
    older = backend.client().get("GlobalStream", params={"maxSize": 1, "beforeNumber": numbers[0],
                                                         "where[0][type]": "equals",
                                                         "where[0][attribute]": "relatedId",
                                                         "where[0][value]": doc}).json()
    assert older["total"] == -1 and [n["number"] for n in older["list"]] == [numbers[1]]


def test_global_stream_shows_only_notes_of_accounts_the_role_may_stream(backend: Backend) -> None:
    # §11.2: with Account read/stream "own" only accounts assigned to the API user; HTTP 200 either way
    http = backend.client(ACCOUNTS_OWN)
    doc = backend.add_document(backend.unique("Own"))
    mine = backend.add_account(backend.unique("Mine"), assigned_user_id=backend.api_user_id(ACCOUNTS_OWN))
    theirs = backend.add_account(backend.unique("Theirs"))
    backend.link(doc, [mine, theirs])
    assert sorted(kinds(notes(http, doc))) == [("Relate", mine)]
    table = http.get("App/user").json()["acl"]["table"]["Account"]
    assert (table["read"], table["stream"]) == ("own", "own")
    assert http.get(f"Account/{theirs}").status_code == 403
    assert [a["id"] for a in http.get(f"Document/{doc}/accounts").json()["list"]] == [mine]


def test_global_stream_with_account_stream_no_is_an_empty_200(backend: Backend) -> None:
    http = backend.client(ACCOUNTS_NO_STREAM)
    doc = backend.add_document(backend.unique("NoStream"))
    backend.link(doc, [backend.add_account(backend.unique("Acme"))])
    assert notes(http, doc) == {"total": -2, "list": []}
    assert http.get("App/user").json()["acl"]["table"]["Account"]["stream"] == "no"


def test_stream_all_shows_notes_of_accounts_the_role_may_not_read(backend: Backend) -> None:
    # the stream level alone decides for a note (GlobalRecordService checkEntityStream)
    http = backend.client(ACCOUNTS_READ_OWN_STREAM_ALL)
    doc = backend.add_document(backend.unique("StreamAll"))
    theirs = backend.add_account(backend.unique("Theirs"))
    backend.link(doc, [theirs])
    assert kinds(notes(http, doc)) == [("Relate", theirs)]
    assert http.get(f"Account/{theirs}").status_code == 403


def test_global_stream_ends_early_with_minus_two_after_fifty_filtered_rounds(backend: Backend) -> None:
    # §11.2: each round fetches maxSize+1 notes; a round whose notes are all filtered out moves on; after 50
    # rounds the server answers what it has with total -2. One visible note sits below 100 hidden ones.
    http = backend.client(ACCOUNTS_OWN)
    doc = backend.add_document(backend.unique("Early"), PDF)
    mine = backend.add_account(backend.unique("Mine"), assigned_user_id=backend.api_user_id(ACCOUNTS_OWN))
    backend.link(doc, [mine])
    hidden = [backend.add_account(backend.unique(f"Hidden {i}")) for i in range(100)]
    backend.link(doc, hidden)
    assert notes(http, doc, max_size=1) == {"total": -2, "list": []}  # 50 rounds x 2 notes, all filtered
    assert kinds(notes(http, doc, max_size=2)) == [("Relate", mine)]  # 3 per round reach it in 34
    assert kinds(notes(backend.client(), doc, max_size=1)) != []  # the default role sees them all
