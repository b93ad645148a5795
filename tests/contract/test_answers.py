"""EspoCRM contract §11.1 (docs/contracts.md): the answers as a real EspoCRM 9.2.7 gives them, on both backends."""

from __future__ import annotations

import base64
import email.utils
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.contract.backends import Backend

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


def test_a_wrong_api_key_is_401_with_an_empty_body(backend: Backend) -> None:
    # §11.1: 401, empty body, Content-type text/html (not JSON), no reason header
    with httpx.Client(base_url=str(backend.client().base_url), headers={"X-Api-Key": "wrong"}) as http:
        response = http.get("App/user")
    assert response.status_code == 401
    assert response.content == b""
    assert "json" not in response.headers.get("content-type", "")
    assert "x-status-reason" not in response.headers


def test_an_enum_value_not_in_the_options_is_a_400_valid(backend: Backend) -> None:
    # §11.1 / §10.1: the whole update is refused
    doc = backend.add_document(backend.unique("Enum"))
    response = backend.client().put(f"Document/{doc}", json={"dateiStatus": "pending", "name": "changed"})
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == (
        "Field validation failure; entityType: Document, field: dateiStatus, type: valid.")
    assert response.json() == {"messageTranslation": {"label": "validationFailure", "scope": None,
                                                      "data": {"field": "dateiStatus", "type": "valid"}}}
    assert backend.client().get(f"Document/{doc}").json()["name"] != "changed"


def test_a_field_the_role_may_not_edit_and_an_unknown_attribute_are_dropped_silently(backend: Backend) -> None:
    # §11.1: 200, no 403; the fixture's role has Document.status read-only
    doc = backend.add_document(backend.unique("Drop"))
    response = backend.client().put(f"Document/{doc}", json={"status": "Expired", "noSuchAttribute": "x",
                                                             "dateiStatus": "Gesynct"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "Active" and body["dateiStatus"] == "Gesynct"
    assert "noSuchAttribute" not in body


def test_max_size_above_the_cap_is_a_403_with_the_reason(backend: Backend) -> None:
    response = backend.client().get("Document", params={"maxSize": 201})
    assert response.status_code == 403
    assert response.headers["x-status-reason"] == "Max size should not exceed 200. Use offset and limit."


def test_where_on_an_attribute_that_does_not_exist_is_a_400(backend: Backend) -> None:
    # §11.2 corrects §10.3: 400, not 403
    response = backend.client().get("Document", params={"where[0][type]": "equals",
                                                       "where[0][attribute]": "nope", "where[0][value]": "1"})
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == "Not existing attribute 'nope' in where."


def test_metadata_of_a_missing_key_is_an_empty_200(backend: Backend) -> None:
    response = backend.client().get("Metadata", params={"key": "entityDefs.Document.fields.noSuchField"})
    assert response.status_code == 200 and response.content == b""
    options = backend.client().get("Metadata", params={"key": "entityDefs.Document.fields.dateiStatus"}).json()
    assert options["type"] == "enum" and options["options"] == ["Neu", "Geändert", "Gesynct", "Fehler"]


def test_a_document_has_no_stream(backend: Backend) -> None:
    doc = backend.add_document(backend.unique("Stream"))
    response = backend.client().get(f"Document/{doc}/stream")
    assert response.status_code == 200
    assert response.json()["list"] == [] and response.json()["total"] == 0


def test_linking_without_edit_access_to_the_account_is_a_403(backend: Backend) -> None:
    doc = backend.add_document(backend.unique("Link"))
    account = backend.add_account(backend.unique("Acme"))
    for method in ("POST", "DELETE"):
        response = backend.client().request(method, f"Document/{doc}/accounts", json={"id": account})
        assert response.status_code == 403
        assert response.headers["x-status-reason"] == (
            "No foreign record access for link operation (Document:accounts).")
        assert response.json()["messageTranslation"]["label"] == "noAccessToForeignRecord"
    assert backend.client().get(f"Document/{doc}/accounts").json()["list"] == []


def test_a_jpeg_for_the_document_file_field_is_not_allowed(backend: Backend) -> None:
    body = {"name": "scan.jpg", "type": "image/jpeg", "role": "Attachment", "relatedType": "Document",
            "field": "file", "file": "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()}
    response = backend.client().post("Attachment", json=body)
    assert response.status_code == 403
    assert response.headers["x-status-reason"] == "Not allowed file type."


def test_the_api_user_creates_and_deletes_nothing(backend: Backend) -> None:
    # the role: Document create/delete "no", Account read only
    doc = backend.add_document(backend.unique("Keep"))
    account = backend.add_account(backend.unique("Acme"))
    http = backend.client()
    for response, reason in ((http.post("Document", json={"name": "x"}), "No create access."),
                             (http.post("Account", json={"name": "x"}), "No create access."),
                             (http.put(f"Account/{account}", json={"name": "y"}), "No edit access."),
                             (http.delete(f"Document/{doc}"), "No delete access.")):
        assert response.status_code == 403
        assert response.headers["x-status-reason"] == reason
    assert http.get(f"Document/{doc}").status_code == 200


def test_x_app_timestamp_is_a_build_stamp_and_date_is_the_time(backend: Backend) -> None:
    http = backend.client()
    first = http.get("App/user")
    doc = backend.add_document(backend.unique("Clock"))
    answer = http.put(f"Document/{doc}", json={"dateiStatus": "Gesynct"})
    assert answer.headers["x-app-timestamp"] == first.headers["x-app-timestamp"]
    # Date and modifiedAt come from one clock on a plain installation (issue 20 measures the difference)
    date = email.utils.parsedate_to_datetime(answer.headers["date"])
    modified = datetime.strptime(answer.json()["modifiedAt"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert abs((date - modified).total_seconds()) <= 2


def test_app_user_acl_is_shaped_as_the_real_server_answers_it(backend: Backend) -> None:
    acl = backend.client().get("App/user").json()["acl"]
    keys = ["read", "stream", "edit", "delete", "create"]
    assert list(acl["table"]["Document"]) == keys and list(acl["table"]["Account"]) == keys
    assert acl["table"]["Document"] == {"read": "all", "stream": "all", "edit": "all", "delete": "no",
                                        "create": "no"}
    assert acl["table"]["Account"] == {"read": "all", "stream": "all", "edit": "no", "delete": "no",
                                       "create": "no"}
    assert acl["table"]["GlobalStream"] is True
    assert acl["fieldTable"]["Document"] == {"status": {"read": "yes", "edit": "no"}}
    assert acl["fieldTableQuickAccess"]["Document"]["attributes"]["edit"] == {"yes": [], "no": ["status"]}
    settings = backend.client().get("App/user").json()["settings"]
    assert settings["recordListMaxSizeLimit"] == 200


def test_json_answers_carry_the_controller_headers(backend: Backend) -> None:
    response = backend.client().get("Document", params={"maxSize": 1, "select": "id"})
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["expires"] == "0"
    assert "no-store" in response.headers["cache-control"]
    assert json.loads(response.content)["list"] is not None


DESIGN_FIELDS = {  # what ../shared/real-espocrm sets up (the design document's fields), and the emulator's default
    "dateiStatus": {"type": "enum", "options": ["Neu", "Geändert", "Gesynct", "Fehler"], "default": "Neu"},
    "md5": {"type": "varchar", "maxLength": 32},
    "sha": {"type": "varchar", "maxLength": 64},
    "xaiFileId": {"type": "varchar", "maxLength": 100},
    "xaiCollections": {"type": "array"},
    "xaiSyncedHash": {"type": "varchar", "maxLength": 64},
    "xaiSyncStatus": {"type": "enum", "options": ["syncing", "synced", "failed"]},
    "xaiSyncError": {"type": "text"},
    "preview": {"type": "image"},
}


def test_metadata_of_the_document_fields(backend: Backend) -> None:
    # §6.3: any API user reads the definitions; custom fields carry isCustom
    fields = backend.client().get("Metadata", params={"key": "entityDefs.Document.fields"}).json()
    for name, expected in DESIGN_FIELDS.items():
        assert {k: v for k, v in fields[name].items() if k in ("type", "options", "maxLength", "default")} == expected
        assert fields[name]["isCustom"] is True
    assert fields["file"]["required"] is True and ".pdf" in fields["file"]["accept"]
    assert fields["status"]["options"] == ["Draft", "Active", "Canceled", "Expired"]
    assert fields["status"]["default"] == "Active" and fields["status"]["activeOptions"] == ["Active"]
    assert fields["accounts"]["noLoad"] is True and fields["accounts"]["directUpdateDisabled"] is True
    account = backend.client().get("Metadata", params={"key": "entityDefs.Account.fields.xaiCollectionId"}).json()
    assert (account["type"], account["maxLength"]) == ("varchar", 100)
    collection = backend.client().get("Metadata", params={"key": "entityDefs.Document.collection"}).json()
    assert (collection["orderBy"], collection["order"]) == ("createdAt", "desc")
    assert not collection.get("countDisabled")


@pytest.mark.parametrize(("body", "field", "kind"), [
    ({"xaiSyncStatus": None}, "xaiSyncStatus", "valid"),
    ({"xaiSyncStatus": ""}, "xaiSyncStatus", "valid"),
    ({"dateiStatus": None}, "dateiStatus", "valid"),
    ({"md5": "a" * 33}, "md5", "maxLength"),
    ({"xaiCollections": [1]}, "xaiCollections", "arrayOfString"),
    ({"xaiCollections": "x"}, "xaiCollections", "array"),
    ({"name": "a<b"}, "name", "pattern"),
    ({"name": ""}, "name", "required"),
    ({"publishDate": "2025-13-45"}, "publishDate", "valid"),
])
def test_values_a_write_back_may_not_send(backend: Backend, body: dict[str, Any], field: str, kind: str) -> None:
    # §10.1/§8: the whole update is refused with 400 validationFailure (an enum without "" takes no null)
    doc = backend.add_document(backend.unique("Invalid"))
    response = backend.client().put(f"Document/{doc}", json={**body, "xaiFileId": "kept-out"})
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == (
        f"Field validation failure; entityType: Document, field: {field}, type: {kind}.")
    assert backend.client().get(f"Document/{doc}").json()["xaiFileId"] is None


def test_values_a_write_back_may_send(backend: Backend) -> None:
    # varchars are trimmed, arrays keep duplicates, text has no length limit, [] is an empty array
    doc = backend.add_document(backend.unique("Valid"))
    answer = backend.client().put(f"Document/{doc}", json={
        "md5": "  padded  ", "xaiCollections": ["a", "a"], "xaiSyncError": "x" * 70_000, "xaiSyncStatus": "failed"})
    assert answer.status_code == 200
    record = answer.json()
    assert record["md5"] == "padded" and record["xaiCollections"] == ["a", "a"]
    assert len(record["xaiSyncError"]) == 70_000
    emptied = backend.client().put(f"Document/{doc}", json={"xaiCollections": []}).json()
    assert emptied["xaiCollections"] == []
    missing = backend.client().put(f"Document/{doc}", json={"previewId": "doesnotexist00000"})
    assert missing.status_code == 403
    assert missing.headers["x-status-reason"] == (
        "Can't relate with non-existing record. entity type: Document, link: preview.")
    assert missing.json()["messageTranslation"]["data"] == {"foreignEntityType": "Attachment"}
