"""``xai.client.XaiClient`` against pytest-httpx stubs shaped like the xAI contract (``docs/contracts.md``): the
two hosts and their keys (§1), multipart upload with docsync's marked name (§5.1), the files listing filter and its
short-page end (§5.2), deletes and removals where 404 means done (§5.4, §7.7), field definitions (§6.4, §9), adding
with fields (§7.1), ``documents:batchGet`` (§7.5) and collection document paging (§7.3)."""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpx import HTTPXMock

from docsync_cli.config import load_settings
from docsync_cli.errors import AmbiguousWriteError, AuthError, RejectedError
from docsync_cli.sync.services import open_services
from docsync_cli.transport.http import RetryPolicy, ServiceClient
from docsync_cli.xai.answers import CollectionMember, XaiCollection, XaiFile
from docsync_cli.xai.client import (
    XaiClient,
    build_http_client,
    name_prefix,
    started_upload,
    upload_name,
    xai_detail,
)

FILES = "https://api.x.example"
MGMT = "https://mgmt.x.example"
API_KEY = "xai-api-key-abc"
MGMT_KEY = "xai-mgmt-key-def"
SHA = "0123456789abcdef" * 4
COL = "collection_11111111-2222-3333-4444-555555555555"
FID = "file_aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
FILES_LIST = re.compile(r"https://api\.x\.example/v1/files\?.*")


def make_xai(attempts: int = 3) -> XaiClient:
    policy = RetryPolicy(attempts=attempts, wait_initial=0, wait_max=0)
    files = ServiceClient("xai", build_http_client(FILES, API_KEY, 30.0), retry=policy, detail=xai_detail)
    management = ServiceClient("xai-management", build_http_client(MGMT, MGMT_KEY, 30.0), retry=policy,
                               detail=xai_detail)
    return XaiClient(files, management)


def file_obj(file_id: str, filename: str, size: int = 10, created_at: int = 1762345678) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "bytes": size, "created_at": created_at, "expires_at": None,
            "filename": filename, "purpose": "assistants"}


def collection_doc(file_id: str, status: str = "DOCUMENT_STATUS_PROCESSED", error: str = "",
                   fields: dict[str, str] | None = None) -> dict[str, Any]:
    return {"file_metadata": {"file_id": file_id, "name": "x.pdf", "size_bytes": "10",
                              "content_type": "application/pdf", "created_at": "2025-09-16T19:06:53.472088Z",
                              "expires_at": None, "hash": "ab" * 32},
            "fields": fields or {}, "status": status, "error_message": error}


def multipart_parts(request: httpx.Request) -> dict[str, tuple[str | None, str | None, bytes]]:
    """name -> (filename, content type, payload) of a multipart/form-data request."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    assert message.is_multipart()
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts[str(name)] = (part.get_filename(), part.get("Content-Type"), payload)
    return parts


# -- hosts and keys ------------------------------------------------------------------------------------


def test_each_host_gets_its_own_bearer_key(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{FILES}/v1/files/{FID}", json=file_obj(FID, "a"))
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", json={"collection_id": COL})
    xai = make_xai()
    assert xai.file_exists(FID)
    xai.get_collection(COL)
    files_request, mgmt_request = httpx_mock.get_requests()
    assert files_request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert mgmt_request.headers["Authorization"] == f"Bearer {MGMT_KEY}"


def test_services_wire_each_key_to_its_host(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    settings = load_settings(None, env={
        "ESPOCRM_URL": "https://crm.example", "ESPOCRM_API_KEY": "espo-key", "XAI_API_KEY": API_KEY,
        "XAI_MANAGEMENT_KEY": MGMT_KEY, "DOCSYNC_STATE_DIR": str(tmp_path), "XAI_API_URL": FILES,
        "XAI_MANAGEMENT_URL": MGMT})
    httpx_mock.add_response(url=f"{FILES}/v1/files/{FID}", status_code=404)
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", status_code=404)
    httpx_mock.add_response(url="https://crm.example/api/v1/App/user", json={"user": {"type": "api"}})
    with open_services(settings) as services:
        assert services.xai.file_exists(FID) is False
        assert services.xai.member(COL, FID) is None
        services.espo.app_user()
    files_request, mgmt_request, espo_request = httpx_mock.get_requests()
    assert files_request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert mgmt_request.headers["Authorization"] == f"Bearer {MGMT_KEY}"
    assert espo_request.headers["X-Api-Key"] == "espo-key" and "Authorization" not in espo_request.headers


def test_401_from_management_is_an_auth_error(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", status_code=401,
                            json={"code": "The request does not have valid authentication credentials",
                                  "error": "Invalid management key"})
    with pytest.raises(AuthError) as caught:
        make_xai().get_collection(COL)
    assert caught.value.service == "xai-management" and "Invalid management key" in str(caught.value)
    assert MGMT_KEY not in str(caught.value)


# -- upload --------------------------------------------------------------------------------------------


def test_upload_is_multipart_with_the_marked_name(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    source = tmp_path / "blob"
    source.write_bytes(b"%PDF-1.4 contract text")
    name = upload_name("65f0c1a2b3c4d5e6f", SHA, "Vertrag Müller.pdf")
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/files", json=file_obj(FID, name, 22))
    answer = make_xai().upload(source, name, "application/pdf")
    assert answer.id == FID
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    parts = multipart_parts(request)
    assert parts["file"] == ("crm-65f0c1a2b3c4d5e6f-01234567-Vertrag Müller.pdf", "application/pdf",
                             b"%PDF-1.4 contract text")
    assert parts["purpose"][2] == b"assistants"


def test_upload_answer_without_id_is_rejected(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/files", json={"object": "file"})
    with pytest.raises(RejectedError, match="no file id"):
        make_xai().upload(tmp_path / "f", "crm-x", "text/plain")


def test_upload_with_a_lost_answer_is_ambiguous_and_not_repeated(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/files", status_code=500,
                            json={"code": "Internal error", "error": "Internal error"})
    with pytest.raises(AmbiguousWriteError):
        make_xai().upload(tmp_path / "f", "crm-x", "text/plain")
    assert len(httpx_mock.get_requests()) == 1


def test_upload_retried_after_503_sends_the_whole_file_again(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    payload = b"0123456789" * 1000
    (tmp_path / "f").write_bytes(payload)
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/files", status_code=503)
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/files", json=file_obj(FID, "crm-x", len(payload)))
    make_xai().upload(tmp_path / "f", "crm-x", "text/plain")
    first, second = httpx_mock.get_requests()
    assert multipart_parts(first)["file"][2] == payload
    assert multipart_parts(second)["file"][2] == payload


@pytest.mark.parametrize(("original", "expected_base"), [
    ("../../x", "x"),
    ("..\\..\\windows\\evil.pdf", "evil.pdf"),
    ("/etc/passwd", "passwd"),
    ("a\x00b\nc\x1b.pdf", "a_b_c_.pdf"),
    ("Übersicht (ä) [v2].docx", "Übersicht (ä) [v2].docx"),
    ("", "document"),
    ("...", "document"),
    ("../", "document"),
])
def test_upload_name_is_sanitised(original: str, expected_base: str) -> None:
    assert upload_name("d1", SHA, original) == f"crm-d1-01234567-{expected_base}"


def test_upload_name_is_capped_and_keeps_the_marker() -> None:
    name = upload_name("d1", SHA, "x" * 1000 + ".pdf")
    assert len(name) == 200
    assert name.startswith(name_prefix("d1", SHA) + "-") and name_prefix("d1", SHA) == "crm-d1-01234567"


def test_upload_name_never_contains_separators_or_control_characters() -> None:
    name = upload_name("d1", SHA, "dir/sub\\..\\\t\r\n\x7fname:*?\"<>|.pdf")
    assert not set(name) & set("/\\\t\r\n\x7f:*?\"<>|")


# -- files listing -------------------------------------------------------------------------------------


def test_find_files_filters_by_name_and_stops_on_a_short_page(httpx_mock: HTTPXMock) -> None:
    prefix = name_prefix("d1", SHA)
    first = [file_obj(f"file_{i}", f"{prefix}-v{i}.pdf") for i in range(99)] + [file_obj("file_x", "other.pdf")]
    second = [file_obj("file_last", f"{prefix}-last.pdf")]
    httpx_mock.add_response(url=FILES_LIST, json={"data": first, "pagination_token": "file_x"})
    httpx_mock.add_response(url=FILES_LIST, json={"data": second, "pagination_token": "file_last"})
    found = make_xai().find_files(prefix)
    assert [f.id for f in found] == [f"file_{i}" for i in range(99)] + ["file_last"]  # "other.pdf" dropped
    page1, page2 = (dict(r.url.params) for r in httpx_mock.get_requests())
    assert page1 == {"limit": "100", "order": "asc", "sort_by": "created_at", "filter": 'name:"crm-d1-01234567"'}
    assert page2 == page1 | {"pagination_token": "file_x"}


def test_find_files_single_short_page_is_one_request(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=FILES_LIST, json={"data": [], "pagination_token": "t"})
    assert make_xai().find_files("crm-d1-01234567") == []
    assert len(httpx_mock.get_requests()) == 1


def test_find_files_without_data_is_rejected(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=FILES_LIST, json={"files": []})
    with pytest.raises(RejectedError, match="no 'data' list"):
        make_xai().find_files("crm-d1")


def test_file_exists_is_false_on_404(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{FILES}/v1/files/{FID}", status_code=404,
                            json={"code": "Some requested entity was not found", "error": "File not found"})
    assert make_xai().file_exists(FID) is False


def test_delete_file_sends_delete_and_404_means_done(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="DELETE", url=f"{FILES}/v1/files/{FID}",
                            json={"id": FID, "object": "file", "deleted": True})
    httpx_mock.add_response(method="DELETE", url=f"{FILES}/v1/files/file_gone", status_code=404)
    xai = make_xai()
    xai.delete_file(FID)
    xai.delete_file("file_gone")
    assert [(r.method, r.url.path) for r in httpx_mock.get_requests()] == [
        ("DELETE", f"/v1/files/{FID}"), ("DELETE", "/v1/files/file_gone")]


# -- collections ---------------------------------------------------------------------------------------


def test_remove_document_sends_delete_and_404_means_done(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="DELETE", url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", json={})
    httpx_mock.add_response(method="DELETE", url=f"{MGMT}/v1/collections/{COL}/documents/file_gone", status_code=404)
    xai = make_xai()
    xai.remove_document(COL, FID)
    xai.remove_document(COL, "file_gone")
    assert len(httpx_mock.get_requests()) == 2


def test_ensure_fields_adds_only_missing_keys_once_per_collection(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="GET", url=f"{MGMT}/v1/collections/{COL}", json={
        "collection_id": COL, "field_definitions": [{"key": "crm_document_id", "required": False},
                                                    {"key": "author"}]})
    httpx_mock.add_response(method="PUT", url=f"{MGMT}/v1/collections/{COL}", json={"collection_id": COL})
    xai = make_xai()
    xai.ensure_fields(COL)
    xai.ensure_fields(COL)
    get, put = httpx_mock.get_requests()
    assert (get.method, put.method) == ("GET", "PUT")
    definition = {"required": False, "unique": False, "inject_into_chunk": False,
                  "description": "managed by docsync; do not edit"}
    assert json.loads(put.content) == {"field_definition_updates": [
        {"operation": "FIELD_DEFINITION_ADD", "field_definition": {"key": "content_sha256", **definition}},
        {"operation": "FIELD_DEFINITION_ADD", "field_definition": {"key": "managed_by", **definition}},
        {"operation": "FIELD_DEFINITION_ADD", "field_definition": {"key": "installation_id", **definition}}]}


def test_ensure_fields_sends_no_update_when_all_keys_exist(httpx_mock: HTTPXMock) -> None:
    keys = [{"key": k} for k in ("crm_document_id", "content_sha256", "managed_by", "installation_id")]
    httpx_mock.add_response(method="GET", url=f"{MGMT}/v1/collections/{COL}",
                            json={"collection_id": COL, "field_definitions": keys})
    xai = make_xai()
    xai.ensure_fields(COL)
    xai.ensure_fields(COL)
    assert [r.method for r in httpx_mock.get_requests()] == ["GET"]


def test_ensure_fields_declares_all_keys_on_a_bare_collection(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="GET", url=f"{MGMT}/v1/collections/{COL}", json={"collection_id": COL})
    httpx_mock.add_response(method="PUT", url=f"{MGMT}/v1/collections/{COL}", json={})
    make_xai().ensure_fields(COL)
    put = httpx_mock.get_requests()[-1]
    keys = [u["field_definition"]["key"] for u in json.loads(put.content)["field_definition_updates"]]
    assert keys == ["crm_document_id", "content_sha256", "managed_by", "installation_id"]


def test_add_document_posts_the_ownership_fields(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", json={})
    make_xai().add_document(COL, FID, "65f0c1a2b3c4d5e6f", SHA, "inst-1")
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["Authorization"] == f"Bearer {MGMT_KEY}"
    assert json.loads(request.content) == {"fields": {"crm_document_id": "65f0c1a2b3c4d5e6f",
                                                      "content_sha256": SHA, "managed_by": "docsync",
                                                      "installation_id": "inst-1"}}


def test_add_document_is_retried_after_a_500_because_it_is_an_upsert(httpx_mock: HTTPXMock) -> None:
    url = f"{MGMT}/v1/collections/{COL}/documents/{FID}"
    httpx_mock.add_response(method="POST", url=url, status_code=500)
    httpx_mock.add_response(method="POST", url=url, json={})
    make_xai().add_document(COL, FID, "d1", SHA, "inst-1")
    assert len(httpx_mock.get_requests()) == 2


def test_reindex_is_a_patch_on_the_document(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="PATCH", url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", json={})
    make_xai().reindex(COL, FID)
    assert len(httpx_mock.get_requests()) == 1


def test_member_is_none_when_not_a_member(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", status_code=404)
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents/file_in", json=collection_doc("file_in"))
    xai = make_xai()
    assert xai.member(COL, FID) is None
    member = xai.member(COL, "file_in")
    assert member is not None and member.status == "DOCUMENT_STATUS_PROCESSED" and member.file_id == "file_in"


def test_statuses_use_repeated_file_ids_and_map_by_file_id(httpx_mock: HTTPXMock) -> None:
    batch = re.compile(r"https://mgmt\.x\.example/v1/collections/[^/]+/documents:batchGet\?.*")
    httpx_mock.add_response(url=batch, json={"documents": [  # answer order differs, f2 unknown → left out
        collection_doc("f3", "DOCUMENT_STATUS_FAILED", "could not parse PDF"),
        collection_doc("f1", "DOCUMENT_STATUS_PROCESSING")]})
    result = make_xai().statuses(COL, ["f1", "f2", "f3"])
    assert result == {"f1": ("DOCUMENT_STATUS_PROCESSING", ""),
                      "f3": ("DOCUMENT_STATUS_FAILED", "could not parse PDF")}
    request = httpx_mock.get_request()
    assert request is not None
    assert request.url.raw_path.decode().startswith(f"/v1/collections/{COL}/documents:batchGet?")
    assert request.url.params.get_list("file_ids") == ["f1", "f2", "f3"]


def test_statuses_send_at_most_100_ids_per_call(httpx_mock: HTTPXMock) -> None:
    batch = re.compile(r"https://mgmt\.x\.example/v1/collections/[^/]+/documents:batchGet\?.*")
    httpx_mock.add_response(url=batch, json={"documents": []}, is_reusable=True)
    make_xai().statuses(COL, [f"f{i}" for i in range(150)])
    sizes = [len(r.url.params.get_list("file_ids")) for r in httpx_mock.get_requests()]
    assert sizes == [100, 50]


def test_statuses_default_a_missing_status_to_unknown(httpx_mock: HTTPXMock) -> None:
    batch = re.compile(r"https://mgmt\.x\.example/v1/collections/[^/]+/documents:batchGet\?.*")
    doc = collection_doc("f1")
    del doc["status"], doc["error_message"]
    httpx_mock.add_response(url=batch, json={"documents": [doc]})
    assert make_xai().statuses(COL, ["f1"]) == {"f1": ("DOCUMENT_STATUS_UNKNOWN", "")}


def test_iter_documents_follows_pagination_token_until_absent(httpx_mock: HTTPXMock) -> None:
    listing = re.compile(rf"https://mgmt\.x\.example/v1/collections/{COL}/documents\?.*")
    httpx_mock.add_response(url=listing, json={"documents": [collection_doc("f1")], "pagination_token": "p2"})
    httpx_mock.add_response(url=listing, json={"documents": [collection_doc("f2")], "pagination_token": "p3"})
    httpx_mock.add_response(url=listing, json={"documents": [collection_doc("f3")]})
    docs = list(make_xai().iter_documents(COL))
    assert [d.file_id for d in docs] == ["f1", "f2", "f3"]
    assert [dict(r.url.params) for r in httpx_mock.get_requests()] == [
        {"limit": "100"}, {"limit": "100", "pagination_token": "p2"}, {"limit": "100", "pagination_token": "p3"}]


def test_iter_documents_stops_on_an_empty_token(httpx_mock: HTTPXMock) -> None:
    listing = re.compile(rf"https://mgmt\.x\.example/v1/collections/{COL}/documents\?.*")
    httpx_mock.add_response(url=listing, json={"documents": [collection_doc("f1")], "pagination_token": ""})
    assert len(list(make_xai().iter_documents(COL))) == 1


def test_iter_documents_without_a_list_is_rejected(httpx_mock: HTTPXMock) -> None:
    listing = re.compile(rf"https://mgmt\.x\.example/v1/collections/{COL}/documents\?.*")
    httpx_mock.add_response(url=listing, json={"collections": []})
    with pytest.raises(RejectedError):
        list(make_xai().iter_documents(COL))


# -- error details -------------------------------------------------------------------------------------


def test_error_envelope_is_rendered_error_first() -> None:
    body = json.dumps({"code": "Client specified an invalid argument", "error": "Unknown field: foo"}).encode()
    assert xai_detail(httpx.Headers(), body) == "Unknown field: foo: Client specified an invalid argument"


def test_html_error_body_is_summarised() -> None:
    assert "HTML page" in xai_detail(httpx.Headers(), b"<html><body>Bad gateway</body></html>")


def test_plain_text_error_body_is_shortened() -> None:
    assert xai_detail(httpx.Headers(), b"oops\n" * 100).startswith("oops oops")


# ---------------------------------------------------------------------------------------------------
# search (§10)


def test_search_posts_the_contract_body_to_the_api_host_and_returns_typed_hits(httpx_mock: HTTPXMock) -> None:
    # §10: POST api host /v1/documents/search with query, source.collection_ids, limit; API key (§1)
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/documents/search", json={"matches": [
        {"file_id": FID, "chunk_id": "0199717c-1111-2222-3333-444444444444", "chunk_content": "Mietvertrag",
         "score": 1.25, "collection_ids": [COL], "fields": {"crm_document_id": "d1", "n": 5}, "page_number": 2},
        {"chunk_content": "no file id: skipped"},
        {"file_id": "file_2", "score": "high", "page_number": True, "fields": "nope", "collection_ids": "x"},
    ]})
    hits = make_xai().search("Mietvertrag Berlin", [COL], limit=500)
    request = httpx_mock.get_requests()[0]
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert json.loads(request.content) == {"query": "Mietvertrag Berlin", "source": {"collection_ids": [COL]},
                                           "limit": 100}
    assert [(h.file_id, h.text, h.score, h.collection_ids, h.fields, h.page_number) for h in hits] == [
        (FID, "Mietvertrag", 1.25, (COL,), {"crm_document_id": "d1"}, 2),
        ("file_2", "", 0.0, (), {}, None),
    ]


def test_search_without_collections_asks_nothing_and_a_bad_answer_is_rejected(httpx_mock: HTTPXMock) -> None:
    assert make_xai().search("x", []) == []
    httpx_mock.add_response(method="POST", url=f"{FILES}/v1/documents/search", json={"results": []})
    with pytest.raises(RejectedError):
        make_xai().search("x", [COL])


@pytest.mark.parametrize(("status", "error", "auth"), [
    (400, "Incorrect API key provided: xa***yz. You can obtain an API key from https://console.x.ai.", True),
    (400, "Invalid purpose: banana", False),
    (401, "The request does not have valid authentication credentials", True),
    (403, "The caller does not have permission to execute the specified operation", True),
])
def test_errors_naming_the_api_key_are_auth_failures(httpx_mock: HTTPXMock, tmp_path: Path, status: int,
                                                     error: str, auth: bool) -> None:
    # xAI contract §15: a wrong or revoked key is answered 400 "Incorrect API key provided"
    httpx_mock.add_response(url=f"{FILES}/v1/files", method="POST", status_code=status,
                            json={"code": "Client specified an invalid argument", "error": error})
    source = tmp_path / "a.pdf"
    source.write_bytes(b"%PDF-1.4")
    with pytest.raises(AuthError if auth else RejectedError):
        make_xai().upload(source, "crm-d1-00000000-a.pdf", "application/pdf")


def test_a_deleted_collection_is_not_found_but_a_missing_management_api_is_a_setup_error(
        httpx_mock: HTTPXMock) -> None:
    """One collection's 404 fails its documents (NotFoundError); when the collection listing 404s too, the URL
    leads to no Management API (XAI_MANAGEMENT_URL naming another server) and the run must stop instead."""
    from docsync_cli.errors import NotFoundError, SetupError

    xai = make_xai()
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", status_code=404)
    httpx_mock.add_response(url=f"{MGMT}/v1/collections?limit=1", json={"collections": []})
    with pytest.raises(NotFoundError):
        xai.get_collection(COL)

    other = make_xai()
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", status_code=404)
    httpx_mock.add_response(url=f"{MGMT}/v1/collections?limit=1", status_code=404)
    with pytest.raises(SetupError, match="no xAI Management API at this URL") as caught:
        other.get_collection(COL)
    assert "XAI_MANAGEMENT_URL" in caught.value.advice


# -- typed answers and the marked name ------------------------------------------------------------------


def test_a_collection_is_a_typed_value_with_its_name_and_field_keys(httpx_mock: HTTPXMock) -> None:
    # xAI contract §6.3 (get), §9 (field_definitions): the client hides the protobuf-JSON shape.
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", json={
        "collection_id": COL, "collection_name": "Mandant Müller",
        "field_definitions": [{"key": "crm_document_id"}, {"key": 7}, "odd", {"required": True}]})
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}", json={"field_definitions": {"key": "x"}})
    xai = make_xai()
    assert xai.get_collection(COL) == XaiCollection(COL, "Mandant Müller", ("crm_document_id",))
    assert xai.get_collection(COL) == XaiCollection(COL, "", ())  # no id, name or list: the asked id, nothing


def test_the_collection_listing_is_one_page_of_typed_collections(httpx_mock: HTTPXMock) -> None:
    # xAI contract §6.2: `limit` at most 100; entries without an id are skipped; an answer without a list has none.
    httpx_mock.add_response(url=f"{MGMT}/v1/collections?limit=1", json={"collections": [
        {"collection_id": COL, "collection_name": "A"}]})
    httpx_mock.add_response(url=f"{MGMT}/v1/collections?limit=100", json={"collections": [
        {"collection_name": "no id"}, {"collection_id": ""}, "odd", {"collection_id": COL}]})
    httpx_mock.add_response(url=f"{MGMT}/v1/collections?limit=100", json={})
    xai = make_xai()
    assert xai.collections(limit=1) == [XaiCollection(COL, "A")]
    assert xai.collections(limit=500) == [XaiCollection(COL)]
    assert xai.collections() == []


def test_the_probes_are_single_cheap_reads_that_raise_what_the_service_said(httpx_mock: HTTPXMock) -> None:
    # xAI contract §5.2 and §7.3 with limit=1; §15: a 400 naming the key and a 403 are auth failures.
    httpx_mock.add_response(url=f"{FILES}/v1/files?limit=1", json={"data": [], "object": "list"})
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents?limit=1", json={"documents": []})
    xai = make_xai()
    xai.probe_files()
    xai.probe_documents(COL)
    httpx_mock.add_response(url=f"{FILES}/v1/files?limit=1", status_code=400,
                            json={"code": "Client specified an invalid argument",
                                  "error": "Incorrect API key provided: xa***bc"})
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents?limit=1", status_code=403,
                            json={"code": "permission denied", "error": "missing permission"})
    with pytest.raises(AuthError):
        xai.probe_files()
    with pytest.raises(AuthError):
        xai.probe_documents(COL)
    with pytest.raises(RejectedError):
        xai.probe_documents("../collections")  # not an id: refused before any request
    assert len(httpx_mock.get_requests()) == 4


def test_member_is_a_typed_value_with_string_fields_only(httpx_mock: HTTPXMock) -> None:
    doc = collection_doc(FID, "DOCUMENT_STATUS_FAILED", "bad pdf", {"crm_document_id": "d1"})
    doc["fields"]["odd"] = 7
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", json=doc)
    assert make_xai().member(COL, FID) == CollectionMember(FID, "DOCUMENT_STATUS_FAILED", "bad pdf",
                                                           {"crm_document_id": "d1"})


def test_a_member_without_a_status_is_still_processing(httpx_mock: HTTPXMock) -> None:
    doc = collection_doc(FID)
    del doc["status"], doc["file_metadata"]
    httpx_mock.add_response(url=f"{MGMT}/v1/collections/{COL}/documents/{FID}", json=doc)
    member = make_xai().member(COL, FID)
    assert member is not None and (member.file_id, member.status) == (FID, "DOCUMENT_STATUS_UNKNOWN")


def test_listed_files_are_typed_and_an_unreadable_size_matches_no_size(httpx_mock: HTTPXMock) -> None:
    prefix = name_prefix("d1", SHA, "inst")
    odd = file_obj("file_b", f"{prefix}-b.pdf") | {"bytes": "10", "created_at": None}
    httpx_mock.add_response(url=FILES_LIST, json={"data": [file_obj("file_a", f"{prefix}-a.pdf", 12, 5), odd,
                                                           {"filename": f"{prefix}-no-id.pdf"}]})
    assert make_xai().find_uploads("d1", SHA, "inst") == [XaiFile("file_a", f"{prefix}-a.pdf", 12, 5),
                                                          XaiFile("file_b", f"{prefix}-b.pdf", -1, None)]
    assert dict(httpx_mock.get_request().url.params)["filter"] == f'name:"{prefix}-"'  # type: ignore[union-attr]


def test_the_marked_name_is_built_and_read_back_here() -> None:
    name = upload_name("d1", SHA, "Vertrag.pdf", "inst")
    assert name.startswith(name_prefix("d1", SHA, "inst") + "-")
    assert not name.startswith(name_prefix("d1", SHA, "other-inst") + "-")
    journal = {name: "d1"}
    assert started_upload(name, journal) == "d1"
    assert started_upload(upload_name("d1", SHA, "Other.pdf", "inst"), journal) is None  # only the exact name
    assert started_upload("Vertrag.pdf", {"Vertrag.pdf": "d1"}) is None  # no marker, no document
