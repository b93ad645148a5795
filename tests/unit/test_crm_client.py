"""``docsync_cli.crm.client.EspoClient`` against pytest-httpx stubs shaped like the EspoCRM contract
(``docs/contracts.md``): auth headers (§1.1, §1.2), keyset paging with ``searchParams`` (§2), learning the fields
(the mapping itself: test_espocrm_schema.py), partial conditional updates (§3.2-3.3), downloads (§5.5), related
lists (§4.1), preview uploads (§5.2), readable errors (§1.5)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import logging
import re
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from docsync_cli.config import FieldNames
from docsync_cli.crm.answers import FieldDefinition, StreamNote
from docsync_cli.crm.auth import build_http_client
from docsync_cli.crm.client import EspoClient, id_range
from docsync_cli.crm.reasons import espo_detail
from docsync_cli.crm.schema import ApiUser
from docsync_cli.errors import AuthError, ConflictError, NotFoundError, RejectedError, SetupError
from docsync_cli.model import Presence
from docsync_cli.outcome import error_code
from docsync_cli.transport.http import RetryPolicy, ServiceClient

CRM = "https://crm.example"
API = f"{CRM}/api/v1"
API_KEY = "espo-api-key-1234"
SECRET = "espo-hmac-secret"
DOC_LIST = re.compile(r"https://crm\.example/api/v1/Document\?.*")
RENAMED = {"dateiStatus": "cDateiStatus", "md5": "cMd5", "sha": "cSha", "xaiFileId": "cXaiFileId",
           "xaiCollections": "cXaiCollections", "xaiSyncedHash": "cXaiSyncedHash",
           "xaiSyncStatus": "cXaiSyncStatus", "xaiSyncError": "cXaiSyncError", "preview": "cPreview"}


def make_espo(*, url: str = CRM, secret: str | None = None, renamed: bool = False) -> EspoClient:
    http = build_http_client(url, API_KEY, secret, 30.0)
    service = ServiceClient("espocrm", http, retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0),
                            detail=espo_detail)
    return EspoClient(service, RENAMED if renamed else FieldNames().model_dump())


def record(doc_id: str, **values: Any) -> dict[str, Any]:
    return {"id": doc_id, "name": f"Doc {doc_id}", "modifiedAt": "2025-03-01 12:00:00", "fileId": f"att-{doc_id}",
            "fileName": f"{doc_id}.pdf", "versionNumber": 3, **values}


def search_params(request: httpx.Request) -> dict[str, Any]:
    assert set(request.url.params.keys()) == {"searchParams"}
    decoded: dict[str, Any] = json.loads(request.url.params["searchParams"])
    return decoded


# -- auth ----------------------------------------------------------------------------------------------


def test_api_key_is_sent_in_x_api_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Document/d1", json=record("d1"))
    make_espo().get_document("d1")
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["X-Api-Key"] == API_KEY
    assert "X-Hmac-Authorization" not in request.headers
    assert request.headers["Accept"] == "application/json"


def expected_hmac(method: str, resource_path: str) -> str:
    digest = hmac.new(SECRET.encode(), f"{method} {resource_path}".encode(), hashlib.sha256).hexdigest()
    return base64.b64encode(f"{API_KEY}:{digest}".encode()).decode()


def test_hmac_signs_method_and_path_without_api_base_and_query(httpx_mock: HTTPXMock) -> None:
    doc_url = f"{API}/Document/65f0c1a2b3c4d5e6f"
    httpx_mock.add_response(url=doc_url, json=record("65f0c1a2b3c4d5e6f"))
    httpx_mock.add_response(url=f"{doc_url}?select=id", json=record("65f0c1a2b3c4d5e6f"))
    espo = make_espo(secret=SECRET)
    espo.get_document("65f0c1a2b3c4d5e6f")
    espo.service.call("GET", "Document/65f0c1a2b3c4d5e6f", params={"select": "id"})
    expected = expected_hmac("GET", "/Document/65f0c1a2b3c4d5e6f")
    for request in httpx_mock.get_requests():
        assert request.headers["X-Hmac-Authorization"] == expected
        assert "X-Api-Key" not in request.headers


def test_hmac_strips_an_installation_subdirectory_too(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url="https://crm.example/espo/api/v1/Document/d1", json=record("d1"))
    make_espo(url="https://crm.example/espo", secret=SECRET).update("d1", {"xaiSyncStatus": "syncing"})
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["X-Hmac-Authorization"] == expected_hmac("PUT", "/Document/d1")


def test_401_is_an_auth_error_without_the_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Document/d1", status_code=401)
    with pytest.raises(AuthError) as caught:
        make_espo().get_document("d1")
    assert caught.value.service == "espocrm" and "rejected the credentials" in str(caught.value)
    assert API_KEY not in str(caught.value)


# -- listing -------------------------------------------------------------------------------------------


def test_listing_pages_by_id_keyset_and_stops_on_a_short_page(httpx_mock: HTTPXMock) -> None:
    first = [record(f"id{i:03d}") for i in range(200)]
    second = [record(f"id{i:03d}") for i in range(200, 203)]
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": first})
    httpx_mock.add_response(url=DOC_LIST, json={"total": -2, "list": second})
    espo = make_espo()
    docs = list(espo.iter_documents())
    assert [d.id for d in docs] == [f"id{i:03d}" for i in range(203)]

    page1, page2 = (search_params(r) for r in httpx_mock.get_requests())
    assert page1 == {"maxSize": 200, "offset": 0, "orderBy": "id", "order": "asc",
                     "select": espo.list_attributes, "where": []}
    assert page2["where"] == [{"type": "greaterThan", "attribute": "id", "value": "id199"}]
    assert page2["maxSize"] == 200 and page2["offset"] == 0
    assert all(r.headers["X-No-Total"] == "true" for r in httpx_mock.get_requests())


def test_listing_keeps_a_given_where_on_every_page(httpx_mock: HTTPXMock) -> None:
    condition = {"type": "equals", "attribute": "status", "value": "Active"}
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": [record(f"x{i:03d}") for i in range(200)]})
    httpx_mock.add_response(url=DOC_LIST, json={"total": -2, "list": []})
    list(make_espo().iter_documents(where=[condition]))
    page1, page2 = (search_params(r) for r in httpx_mock.get_requests())
    assert page1["where"] == [condition]
    assert page2["where"] == [condition, {"type": "greaterThan", "attribute": "id", "value": "x199"}]


def test_listing_stops_when_the_server_says_no_more(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": -2, "list": [record(f"y{i:03d}") for i in range(200)]})
    assert len(list(make_espo().iter_documents())) == 200
    assert len(httpx_mock.get_requests()) == 1


def test_listing_without_a_list_is_rejected(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": 0})
    with pytest.raises(RejectedError, match="no 'list'"):
        list(make_espo().iter_documents())


def test_an_id_range_is_at_least_low_and_below_high() -> None:
    assert id_range(None, None) == []
    assert id_range("a", "m") == [{"type": "greaterThanOrEquals", "attribute": "id", "value": "a"},
                                  {"type": "lessThan", "attribute": "id", "value": "m"}]
    assert id_range(None, "m") == [{"type": "lessThan", "attribute": "id", "value": "m"}]


def test_count_reads_total_with_a_one_record_page(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": 42, "list": [record("a")]})
    where = [{"type": "isNull", "attribute": "cSha"}]
    assert make_espo().count(where) == 42
    request = httpx_mock.get_request()
    assert request is not None
    assert search_params(request) == {"maxSize": 1, "offset": 0, "select": ["id"], "where": where}


# -- writing -------------------------------------------------------------------------------------------


def test_update_sends_only_given_attributes_under_configured_names(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url=f"{API}/Document/d1",
                            json=record("d1", cDateiStatus="Gesynct", modifiedAt="2025-03-01 12:00:09"))
    after = make_espo(renamed=True).update("d1", {"dateiStatus": "Gesynct", "xaiSyncError": ""}, version=4)
    request = httpx_mock.get_request()
    assert request is not None
    assert json.loads(request.content) == {"cDateiStatus": "Gesynct", "cXaiSyncError": ""}
    assert request.headers["X-Version-Number"] == "4"
    assert request.headers["Content-Type"] == "application/json"
    assert after.datei_status == "Gesynct" and after.modified_at == "2025-03-01 12:00:09"


def test_update_without_version_is_unconditional(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url=f"{API}/Document/d1", json=record("d1"))
    make_espo().update("d1", {"xaiSyncStatus": "syncing"})
    request = httpx_mock.get_request()
    assert request is not None
    assert "X-Version-Number" not in request.headers
    assert json.loads(request.content) == {"xaiSyncStatus": "syncing"}


def test_update_conflict_is_a_conflict_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PUT", url=f"{API}/Document/d1", status_code=409,
                            headers={"X-Status-Reason": "modified"},
                            json={"values": {"name": "changed"}, "versionNumber": 5})
    with pytest.raises(ConflictError, match="modified"):
        make_espo().update("d1", {"dateiStatus": "Gesynct"}, version=4)
    assert len(httpx_mock.get_requests()) == 1


def test_upload_preview_posts_a_webp_data_uri_for_the_image_field(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=f"{API}/Attachment", json={"id": "att-preview", "name": "v.webp"})
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8 payload"
    assert make_espo(renamed=True).upload_preview("vertrag.webp", webp) == "att-preview"
    request = httpx_mock.get_request()
    assert request is not None
    assert json.loads(request.content) == {
        "name": "vertrag.webp", "type": "image/webp", "role": "Attachment", "relatedType": "Document",
        "field": "cPreview", "file": "data:image/webp;base64," + base64.b64encode(webp).decode()}


def test_upload_preview_without_an_id_in_the_answer_is_rejected(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=f"{API}/Attachment", json={"name": "v.webp"})
    with pytest.raises(RejectedError, match="no attachment id"):
        make_espo().upload_preview("v.webp", b"x")


# -- files and links -----------------------------------------------------------------------------------


def test_download_streams_the_bytes_into_the_sink(httpx_mock: HTTPXMock) -> None:
    body = bytes(range(256)) * 100
    httpx_mock.add_response(url=f"{API}/Attachment/file/att1", content=body,
                            headers={"Content-Type": "application/pdf", "Content-Disposition": 'attachment; x'})
    sink = io.BytesIO()
    make_espo().download("att1", sink)
    assert sink.getvalue() == body
    request = httpx_mock.get_request()
    assert request is not None and request.headers["Accept"] == "*/*"


def test_download_of_a_missing_attachment_is_not_found(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Attachment/file/att1", status_code=404,
                            headers={"X-Status-Reason": "Record att1 does not exist."})
    with pytest.raises(NotFoundError, match="Record att1 does not exist"):
        make_espo().download("att1", io.BytesIO())


def test_related_values_pages_and_drops_empty_values(httpx_mock: HTTPXMock) -> None:
    related = re.compile(r"https://crm\.example/api/v1/Document/d1/accounts\?.*")
    first = [{"id": f"acc{i}", "xaiCollectionId": f"col_{i}" if i % 2 else ""} for i in range(200)]
    second = [{"id": "a1", "xaiCollectionId": "  col_last  "}, {"id": "a2", "xaiCollectionId": None},
              {"id": "a3", "xaiCollectionId": ""}, {"id": "a4", "xaiCollectionId": "   "},
              {"id": "a5", "xaiCollectionId": 7}]
    httpx_mock.add_response(url=related, json={"total": 205, "list": first})
    httpx_mock.add_response(url=related, json={"total": 205, "list": second})
    values = make_espo().related_values("d1", "accounts", "xaiCollectionId")
    assert values == [f"col_{i}" for i in range(1, 200, 2)] + ["col_last"]
    params = [dict(r.url.params) for r in httpx_mock.get_requests()]
    assert params == [{"select": "id,name,xaiCollectionId", "maxSize": "200", "offset": "0"},
                      {"select": "id,name,xaiCollectionId", "maxSize": "200", "offset": "200"}]


def test_related_values_stop_when_total_is_reached(httpx_mock: HTTPXMock) -> None:
    related = re.compile(r"https://crm\.example/api/v1/Document/d1/accounts\?.*")
    httpx_mock.add_response(url=related, json={"total": 200, "list": [{"id": f"a{i}", "xaiCollectionId": None}
                                                                      for i in range(200)]})
    assert make_espo().related_values("d1", "accounts", "xaiCollectionId") == []
    assert len(httpx_mock.get_requests()) == 1


def test_a_linked_record_without_the_selected_attribute_stops_the_run(httpx_mock: HTTPXMock) -> None:
    # §11.1: EspoCRM answers a select of an attribute that does not exist without it (HTTP 200), e.g. when the
    # Entity Manager named the field cXaiCollectionId; read on, every document would be in no collection.
    related = re.compile(r"https://crm\.example/api/v1/Document/d1/accounts\?.*")
    httpx_mock.add_response(url=related, json={"total": 1, "list": [{"id": "a1", "name": "A",
                                                                     "cXaiCollectionId": "col_1"}]})
    with pytest.raises(SetupError) as caught:
        make_espo().related_values("d1", "accounts", "xaiCollectionId")
    assert "no attribute 'xaiCollectionId'" in str(caught.value) and "cXaiCollectionId" in caught.value.advice
    httpx_mock.add_response(url=f"{API}/Account/a1?select=id%2CxaiCollectionId", json={"id": "a1"})
    with pytest.raises(SetupError):
        make_espo().record_value("Account", "a1", "xaiCollectionId")


# -- errors --------------------------------------------------------------------------------------------


def test_html_error_page_gives_a_readable_error_without_the_page(httpx_mock: HTTPXMock) -> None:
    page = "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1>" + "<p>nginx</p>" * 200 + "</body></html>"
    httpx_mock.add_response(url=f"{API}/Document/d1", status_code=403, text=page,
                            headers={"Content-Type": "text/html"})
    with pytest.raises(AuthError) as caught:
        make_espo().get_document("d1")
    message = str(caught.value)
    assert "an HTML page instead of an API answer" in message
    assert "<" not in message and "nginx" not in message


def test_status_reason_header_becomes_the_error_detail(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, status_code=400, headers={"X-Status-Reason": "order value is bad."})
    with pytest.raises(RejectedError, match="order value is bad"):
        list(make_espo().iter_documents())


# -- fidelity: the CRM's own definitions, errors by meaning (contract §10) ----------------------------------


DESIGN_FIELDS = {
    "cDateiStatus": {"type": "enum", "options": ["Neu", "Geändert", "Gesynct", "Fehler"]},
    **{f"c{n}": {"type": "varchar", "maxLength": 100} for n in ("Md5", "Sha", "XaiFileId", "XaiSyncedHash")},
    "cXaiCollections": {"type": "array"}, "cXaiSyncError": {"type": "text"},
    "cXaiSyncStatus": {"type": "enum", "options": ["syncing", "synced", "failed"]},
    "cPreview": {"type": "file"},
}


def test_learn_reads_the_fields_once_and_finds_c_prefixed_names_and_the_page_cap(httpx_mock: HTTPXMock) -> None:
    # §10.1 options, §10.4 App/user settings.recordListMaxSizeLimit, §6.2 c-prefixed custom fields
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields", json=DESIGN_FIELDS)
    httpx_mock.add_response(url=f"{API}/App/user", json={"settings": {"recordListMaxSizeLimit": 50}})
    espo = make_espo()
    schema = espo.learn()
    assert espo.learn() is schema and len(httpx_mock.get_requests()) == 2  # cached for the run
    assert espo.attributes["dateiStatus"] == "cDateiStatus" and espo.preview_attr == "cPreviewId"
    assert schema.preview_type == "file" and espo.page_size == 50 and schema.problems == ()
    httpx_mock.add_response(url=DOC_LIST, json={"total": -2, "list": [record("d1", cDateiStatus="Neu")]})
    assert [d.datei_status for d in espo.iter_documents()] == ["Neu"]
    assert search_params(httpx_mock.get_requests()[-1])["maxSize"] == 50


def test_found_c_prefixed_names_are_logged_in_one_line_per_run(httpx_mock: HTTPXMock,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # a timer runs docsync every minute: one line that names every found field, not one line per field
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields", json=DESIGN_FIELDS)
    httpx_mock.add_response(url=f"{API}/App/user", json={"settings": {"recordListMaxSizeLimit": 50}})
    with caplog.at_level(logging.INFO, logger="docsync"):
        make_espo().learn()
    lines = [r.getMessage() for r in caplog.records if "prefixes custom fields" in r.getMessage()]
    assert len(lines) == 1
    assert "cDateiStatus for dateiStatus" in lines[0] and "cPreview for preview" in lines[0]


def test_an_empty_metadata_answer_means_absent(httpx_mock: HTTPXMock) -> None:
    # §10.2: 200 with an empty body for a missing key
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.links.nope", content=b"")
    assert make_espo().metadata("entityDefs.Document.links.nope") is None


def test_link_entity_and_entity_fields_are_typed_answers(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.links.accounts",
                            json={"type": "hasMany", "entity": "Account", "foreign": "documents"})
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.links.nope", content=b"")
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Account.fields",
                            json={"xaiCollectionId": {"type": "varchar", "maxLength": 100}, "odd": []})
    espo = make_espo()
    assert espo.link_entity("accounts") == "Account" and espo.link_entity("nope") is None
    assert espo.entity_fields("Account") == {
        "xaiCollectionId": FieldDefinition("varchar", {"type": "varchar", "maxLength": 100})}


@pytest.mark.parametrize(("answer", "active"), [(b"false", True), (b"true", False), (b"", False)])
def test_the_accounts_override_is_active_only_with_no_load_false(httpx_mock: HTTPXMock, answer: bytes,
                                                                   active: bool) -> None:
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields.accounts.noLoad", content=answer)
    assert make_espo().accounts_override() is active


def test_a_stream_page_is_typed_and_bounded_by_number(httpx_mock: HTTPXMock) -> None:
    # §10.7: newest first; beforeNumber pages on (sync/stream_feed.py pages: tests/unit/test_stream_feed.py)
    espo = make_espo()
    espo.page_size = 2
    httpx_mock.add_response(url=re.compile(rf"{API}/GlobalStream\?.*beforeNumber=9"), json={"total": -1, "list": [
        {"id": "n8", "number": 8, "type": "Relate", "relatedType": "Document", "relatedId": "d1"},
        {"id": "n7", "number": "7", "relatedType": "Document", "relatedId": 5}]})
    notes, total = espo.stream_page(3, ("Relate", "Unrelate"), ("Account",), before=9, up_to=20)
    assert notes == [StreamNote("n8", 8, "Document", "d1"), StreamNote("n7", None, "Document", None)]
    assert total == -1 and [n.document_id for n in notes] == ["d1", None]
    where = json.loads(httpx_mock.get_requests()[0].url.params["searchParams"])["where"]
    assert where[:2] == [{"type": "greaterThan", "attribute": "number", "value": 3},
                         {"type": "lessThanOrEquals", "attribute": "number", "value": 20}]


def test_without_a_cursor_only_the_newest_note_is_read(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/GlobalStream?maxSize=1", json={"list": [{"id": "n9", "number": 9}]})
    assert make_espo().stream_page(None, (), ()) == ([StreamNote("n9", 9)], None)


def test_update_never_sends_a_value_the_field_refuses(httpx_mock: HTTPXMock) -> None:
    # §10.1: "pending" becomes "syncing" where it is not an option; "" and null are left out where "" is not one
    espo = make_espo()  # not learned: the design document's options are assumed
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", json=record("d1"))
    espo.update("d1", {"xaiSyncStatus": "pending", "xaiSyncError": "", "dateiStatus": ""}, file_id="att-d1")
    sent = httpx_mock.get_request()
    assert sent is not None
    assert json.loads(sent.content) == {"xaiSyncStatus": "syncing", "xaiSyncError": "", "fileId": "att-d1"}


def test_a_validation_failure_of_docsyncs_write_is_a_setup_error_naming_field_and_value(
        httpx_mock: HTTPXMock) -> None:
    from docsync_cli.errors import SetupError

    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", status_code=400, headers={
        "X-Status-Reason": "Field validation failure; entityType: Document, field: md5, type: maxLength."},
        json={"messageTranslation": {"label": "validationFailure", "scope": None,
                                     "data": {"field": "md5", "type": "maxLength"}}})
    with pytest.raises(SetupError) as caught:
        make_espo().update("d1", {"md5": "a" * 32})
    assert error_code(caught.value) == 2 and "md5 = 'aaaa" in str(caught.value) and "maxLength" in str(caught.value)


@pytest.mark.parametrize(("reason", "auth"), [
    ("", True), ("No read access.", True), ("No edit access.", True),
    ("Field 'preview' does not exist.", False), ("Not allowed file type.", False),
    ("Max size should not exceed 100. Use offset and limit.", False),
    ("No access to field 'xaiSyncError'.", False),
])
def test_a_403_is_classified_by_its_reason(httpx_mock: HTTPXMock, reason: str, auth: bool) -> None:
    # §10.3: a 403 with a data reason is a problem of that request; ACL reasons (or none) are auth failures
    headers = {"X-Status-Reason": reason} if reason else {}
    httpx_mock.add_response(url=f"{API}/Document/d1", status_code=403, headers=headers)
    with pytest.raises(AuthError if auth else RejectedError):
        make_espo().get_document("d1")


def test_a_replaced_file_refusing_the_write_back_is_a_conflict(httpx_mock: HTTPXMock) -> None:
    # §10.9: the fileId docsync worked on no longer exists
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", status_code=403, headers={
        "X-Status-Reason": "Can't relate with non-existing record. entity type: Document, link: file."})
    with pytest.raises(ConflictError):
        make_espo().update("d1", {"md5": "a" * 32}, file_id="att-old")


def test_a_user_without_edit_access_to_the_file_field_still_gets_its_write_back(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", status_code=403,
                            headers={"X-Status-Reason": "No access to field 'file'."})
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", json=record("d1"))
    make_espo().update("d1", {"md5": "a" * 32}, file_id="att-d1")
    first, second = httpx_mock.get_requests()
    assert json.loads(first.content)["fileId"] == "att-d1" and json.loads(second.content) == {"md5": "a" * 32}


def test_a_write_back_that_landed_on_a_replaced_file_is_a_conflict(httpx_mock: HTTPXMock) -> None:
    # §11.2: without field edit access to `file` EspoCRM drops the fileId silently (200); the answer then names
    # the file a person put there meanwhile
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", json=record("d1", fileId="att-new"))
    with pytest.raises(ConflictError):
        make_espo().update("d1", {"md5": "a" * 32}, file_id="att-old")
    httpx_mock.add_response(url=f"{API}/Document/d1", method="PUT", json=record("d1", fileId="att-old"))
    assert make_espo().update("d1", {"md5": "a" * 32}, file_id="att-old").file_id == "att-old"


def test_app_user_is_a_typed_api_user_and_learn_keeps_it(httpx_mock: HTTPXMock) -> None:
    # §1.3 App/user `user`, §7.2 the role's ACL table, §10.4 the page cap: the client hides the answer's shape.
    answer = {"user": {"id": "u", "type": "api", "userName": "docsync-api", "name": "Docsync"},
              "acl": {"table": {"Document": {"read": "all", "edit": "no"}, "GlobalStream": False}},
              "settings": {"recordListMaxSizeLimit": 80}}
    httpx_mock.add_response(url=f"{API}/App/user", json=answer)
    espo = make_espo()
    user = espo.app_user()
    assert user == ApiUser(user_name="docsync-api", name="Docsync", page_cap=80, acl_known=True,
                           disabled_scopes=frozenset({"GlobalStream"}), denied=frozenset({("Document", "edit")}))
    assert espo.api_user is None  # asking is not learning
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields", json=DESIGN_FIELDS)
    httpx_mock.add_response(url=f"{API}/App/user", json=answer)
    espo.learn()
    assert espo.api_user == user and espo.page_size == 80


def test_learn_without_app_user_keeps_the_default_page_and_no_user(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields", json=DESIGN_FIELDS)
    httpx_mock.add_response(url=f"{API}/App/user", status_code=404)
    espo = make_espo()
    espo.learn()
    assert espo.api_user is None and espo.page_size == 200


def test_learn_tolerates_espocrm_8_0_which_ignores_the_key(httpx_mock: HTTPXMock) -> None:
    # §10.2: on 8.0 and 8.1 `key` is ignored and the whole tree comes back
    httpx_mock.add_response(url=f"{API}/Metadata?key=entityDefs.Document.fields",
                            json={"entityDefs": {"Document": {"fields": DESIGN_FIELDS}}, "scopes": {}})
    httpx_mock.add_response(url=f"{API}/App/user", json={"user": {"id": "u"}})
    espo = make_espo()
    assert espo.learn().known and espo.attributes["xaiSyncStatus"] == "cXaiSyncStatus" and espo.page_size == 200


def test_state_written_by_an_older_docsync_gains_the_pending_column(tmp_path: Any) -> None:
    import sqlite3

    from docsync_cli.model import LocalRecord
    from docsync_cli.state import StateStore

    tmp_path.mkdir(exist_ok=True)
    old = sqlite3.connect(tmp_path / "state.sqlite3")
    old.execute("CREATE TABLE documents (doc_id TEXT PRIMARY KEY, file_id TEXT, sha256 TEXT, md5 TEXT, "
                "xai_file_id TEXT, collections TEXT NOT NULL DEFAULT '[]', crm_modified_at TEXT, failure_code TEXT, "
                "failure_transient INTEGER NOT NULL DEFAULT 0, preview_sha TEXT, updated REAL NOT NULL)")
    old.execute("INSERT INTO documents VALUES ('d1', 'a1', NULL, NULL, NULL, '[]', NULL, NULL, 0, NULL, 0)")
    old.commit()
    old.close()
    state = StateStore(tmp_path)
    assert state.record("d1") == LocalRecord("d1", "a1", None, None, None, (), None)
    state.save(LocalRecord("d2", "a2", None, None, None, (), None, pending=True))
    assert state.record("d2") is not None and state.record("d2").pending  # type: ignore[union-attr]
    state.close()


# -- deletions: short pages, no counting, GET as the confirmation (contract §11.2, §11.3) ---------------


def test_a_short_page_with_minus_one_is_not_the_end(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": [record("a1"), record("a2")]})
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": [record("a3")]})
    httpx_mock.add_response(url=DOC_LIST, json={"total": -2, "list": [record("a4")]})
    espo = make_espo()
    assert [r["id"] for r in espo.iter_keyset("Document", [], [])] == ["a1", "a2", "a3", "a4"]
    assert search_params(httpx_mock.get_requests()[2])["where"] == [
        {"type": "greaterThan", "attribute": "id", "value": "a3"}]


def test_a_short_page_with_minus_one_is_not_the_end_of_a_document_listing(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": [record("b1")]})
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": []})  # an empty page ends
    assert [d.id for d in make_espo().iter_documents()] == ["b1"]


def test_a_count_the_server_does_not_make_is_none(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=DOC_LIST, json={"total": -1, "list": [record("a")]})  # countDisabled
    httpx_mock.add_response(url=DOC_LIST, json={"total": 7, "list": [record("a")]})
    espo = make_espo()
    assert espo.count_between(None, None) is None
    assert espo.count_between("a", None) == 7


@pytest.mark.parametrize(("status", "reason", "expected"), [
    (200, None, Presence.LIVE), (404, None, Presence.GONE), (403, "No 'read' access.", Presence.HIDDEN)])
def test_presence_is_asked_by_get(httpx_mock: HTTPXMock, status: int, reason: str | None,
                                  expected: Presence) -> None:
    headers = {"X-Status-Reason": reason} if reason else {}
    httpx_mock.add_response(url=re.compile(rf"{re.escape(API)}/Document/Ab1\?select=id"), status_code=status,
                            headers=headers, json=record("ab1") if status == 200 else None)
    assert make_espo().presence("Ab1")[0] is expected


def test_presence_without_any_document_read_access_stops_the_run(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=re.compile(rf"{re.escape(API)}/Document/x.*"), status_code=403,
                            headers={"X-Status-Reason": "No read access."})
    with pytest.raises(AuthError):
        make_espo().presence("x")
