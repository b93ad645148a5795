"""Contract tests for the xAI emulator: real HTTP on loopback, checked against the xAI contract (docs/contracts.md).
[I] marks an emulator decision where the contract is silent (listed in ``docsync_sandbox/xai.py``)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from docsync_sandbox.http import RateLimit
from docsync_sandbox.xai import XaiEmulator
from docsync_sandbox.xai_filter import FieldValue, FilterError, evaluate, parse

API_KEY = "xai-test-key"
MGMT_KEY = "xai-test-management-key"
DELAY = 5.0
T0 = 1_762_345_678.25
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
CODE_401 = "The request does not have valid authentication credentials"
CODE_400 = "Client specified an invalid argument"
CODE_404 = "Some requested entity was not found"
CODE_409 = "Some entity that we attempted to create already exists"
CODE_403 = "The caller does not have permission to execute the specified operation"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def server() -> Iterator[XaiEmulator]:
    # one pair of listeners for the module (stopping a listener costs ~0.5 s); state is reset per test
    with XaiEmulator(api_key=API_KEY, management_key=MGMT_KEY, processing_delay=DELAY) as emulator:
        yield emulator


@pytest.fixture
def emu(server: XaiEmulator, clock: FakeClock) -> XaiEmulator:
    server.reset()
    server.clock = clock
    return server


@pytest.fixture
def api(emu: XaiEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.api_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5) as c:
        yield c


@pytest.fixture
def mgmt(emu: XaiEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.management_url, headers={"Authorization": f"Bearer {MGMT_KEY}"},
                      timeout=5) as c:
        yield c


def upload(api: httpx.Client, name: str, content: bytes, ctype: str = "text/plain",
           **data: str) -> dict[str, Any]:
    resp = api.post("/v1/files", files={"file": (name, content, ctype)}, data=data)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def assert_error(resp: httpx.Response, status: int, code: str, contains: str = "") -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "error"}
    assert body["code"] == code
    assert contains in body["error"]


def make_collection(mgmt: httpx.Client, name: str = "CRM docs", **extra: Any) -> dict[str, Any]:
    resp = mgmt.post("/v1/collections", json={"collection_name": name, **extra})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


CRM_FIELDS = [
    {"key": "crm_document_id", "required": True},
    {"key": "content_sha256"},
    {"key": "isbn", "unique": True},
]


# ---------------------------------------------------------------------------------------------------
# Auth (§1, §3)


def test_each_host_rejects_the_other_hosts_key(emu: XaiEmulator) -> None:
    # xAI contract §1: api.x.ai takes the API key, management-api.x.ai the management key; §15 a wrong key on the
    # api host is 400 "Incorrect API key provided", the management host answers 401 here (configurable)
    with httpx.Client(timeout=5) as c:
        wrong_api = c.get(f"{emu.api_url}/v1/files", headers={"Authorization": f"Bearer {MGMT_KEY}"})
        wrong_mgmt = c.get(f"{emu.management_url}/v1/collections", headers={"Authorization": f"Bearer {API_KEY}"})
        missing = c.get(f"{emu.management_url}/v1/collections")
        right_api = c.get(f"{emu.api_url}/v1/files", headers={"Authorization": f"Bearer {API_KEY}"})
        right_mgmt = c.get(f"{emu.management_url}/v1/collections", headers={"Authorization": f"Bearer {MGMT_KEY}"})
    assert_error(wrong_api, 400, CODE_400, "Incorrect API key provided: xa***")
    assert wrong_api.json()["error"].endswith("You can obtain an API key from https://console.x.ai.")
    assert_error(wrong_mgmt, 401, CODE_401, "Incorrect API key provided")
    assert_error(missing, 401, CODE_401)
    assert right_api.status_code == 200
    assert right_mgmt.status_code == 200


def test_set_keys_revokes_old_key(emu: XaiEmulator, api: httpx.Client) -> None:
    # xAI contract §15: a revoked key is answered 400 on the api host; key rotation simulates a revoked key
    assert api.get("/v1/files").status_code == 200
    emu.set_keys(api_key="xai-rotated")
    assert_error(api.get("/v1/files"), 400, CODE_400, "Incorrect API key provided")
    assert api.get("/v1/files", headers={"Authorization": "Bearer xai-rotated"}).status_code == 200


def test_management_host_can_answer_a_wrong_key_with_400() -> None:
    # xAI contract §15: "expect the management host to answer either way"
    with XaiEmulator(api_key=API_KEY, management_key=MGMT_KEY, management_bad_key_status=400) as emulator, \
            httpx.Client(timeout=5) as c:
        wrong = c.get(f"{emulator.management_url}/v1/collections", headers={"Authorization": "Bearer nope-key"})
    assert_error(wrong, 400, CODE_400, "Incorrect API key provided: no***ey.")


def test_a_management_key_without_a_permission_gets_403_for_that_call_only(emu: XaiEmulator,
                                                                          mgmt: httpx.Client) -> None:
    # xAI contract §15: "a key without one of them gets 403 for that call only"
    cid = make_collection(mgmt)["collection_id"]
    emu.denied_permissions.add("ListDocuments")
    assert_error(mgmt.get(f"/v1/collections/{cid}/documents"), 403, CODE_403, "ListDocuments")
    assert mgmt.get(f"/v1/collections/{cid}").status_code == 200
    assert mgmt.get(f"/v1/collections/{cid}/documents:batchGet", params={"file_ids": "file_x"}).status_code == 200


def test_rate_limit_answers_429_in_the_envelope(emu: XaiEmulator, api: httpx.Client) -> None:
    # xAI contract §3: 429 "Too many requests"; §4: honour Retry-After
    emu.api_app.rate_limit = RateLimit(rate=0.001, burst=1, retry_after=2)
    assert api.get("/v1/files").status_code == 200
    resp = api.get("/v1/files")
    assert_error(resp, 429, "Too many requests")
    assert resp.headers["Retry-After"] == "2"


# ---------------------------------------------------------------------------------------------------
# Files API (§5)


def test_upload_returns_openai_style_file_object(api: httpx.Client, emu: XaiEmulator) -> None:
    # xAI contract §5.1 response shape; §2 Unix-int timestamps, int bytes, "object": "file"
    body = upload(api, "notes.md", b"# hello\n", "text/markdown", purpose="assistants")
    assert re.fullmatch(r"file_[0-9a-f-]{36}", body["id"])
    assert body["object"] == "file"
    assert body["bytes"] == 8 and isinstance(body["bytes"], int)
    assert body["created_at"] == int(T0) and isinstance(body["created_at"], int)
    assert body["expires_at"] is None
    assert body["filename"] == "notes.md"
    assert body["purpose"] == "assistants"
    assert emu.file_bytes(body["id"]) == b"# hello\n"
    assert emu.files()[body["id"]]["sha256"] == hashlib.sha256(b"# hello\n").hexdigest()


def test_upload_keeps_binary_content_and_odd_filenames(api: httpx.Client, emu: XaiEmulator) -> None:
    # xAI contract §5.1: the multipart filename becomes `filename`; §4 any bytes are accepted
    content = bytes(range(256)) * 4 + b"\r\n--not-a-boundary\r\n"
    body = upload(api, 'Q3 "draft" rapport é.bin', content, "application/octet-stream")
    assert body["filename"] == 'Q3 "draft" rapport é.bin'
    assert emu.file_bytes(body["id"]) == content


def test_upload_expires_after(api: httpx.Client, clock: FakeClock) -> None:
    # xAI contract §4/§5.1: expires_after in 3600..2592000; §5.3 404 past expires_at
    body = upload(api, "tmp.txt", b"x", expires_after="3600")
    assert body["expires_at"] == int(T0 + 3600)
    assert api.get(f"/v1/files/{body['id']}").status_code == 200
    clock.advance(3600)
    assert_error(api.get(f"/v1/files/{body['id']}"), 404, CODE_404)
    resp = api.post("/v1/files", files={"file": ("a.txt", b"x")}, data={"expires_after": "10"})
    assert_error(resp, 400, CODE_400, "expires_after")


def test_upload_size_limit_and_missing_file_part(api: httpx.Client, emu: XaiEmulator) -> None:
    # xAI contract §4, §15: configurable max (default 50 MB read as 50,000,000 bytes) on /v1/files → 400
    assert emu.max_file_bytes == 50_000_000
    emu.max_file_bytes = 10
    assert api.post("/v1/files", files={"file": ("ok.txt", b"0123456789")}).status_code == 200
    assert_error(api.post("/v1/files", files={"file": ("big.txt", b"0123456789A")}), 400, CODE_400, "too large")
    # §5.1: `file` is required
    assert_error(api.post("/v1/files", data={"purpose": "assistants"}, files={"other": ("x.txt", b"x")}),
                 400, CODE_400, "file")
    assert_error(api.post("/v1/files", content=b"{}", headers={"Content-Type": "application/json"}),
                 400, CODE_400)


def test_files_list_pagination_always_returns_a_token(api: httpx.Client, clock: FakeClock) -> None:
    # xAI contract §5.2 pagination rule: token always present; end when len(data) < limit
    ids = []
    for i in range(5):
        ids.append(upload(api, f"f{i}.txt", b"x" * (i + 1))["id"])
        clock.advance(1)
    seen: list[str] = []
    pages = []
    token = None
    while True:
        params: dict[str, Any] = {"limit": 2, "order": "asc", "sort_by": "created_at"}
        if token:
            params["pagination_token"] = token
        resp = api.get("/v1/files", params=params)
        assert resp.status_code == 200
        body = resp.json()
        assert "pagination_token" in body and isinstance(body["pagination_token"], str)
        pages.append(len(body["data"]))
        seen.extend(f["id"] for f in body["data"])
        token = body["pagination_token"]
        if len(body["data"]) < 2:
            break
    assert pages == [2, 2, 1]
    assert seen == ids
    assert token == ids[-1]  # keyset cursor = last id (§5.2 example), present even on the last page
    # an exactly-full last page is followed by an empty page that still carries a token
    full = api.get("/v1/files", params={"limit": 5, "order": "asc"}).json()
    after = api.get("/v1/files", params={"limit": 5, "order": "asc",
                                         "pagination_token": full["pagination_token"]}).json()
    assert after["data"] == [] and after["pagination_token"] == ids[-1]
    # sort_by size desc, and a cursor that survives the deletion of its file
    by_size = api.get("/v1/files", params={"limit": 2, "order": "desc", "sort_by": "size"}).json()
    assert [f["id"] for f in by_size["data"]] == [ids[4], ids[3]]
    assert api.delete(f"/v1/files/{ids[3]}").status_code == 200
    rest = api.get("/v1/files", params={"limit": 10, "order": "desc", "sort_by": "size",
                                        "pagination_token": by_size["pagination_token"]}).json()
    assert [f["id"] for f in rest["data"]] == [ids[2], ids[1], ids[0]]
    assert_error(api.get("/v1/files", params={"order": "sideways"}), 400, CODE_400)


def test_files_list_filter(api: httpx.Client) -> None:
    # xAI contract §5.2 filter: name/file_name fuzzy, file_id exact, AND
    a = upload(api, "Quarterly Report.pdf", b"%PDF-1.4")["id"]
    b = upload(api, "quarterly-notes.txt", b"notes")["id"]
    c = upload(api, "other.txt", b"zzz")["id"]

    def ids(flt: str) -> set[str]:
        resp = api.get("/v1/files", params={"filter": flt})
        assert resp.status_code == 200, resp.text
        return {f["id"] for f in resp.json()["data"]}

    assert ids('name:"quarterly"') == {a, b}
    assert ids('file_name:"NOTES"') == {b}
    assert ids('name = "other.txt"') == {c}
    assert ids('name = "other"') == set()  # `=` is exact, `:` is the fuzzy match
    assert ids('name:"other" OR file_id = "' + a + '"') == {a, c}
    assert ids(f'file_id = "{a}"') == {a}
    assert ids('name:"quarterly" AND file_name:".txt"') == {b}
    assert_error(api.get("/v1/files", params={"filter": 'colour = "red"'}), 400, CODE_400)
    assert_error(api.get("/v1/files", params={"filter": 'name:"unterminated'}), 400, CODE_400)


def test_get_delete_content_and_404_after_delete(api: httpx.Client) -> None:
    # xAI contract §5.3, §5.4, §5.5
    content = b"line one\nline two\xff\n"
    fid = upload(api, "doc.txt", content)["id"]
    got = api.get(f"/v1/files/{fid}")
    assert got.status_code == 200 and got.json()["id"] == fid and got.json()["bytes"] == len(content)
    raw = api.get(f"/v1/files/{fid}/content")
    assert raw.status_code == 200
    assert raw.content == content
    assert raw.headers["Content-Type"] == "application/octet-stream"
    text = api.get(f"/v1/files/{fid}/content", params={"format": "text"})
    assert text.status_code == 200 and text.text.startswith("line one\nline two")
    deleted = api.delete(f"/v1/files/{fid}")
    assert deleted.status_code == 200
    assert deleted.json() == {"id": fid, "object": "file", "deleted": True}
    assert_error(api.get(f"/v1/files/{fid}"), 404, CODE_404)
    assert_error(api.get(f"/v1/files/{fid}/content"), 404, CODE_404)
    assert_error(api.delete(f"/v1/files/{fid}"), 404, CODE_404)
    assert fid not in {f["id"] for f in api.get("/v1/files").json()["data"]}


def test_deleting_a_file_removes_it_from_collections(api: httpx.Client, mgmt: httpx.Client) -> None:
    # xAI contract §13.3 is open; emulator decision [I]: F4 cascades out of every collection
    cid = make_collection(mgmt)["collection_id"]
    fid = upload(api, "a.txt", b"a")["id"]
    assert mgmt.post(f"/v1/collections/{cid}/documents/{fid}").status_code == 200
    assert mgmt.get(f"/v1/collections/{cid}").json()["documents_count"] == 1
    assert api.delete(f"/v1/files/{fid}").status_code == 200
    assert mgmt.get(f"/v1/collections/{cid}").json()["documents_count"] == 0
    assert_error(mgmt.get(f"/v1/collections/{cid}/documents/{fid}"), 404, CODE_404)


# ---------------------------------------------------------------------------------------------------
# Collections (§6)


def test_collection_create_get_shapes(mgmt: httpx.Client) -> None:
    # xAI contract §6.1 CollectionMetadata; §2 RFC 3339 + documents_count as a JSON number
    created = make_collection(mgmt, "SEC Filings", collection_description="Filings",
                              field_definitions=CRM_FIELDS)
    assert re.fullmatch(r"collection_[0-9a-f-]{36}", created["collection_id"])
    assert created["collection_name"] == "SEC Filings"
    assert created["collection_description"] == "Filings"
    assert RFC3339.match(created["created_at"])
    assert created["documents_count"] == 0 and isinstance(created["documents_count"], int)
    assert isinstance(created["total_file_size"], str)
    assert [d["key"] for d in created["field_definitions"]] == ["crm_document_id", "content_sha256", "isbn"]
    assert created["field_definitions"][0]["required"] is True
    assert created["field_definitions"][2]["unique"] is True
    assert created["index_configuration"]["model_name"]
    got = mgmt.get(f"/v1/collections/{created['collection_id']}")
    assert got.status_code == 200 and got.json() == created
    # §2: lowerCamelCase is accepted too
    camel = mgmt.post("/v1/collections", json={"collectionName": "Camel", "fieldDefinitions": [
        {"key": "k", "injectIntoChunk": True}]})
    assert camel.status_code == 200
    assert camel.json()["collection_name"] == "Camel"
    assert camel.json()["field_definitions"][0]["inject_into_chunk"] is True
    # §6.1 collection_name is required; §6.3 unknown id → 404
    assert_error(mgmt.post("/v1/collections", json={"collection_description": "x"}), 400, CODE_400)
    assert_error(mgmt.get("/v1/collections/collection_nope"), 404, CODE_404)


def test_collection_list_pagination_and_limit(mgmt: httpx.Client, clock: FakeClock) -> None:
    # xAI contract §6.2: limit ≤ 100, token absent on the last page, order/sort_by enums
    for name in ("beta", "alpha", "gamma"):
        make_collection(mgmt, name)
        clock.advance(1)
    first = mgmt.get("/v1/collections", params={"limit": 2, "order": "ORDERING_ASCENDING",
                                                "sort_by": "COLLECTIONS_SORT_BY_NAME"}).json()
    assert [c["collection_name"] for c in first["collections"]] == ["alpha", "beta"]
    assert first["pagination_token"]
    second = mgmt.get("/v1/collections", params={"limit": 2, "order": "ORDERING_ASCENDING",
                                                 "sort_by": "COLLECTIONS_SORT_BY_NAME",
                                                 "pagination_token": first["pagination_token"]}).json()
    assert [c["collection_name"] for c in second["collections"]] == ["gamma"]
    assert "pagination_token" not in second
    # exactly full last page: no token either
    exact = mgmt.get("/v1/collections", params={"limit": 3}).json()
    assert len(exact["collections"]) == 3 and "pagination_token" not in exact
    # default: name, descending
    assert [c["collection_name"] for c in mgmt.get("/v1/collections").json()["collections"]] == [
        "gamma", "beta", "alpha"]
    by_age = mgmt.get("/v1/collections", params={"sort_by": "COLLECTIONS_SORT_BY_AGE",
                                                 "order": "ORDERING_ASCENDING"}).json()
    assert [c["collection_name"] for c in by_age["collections"]] == ["beta", "alpha", "gamma"]
    filtered = mgmt.get("/v1/collections", params={"filter": 'collection_name:"AMM"'}).json()
    assert [c["collection_name"] for c in filtered["collections"]] == ["gamma"]
    assert mgmt.get("/v1/collections", params={"limit": 100}).status_code == 200
    assert_error(mgmt.get("/v1/collections", params={"limit": 101}), 400, CODE_400)
    assert_error(mgmt.get("/v1/collections", params={"order": "asc"}), 400, CODE_400)
    assert_error(mgmt.get("/v1/collections", params={"pagination_token": "garbage!"}), 400, CODE_400)


def test_collection_update_and_delete(mgmt: httpx.Client, api: httpx.Client, emu: XaiEmulator) -> None:
    # xAI contract §6.4 field_definition_updates; §6.5 delete → {}
    cid = make_collection(mgmt, field_definitions=[{"key": "crm_document_id"}, {"key": "tag"}])["collection_id"]
    fid = upload(api, "a.txt", b"a")["id"]
    add = mgmt.post(f"/v1/collections/{cid}/documents/{fid}", json={"fields": {"crm_document_id": "1", "tag": "x"}})
    assert add.status_code == 200
    resp = mgmt.put(f"/v1/collections/{cid}", json={"field_definition_updates": [
        {"field_definition": {"key": "source"}, "operation": "FIELD_DEFINITION_ADD"},
        {"field_definition": {"key": "tag"}, "operation": "FIELD_DEFINITION_DELETE"},
    ]})
    assert resp.status_code == 200, resp.text
    assert [d["key"] for d in resp.json()["field_definitions"]] == ["crm_document_id", "source"]
    # DELETE cascades: the value is gone from the document
    assert emu.collection_documents(cid)[fid]["fields"] == {"crm_document_id": "1"}
    doc = mgmt.get(f"/v1/collections/{cid}/documents/{fid}").json()
    assert doc["fields"] == {"crm_document_id": "1"}
    # ADD upserts by key
    upsert = mgmt.put(f"/v1/collections/{cid}", json={"field_definition_updates": [
        {"field_definition": {"key": "source", "description": "where"}, "operation": "FIELD_DEFINITION_ADD"}]})
    assert [d["description"] for d in upsert.json()["field_definitions"]] == ["", "where"]
    # a new field with required=true is rejected, and nothing else in that request is applied
    rejected = mgmt.put(f"/v1/collections/{cid}", json={"collection_name": "renamed", "field_definition_updates": [
        {"field_definition": {"key": "mandatory", "required": True}, "operation": "FIELD_DEFINITION_ADD"}]})
    assert_error(rejected, 400, CODE_400, "required")
    assert emu.collection(cid)["collection_name"] == "CRM docs"
    # lowerCamelCase update (official PUT example)
    renamed = mgmt.put(f"/v1/collections/{cid}", json={"collectionName": "Renamed", "collectionDescription": "d"})
    assert renamed.json()["collection_name"] == "Renamed" and renamed.json()["collection_description"] == "d"
    assert_error(mgmt.put("/v1/collections/collection_nope", json={"collection_name": "x"}), 404, CODE_404)
    deleted = mgmt.delete(f"/v1/collections/{cid}")
    assert deleted.status_code == 200 and deleted.json() == {}
    assert_error(mgmt.get(f"/v1/collections/{cid}"), 404, CODE_404)
    assert_error(mgmt.delete(f"/v1/collections/{cid}"), 404, CODE_404)
    assert api.get(f"/v1/files/{fid}").status_code == 200  # §6.5 [I]: files survive


# ---------------------------------------------------------------------------------------------------
# Documents (§7, §8, §9)


@pytest.fixture
def crm(mgmt: httpx.Client) -> str:
    cid: str = make_collection(mgmt, field_definitions=CRM_FIELDS)["collection_id"]
    return cid


def test_add_document_validation(api: httpx.Client, mgmt: httpx.Client, crm: str) -> None:
    # xAI contract §7.1 + §9: keys must be declared, required enforced, unique → 409 [I], values are strings
    fid = upload(api, "a.txt", b"a")["id"]
    other = upload(api, "b.txt", b"b")["id"]
    url = f"/v1/collections/{crm}/documents/{fid}"
    assert_error(mgmt.post(url, json={"fields": {"crm_document_id": "1", "colour": "red"}}), 400, CODE_400,
                 "Unknown field")
    assert_error(mgmt.post(url, json={"fields": {"content_sha256": "abc"}}), 400, CODE_400, "required")
    assert_error(mgmt.post(url, json={"fields": {"crm_document_id": 7}}), 400, CODE_400, "string")
    assert_error(mgmt.post(url, json=["not", "an", "object"]), 400, CODE_400)
    assert mgmt.post(url, json={"fields": {"crm_document_id": "1", "isbn": "978"}}).status_code == 200
    clash = mgmt.post(f"/v1/collections/{crm}/documents/{other}",
                      json={"fields": {"crm_document_id": "2", "isbn": "978"}})
    assert_error(clash, 409, CODE_409, "isbn")
    # the same crm id twice is fine: crm_document_id is not unique (§9 swap advice)
    ok = mgmt.post(f"/v1/collections/{crm}/documents/{other}", json={"fields": {"crm_document_id": "1"}})
    assert ok.status_code == 200 and ok.json() == {}
    # §7.1 [I]: missing file or collection → 404
    assert_error(mgmt.post(f"/v1/collections/{crm}/documents/file_nope", json={}), 404, CODE_404)
    assert_error(mgmt.post(f"/v1/collections/collection_nope/documents/{fid}"), 404, CODE_404)


def test_add_document_with_no_body_at_all(api: httpx.Client, mgmt: httpx.Client, emu: XaiEmulator) -> None:
    # xAI contract §7.1: the official guide sends POST with no body and no Content-Type → 200 {}
    cid = make_collection(mgmt, field_definitions=[{"key": "tag"}])["collection_id"]
    fid = upload(api, "a.txt", b"a")["id"]
    resp = mgmt.post(f"/v1/collections/{cid}/documents/{fid}")
    assert resp.status_code == 200 and resp.json() == {}
    sent = emu.requests("POST", rf"/v1/collections/{cid}/documents/{fid}")[-1]
    assert sent.body == b"" and "content-type" not in {k.lower() for k in sent.headers}
    assert emu.collection_documents(cid)[fid]["fields"] == {}


def test_re_adding_a_member_is_idempotent(api: httpx.Client, mgmt: httpx.Client, crm: str,
                                          emu: XaiEmulator) -> None:
    # xAI contract §7.1 [I]: already a member → 200 {}, fields replaced if given, never duplicated
    fid = upload(api, "a.txt", b"a")["id"]
    url = f"/v1/collections/{crm}/documents/{fid}"
    assert mgmt.post(url, json={"fields": {"crm_document_id": "1", "content_sha256": "old"}}).status_code == 200
    again = mgmt.post(url, json={"fields": {"crm_document_id": "1", "content_sha256": "new"}})
    assert again.status_code == 200 and again.json() == {}
    assert mgmt.post(url).status_code == 200  # no body: fields kept
    docs = mgmt.get(f"/v1/collections/{crm}/documents").json()["documents"]
    assert len(docs) == 1
    assert docs[0]["fields"] == {"crm_document_id": "1", "content_sha256": "new"}
    assert emu.collection(crm)["documents_count"] == 1


def test_document_metadata_shape(api: httpx.Client, mgmt: httpx.Client, crm: str, clock: FakeClock) -> None:
    # xAI contract §7.3 DocumentMetadata; §2 size_bytes is an int64 → JSON string
    content = b"The quarterly revenue grew.\n" * 10
    fid = upload(api, "tsla.txt", content, "text/plain")["id"]
    assert mgmt.post(f"/v1/collections/{crm}/documents/{fid}",
                     json={"fields": {"crm_document_id": "42"}}).status_code == 200
    clock.advance(DELAY)
    doc = mgmt.get(f"/v1/collections/{crm}/documents/{fid}").json()
    meta = doc["file_metadata"]
    assert meta["file_id"] == fid
    assert meta["name"] == "tsla.txt"
    assert meta["size_bytes"] == str(len(content)) and isinstance(meta["size_bytes"], str)
    assert meta["content_type"] == "text/plain"
    assert RFC3339.match(meta["created_at"])
    assert meta["expires_at"] is None
    assert meta["hash"] == hashlib.sha256(content).hexdigest()
    assert meta["upload_status"] and meta["processing_status"] == "complete"
    assert doc["fields"] == {"crm_document_id": "42"}
    assert doc["status"] == "DOCUMENT_STATUS_PROCESSED"
    assert doc["error_message"] == ""
    assert RFC3339.match(doc["last_indexed_at"])


def test_status_transitions_follow_the_injected_clock(api: httpx.Client, mgmt: httpx.Client, crm: str,
                                                      clock: FakeClock, emu: XaiEmulator) -> None:
    # xAI contract §8: PROCESSING → PROCESSED after the delay, last_indexed_at set; §7.6 reindex → PROCESSING again
    fid = upload(api, "a.txt", b"hello")["id"]
    url = f"/v1/collections/{crm}/documents/{fid}"
    assert mgmt.post(url, json={"fields": {"crm_document_id": "1"}}).status_code == 200
    doc = mgmt.get(url).json()
    assert doc["status"] == "DOCUMENT_STATUS_PROCESSING"
    assert doc["file_metadata"]["processing_status"] == "processing"
    assert not doc.get("last_indexed_at")
    clock.advance(DELAY - 0.01)
    assert mgmt.get(url).json()["status"] == "DOCUMENT_STATUS_PROCESSING"
    clock.advance(0.01)
    doc = mgmt.get(url).json()
    assert doc["status"] == "DOCUMENT_STATUS_PROCESSED"
    first_indexed = doc["last_indexed_at"]
    clock.advance(100)
    reindex = mgmt.patch(url)
    assert reindex.status_code == 200 and reindex.json() == {}
    doc = mgmt.get(url).json()
    assert doc["status"] == "DOCUMENT_STATUS_PROCESSING"
    assert doc["last_indexed_at"] == first_indexed  # previous index time kept while re-processing
    clock.advance(DELAY)
    doc = mgmt.get(url).json()
    assert doc["status"] == "DOCUMENT_STATUS_PROCESSED" and doc["last_indexed_at"] > first_indexed
    assert_error(mgmt.patch(f"/v1/collections/{crm}/documents/file_nope"), 404, CODE_404)
    # force_status (test hook) pins the status until the next reindex
    emu.force_status(crm, fid, "FAILED", "boom")
    doc = mgmt.get(url).json()
    assert (doc["status"], doc["error_message"]) == ("DOCUMENT_STATUS_FAILED", "boom")
    assert emu.collection_documents(crm)[fid]["status"] == "DOCUMENT_STATUS_FAILED"


@pytest.mark.parametrize(("name", "content"), [
    ("report.pdf", b"this is not a pdf"),
    ("empty.txt", b""),
    ("letter.docx", b"plain text pretending"),
    ("my-test-failed-doc.txt", b"fine text"),
])
def test_unparseable_content_fails_with_error_message(api: httpx.Client, mgmt: httpx.Client, crm: str,
                                                      clock: FakeClock, name: str, content: bytes) -> None:
    # xAI contract §8: FAILED carries error_message (the SDK fake fails on `test-failed`)
    fid = upload(api, name, content, "application/octet-stream")["id"]
    url = f"/v1/collections/{crm}/documents/{fid}"
    assert mgmt.post(url, json={"fields": {"crm_document_id": "1"}}).status_code == 200
    assert mgmt.get(url).json()["status"] == "DOCUMENT_STATUS_PROCESSING"
    clock.advance(DELAY)
    doc = mgmt.get(url).json()
    assert doc["status"] == "DOCUMENT_STATUS_FAILED"
    assert doc["error_message"]
    assert doc["file_metadata"]["processing_status"] == "failed"
    assert "last_indexed_at" not in doc


def test_valid_pdf_and_docx_are_processed(api: httpx.Client, mgmt: httpx.Client, crm: str,
                                          clock: FakeClock) -> None:
    # xAI contract §4 supported content: real PDF / zip-based Office files parse fine
    for name, content in (("ok.pdf", b"%PDF-1.7\n..."), ("ok.docx", b"PK\x03\x04rest")):
        fid = upload(api, name, content, "application/octet-stream")["id"]
        assert mgmt.post(f"/v1/collections/{crm}/documents/{fid}",
                         json={"fields": {"crm_document_id": name}}).status_code == 200
    clock.advance(DELAY)
    docs = mgmt.get(f"/v1/collections/{crm}/documents").json()["documents"]
    assert {d["status"] for d in docs} == {"DOCUMENT_STATUS_PROCESSED"}
    assert {d["file_metadata"]["content_type"] for d in docs} == {
        "application/pdf", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"}


def test_list_documents_filters_and_pagination(api: httpx.Client, mgmt: httpx.Client, crm: str,
                                               clock: FakeClock) -> None:
    # xAI contract §7.3 filter: status:…, status:!…, fields.<key>:"…", name:"…", AND; pagination as §6.2
    good = []
    for i in range(3):
        fid = upload(api, f"quarterly-{i}.txt", b"text")["id"]
        mgmt.post(f"/v1/collections/{crm}/documents/{fid}", json={"fields": {"crm_document_id": f"c{i}"}})
        good.append(fid)
    bad = upload(api, "broken.pdf", b"nope")["id"]
    mgmt.post(f"/v1/collections/{crm}/documents/{bad}", json={"fields": {"crm_document_id": "c9"}})
    clock.advance(DELAY)
    late = upload(api, "late.txt", b"text")["id"]
    mgmt.post(f"/v1/collections/{crm}/documents/{late}", json={"fields": {"crm_document_id": "c1"}})

    def ids(flt: str) -> set[str]:
        resp = mgmt.get(f"/v1/collections/{crm}/documents", params={"filter": flt})
        assert resp.status_code == 200, resp.text
        return {d["file_metadata"]["file_id"] for d in resp.json()["documents"]}

    assert ids("status:DOCUMENT_STATUS_PROCESSED") == set(good)
    assert ids("status:DOCUMENT_STATUS_PROCESSING") == {late}
    assert ids("status:!DOCUMENT_STATUS_FAILED") == {*good, late}
    assert ids('fields.crm_document_id:"c1"') == {good[1], late}
    assert ids('fields.crm_document_id = "c1" AND status:DOCUMENT_STATUS_PROCESSED') == {good[1]}
    assert ids('name:"quarterly" AND status:!DOCUMENT_STATUS_FAILED') == set(good)
    assert ids('fields.undeclared:"x"') == set()
    assert_error(mgmt.get(f"/v1/collections/{crm}/documents", params={"filter": "flavour:sweet"}), 400, CODE_400)
    # pagination: sort by name ascending, token omitted on the last page
    names: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "order": "ORDERING_ASCENDING", "sort_by": "DOCUMENTS_SORT_BY_NAME"}
        if token:
            params["pagination_token"] = token
        body = mgmt.get(f"/v1/collections/{crm}/documents", params=params).json()
        names.extend(d["file_metadata"]["name"] for d in body["documents"])
        pages += 1
        token = body.get("pagination_token")
        if not token:
            break
    assert names == sorted(["quarterly-0.txt", "quarterly-1.txt", "quarterly-2.txt", "broken.pdf", "late.txt"])
    assert pages == 3
    assert_error(mgmt.get(f"/v1/collections/{crm}/documents", params={"limit": 101}), 400, CODE_400)
    assert_error(mgmt.get("/v1/collections/collection_nope/documents"), 404, CODE_404)


def test_batch_get(api: httpx.Client, mgmt: httpx.Client, crm: str) -> None:
    # xAI contract §7.5: repeated file_ids (and comma-separated), unknown ids omitted, cap 100 [I]
    a = upload(api, "a.txt", b"a")["id"]
    b = upload(api, "b.txt", b"b")["id"]
    c = upload(api, "c.txt", b"c")["id"]
    for fid in (a, b, c):
        mgmt.post(f"/v1/collections/{crm}/documents/{fid}", json={"fields": {"crm_document_id": fid}})
    url = f"{emu_path(crm)}/documents:batchGet"
    resp = mgmt.get(url, params=[("file_ids", a), ("file_ids", "file_unknown"), ("file_ids", c)])
    assert resp.status_code == 200, resp.text
    assert {d["file_metadata"]["file_id"] for d in resp.json()["documents"]} == {a, c}
    assert set(resp.json()) == {"documents"}
    comma = mgmt.get(url, params={"file_ids": f"{a},{b}"})
    assert {d["file_metadata"]["file_id"] for d in comma.json()["documents"]} == {a, b}
    assert_error(mgmt.get(url, params=[("file_ids", f"file_{i}") for i in range(101)]), 400, CODE_400)
    assert_error(mgmt.get(url), 400, CODE_400)


def emu_path(cid: str) -> str:
    return f"/v1/collections/{cid}"


def test_remove_document(api: httpx.Client, mgmt: httpx.Client, crm: str) -> None:
    # xAI contract §7.7: {} then 404 on the second remove; the file stays in /v1/files
    fid = upload(api, "a.txt", b"a")["id"]
    url = f"/v1/collections/{crm}/documents/{fid}"
    mgmt.post(url, json={"fields": {"crm_document_id": "1"}})
    first = mgmt.delete(url)
    assert first.status_code == 200 and first.json() == {}
    assert_error(mgmt.delete(url), 404, CODE_404)
    assert_error(mgmt.get(url), 404, CODE_404)
    assert api.get(f"/v1/files/{fid}").status_code == 200


def test_reset_restores_constructor_settings(emu: XaiEmulator, api: httpx.Client) -> None:
    # fixture hygiene: reset() forgets state and restores keys/limits
    upload(api, "a.txt", b"a")
    emu.set_keys(api_key="other")
    emu.max_file_bytes = 1
    emu.reset()
    assert emu.files() == {}
    assert (emu.api_key, emu.max_file_bytes) == (API_KEY, 50_000_000)
    assert api.get("/v1/files").json()["data"] == []


def test_inspection_api(emu: XaiEmulator, mgmt: httpx.Client) -> None:
    # test hooks used by the e2e suites; a foreign (hand-added) doc has no fields even if some are required
    cid = emu.create_collection("seeded", [{"key": "crm_document_id", "required": True}])
    assert mgmt.get(f"/v1/collections/{cid}").json()["collection_name"] == "seeded"
    fid = emu.add_foreign_file_to_collection(cid, "manual.txt", b"by hand")
    assert emu.collection_documents(cid) == {fid: {"fields": {}, "status": "DOCUMENT_STATUS_PROCESSING",
                                                   "error_message": ""}}
    assert emu.files()[fid]["filename"] == "manual.txt"
    assert emu.collection(cid)["documents_count"] == 1
    with pytest.raises(KeyError):
        emu.collection("collection_nope")
    assert emu.file_bytes("file_nope") is None


def test_search_keyword_scoring(api: httpx.Client, mgmt: httpx.Client, crm: str, clock: FakeClock) -> None:
    # xAI contract §10: POST /v1/documents/search on the api host, matches[] with fields
    hit = upload(api, "rev.txt", b"Revenue grew in the last quarter. Revenue!")["id"]
    miss = upload(api, "cats.txt", b"Cats sleep a lot.")["id"]
    for fid, crm_id in ((hit, "1"), (miss, "2")):
        mgmt.post(f"/v1/collections/{crm}/documents/{fid}", json={"fields": {"crm_document_id": crm_id}})
    clock.advance(DELAY)
    resp = api.post("/v1/documents/search", json={"query": "revenue quarter", "source": {"collection_ids": [crm]}})
    assert resp.status_code == 200, resp.text
    matches = resp.json()["matches"]
    assert [m["file_id"] for m in matches] == [hit]
    assert matches[0]["fields"] == {"crm_document_id": "1"} and matches[0]["collection_ids"] == [crm]
    filtered = api.post("/v1/documents/search", json={"query": "revenue", "source": {"collection_ids": [crm]},
                                                      "filter": 'crm_document_id = "2"'})
    assert filtered.json()["matches"] == []
    assert_error(api.post("/v1/documents/search", json={"query": "x"}), 400, CODE_400)


# ---------------------------------------------------------------------------------------------------
# Filter subset (unit level)


def test_filter_subset_semantics() -> None:
    # xAI contract §5.2/§7.3/§9: AIP-160 subset; OR binds tighter than AND
    row: dict[str, FieldValue] = {"name": ("text", "Quarterly.PDF"), "size_bytes": ("int", 10),
                                  "status": ("exact", "A"), "expires_at": ("time", None)}

    def check(flt: str) -> bool:
        return evaluate(parse(flt), lambda f: row[f])

    assert check('name:"quarterly"')
    assert not check('name = "quarterly"')
    assert check("size_bytes>=10 AND size_bytes<11")
    assert check("status:B OR status:A AND size_bytes:10")
    assert not check("NOT status:A")
    assert check("status:!B")
    assert check("expires_at = null")
    assert not check("expires_at > 2025-01-01T00:00:00Z")
    assert parse("  ") is None
    with pytest.raises(FilterError):
        parse("name:")
    with pytest.raises(FilterError):
        check("size_bytes > ten")
