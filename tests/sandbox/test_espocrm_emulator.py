"""Contract tests for the EspoCRM emulator: real HTTP on loopback, checked against
the EspoCRM contract (docs/contracts.md) (section numbers in the comments refer to it)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from docsync_sandbox.espocrm import EspoEmulator
from tests.fakes import FakeClock

KEY = "espo-test-key"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 24
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


@pytest.fixture(scope="module")
def server() -> Iterator[EspoEmulator]:
    # one listener for the module (stopping costs ~0.5 s); state is reset per test
    with EspoEmulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def occ_server() -> Iterator[EspoEmulator]:
    emulator = EspoEmulator(api_key=KEY, optimistic_concurrency=True,
                            field_names={"xaiSyncStatus": "cXaiSyncStatus", "preview": "cPreview"})
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def emu(server: EspoEmulator, clock: FakeClock) -> EspoEmulator:
    server.reset()
    server.api_key, server.secret_key, server.clock = KEY, None, clock
    return server


@pytest.fixture
def occ(occ_server: EspoEmulator, clock: FakeClock) -> EspoEmulator:
    occ_server.reset()
    occ_server.clock = clock
    return occ_server


def client(emulator: EspoEmulator, **headers: str) -> httpx.Client:
    return httpx.Client(base_url=emulator.url + "/api/v1/", headers=headers, timeout=10)


@pytest.fixture
def api(emu: EspoEmulator) -> Iterator[httpx.Client]:
    with client(emu, **{"X-Api-Key": KEY}) as http:
        yield http


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.headers.get("x-status-reason")
    return [item["id"] for item in response.json()["list"]]


def search(http: httpx.Client, params: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return http.get("Document", params={"searchParams": json.dumps(params)}, headers=headers)


def data_uri(content: bytes, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(content).decode()


# ---------------------------------------------------------------------------------------------------
# §1 auth


def test_api_key_ok_and_wrong(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §1.1 X-Api-Key; §1.4 401 empty body, no X-Status-Reason
    assert api.get("App/user").status_code == 200
    with client(emu, **{"X-Api-Key": "wrong"}) as bad:
        response = bad.get("Document")
    assert response.status_code == 401
    assert response.content == b""
    assert "x-status-reason" not in response.headers
    # §1.4 WWW-Authenticate only when no credentials were sent (GET, not XHR, no Referer)
    with client(emu) as anonymous:
        missing = anonymous.get("Document")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Basic realm=""'
    assert "www-authenticate" not in response.headers


def test_revoked_key(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §1.1: only the current apiKey of the API user authenticates
    emu.set_api_key("new-key")
    assert api.get("App/user").status_code == 401
    with client(emu, **{"X-Api-Key": "new-key"}) as fresh:
        assert fresh.get("App/user").status_code == 200


def hmac_header(key: str, secret: str, method: str, path: str, *, legacy: bool = False) -> str:
    mac = hmac.new(secret.encode(), f"{method} {path}".encode(), hashlib.sha256)
    digest = mac.digest() if legacy else mac.hexdigest().encode()
    return base64.b64encode(key.encode() + b":" + digest).decode()


def test_hmac_signature(emu: EspoEmulator) -> None:
    # EspoCRM contract §1.2: base64(apiKey:hex(HMAC(secret, "METHOD /path"))), query not signed; legacy binary accepted
    emu.secret_key = "s3cret"
    doc = emu.add_document("Signed", PDF, "s.pdf")
    path = f"/Document/{doc}"
    with client(emu) as http:
        good = hmac_header(KEY, "s3cret", "GET", path)
        ok = http.get(f"Document/{doc}", params={"select": "id"}, headers={"X-Hmac-Authorization": good})
        assert ok.status_code == 200 and ok.json()["id"] == doc
        legacy = hmac_header(KEY, "s3cret", "GET", path, legacy=True)
        assert http.get(f"Document/{doc}", headers={"X-Hmac-Authorization": legacy}).status_code == 200
        wrong = hmac_header(KEY, "other", "GET", path)
        denied = http.get(f"Document/{doc}", headers={"X-Hmac-Authorization": wrong})
        assert denied.status_code == 401 and denied.content == b""
        signed_for_put = hmac_header(KEY, "s3cret", "PUT", path)
        assert http.get(f"Document/{doc}", headers={"X-Hmac-Authorization": signed_for_put}).status_code == 401
        # §1.1: an HMAC API user cannot use the plain X-Api-Key
        assert http.get(f"Document/{doc}", headers={"X-Api-Key": KEY}).status_code == 401


def test_failed_attempt_limit(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §1.4: 10 failures within 60 s -> 403, empty body, no reason (even for good credentials)
    with client(emu, **{"X-Api-Key": "wrong"}) as bad:
        for _ in range(10):
            assert bad.get("App/user").status_code == 401
    blocked = api.get("App/user")
    assert blocked.status_code == 403 and blocked.content == b""
    assert "x-status-reason" not in blocked.headers


# ---------------------------------------------------------------------------------------------------
# §2 lists


def seed_five(emu: EspoEmulator, clock: FakeClock) -> list[str]:
    created = []
    for n in range(5):
        created.append(emu.add_document(f"Doc {n}", PDF, f"doc{n}.pdf"))
        clock.advance(1)
    return created


def test_max_size_limit(api: httpx.Client) -> None:
    # EspoCRM contract §2.1 maxSize: > 200 -> 403 with the exact reason; 200 is fine
    response = api.get("Document", params={"maxSize": 201})
    assert response.status_code == 403
    assert response.headers["x-status-reason"] == "Max size should not exceed 200. Use offset and limit."
    assert api.get("Document", params={"maxSize": 200}).status_code == 200
    assert search(api, {"maxSize": 201}).status_code == 403
    # §2.1 searchParams present -> all other params ignored
    both = api.get("Document", params={"maxSize": 201, "searchParams": json.dumps({"maxSize": 5})})
    assert both.status_code == 200


def test_offset_paging_default_order_and_total(emu: EspoEmulator, clock: FakeClock, api: httpx.Client) -> None:
    # EspoCRM contract §2.1 offset, §2.2 default order createdAt desc, §2.3 total = full count
    docs = seed_five(emu, clock)
    page = api.get("Document", params={"maxSize": 2, "offset": 2})
    assert page.json()["total"] == 5
    assert ids(page) == [docs[2], docs[1]]
    ascending = api.get("Document", params={"orderBy": "name"})  # orderBy without order -> ASC
    assert ids(ascending) == docs


def test_id_tiebreak_and_deleted_not_listed(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §2.2 tiebreaker id in the same direction; §2.5 deleted rows never listed
    docs = [emu.add_document(f"Same second {n}", PDF) for n in range(3)]  # same createdAt (fixed clock)
    assert docs == sorted(docs)  # §2.5 ids are roughly time-ordered
    assert ids(api.get("Document")) == docs[::-1]
    emu.delete_document(docs[1])
    assert ids(api.get("Document", params={"order": "asc"})) == [docs[0], docs[2]]


def test_no_total_header(emu: EspoEmulator, clock: FakeClock, api: httpx.Client) -> None:
    # EspoCRM contract §2.3 X-No-Total: -1 = more records exist, -2 = no more
    seed_five(emu, clock)
    more = api.get("Document", params={"maxSize": 3}, headers={"X-No-Total": "true"})
    assert more.json()["total"] == -1 and len(more.json()["list"]) == 3
    last = api.get("Document", params={"maxSize": 3, "offset": 3}, headers={"X-No-Total": "true"})
    assert last.json()["total"] == -2 and len(last.json()["list"]) == 2
    exact = api.get("Document", params={"maxSize": 5}, headers={"X-No-Total": "true"})
    assert exact.json()["total"] == -2


def test_select(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §2.1 select: unknown ignored, id/assignedUserId/createdById always, order-by attribute added
    emu.add_document("Sel", PDF, "sel.pdf")
    item = api.get("Document", params={"select": "name,noSuchThing", "orderBy": "name"}).json()["list"][0]
    assert set(item) == {"id", "name", "assignedUserId", "createdById"}
    item = search(api, {"select": ["fileName"]}).json()["list"][0]
    assert set(item) == {"id", "fileName", "assignedUserId", "createdById", "createdAt"}
    assert item["fileName"] == "sel.pdf"
    # §2.3 without select: all attributes, no link-multiple, never noLoad accounts
    full = api.get("Document").json()["list"][0]
    assert {"fileId", "xaiCollections", "previewId", "deleted"} <= set(full)
    assert "teamsIds" not in full and "accountsIds" not in full
    assert "teamsIds" in api.get("Document", params={"select": "teamsIds"}).json()["list"][0]


@pytest.fixture
def where_docs(emu: EspoEmulator) -> dict[str, str]:
    acme = emu.add_account("Acme", "col-acme")
    docs = {
        "active": emu.add_document("Alpha contract", PDF, xaiCollections=["c1", "c2"], accounts=[acme]),
        "draft": emu.add_document("Beta notes", PDF, status="Draft", xaiSyncStatus="synced"),
        "expired": emu.add_document("Gamma", PDF, status="Expired", xaiCollections=["c3"]),
    }
    docs["acme"] = acme
    return docs


WHERE_CASES: list[tuple[str, list[dict[str, Any]], list[str]]] = [
    ("in", [{"type": "in", "attribute": "status", "value": ["Draft", "Expired"]}], ["draft", "expired"]),
    ("equals", [{"type": "equals", "attribute": "xaiSyncStatus", "value": "synced"}], ["draft"]),
    ("or", [{"type": "or", "value": [
        {"type": "equals", "attribute": "status", "value": "Draft"},
        {"type": "and", "value": [{"type": "startsWith", "attribute": "name", "value": "Gam"},
                                  {"type": "isNotNull", "attribute": "fileId"}]}]}], ["draft", "expired"]),
    ("arrayAnyOf", [{"type": "arrayAnyOf", "attribute": "xaiCollections", "value": ["c2", "c3"]}],
     ["active", "expired"]),
    ("linkedWith", [{"type": "linkedWith", "attribute": "accounts", "value": ["ACME"]}], ["active"]),
    ("contains", [{"type": "contains", "attribute": "name", "value": "NOTE"}], ["draft"]),
    ("notEquals", [{"type": "notEquals", "attribute": "status", "value": "Active"}], ["draft", "expired"]),
]


def php_query(items: list[dict[str, Any]], acme: str) -> httpx.QueryParams:
    """Flatten where items into PHP bracket form (`where[0][value][]=...`) like the official clients."""
    pairs: list[tuple[str, str | int | float | bool | None]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, sub in value.items():
                walk(f"{prefix}[{key}]", sub)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            pairs.extend((f"{prefix}[]", acme if v == "ACME" else v) for v in value)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(f"{prefix}[{index}]", sub)
        else:
            pairs.append((prefix, str(value)))

    walk("where", items)
    return httpx.QueryParams(pairs)


@pytest.mark.parametrize(("case", "items", "expected"), WHERE_CASES, ids=[c[0] for c in WHERE_CASES])
def test_where_bracket_query(api: httpx.Client, where_docs: dict[str, str], case: str,
                             items: list[dict[str, Any]], expected: list[str]) -> None:
    # EspoCRM contract §2.4 where items in PHP bracket query form
    response = api.get("Document", params=php_query(items, where_docs["acme"]))
    assert sorted(ids(response)) == sorted(where_docs[name] for name in expected)


@pytest.mark.parametrize(("case", "items", "expected"), WHERE_CASES, ids=[c[0] for c in WHERE_CASES])
def test_where_search_params(api: httpx.Client, where_docs: dict[str, str], case: str,
                             items: list[dict[str, Any]], expected: list[str]) -> None:
    # EspoCRM contract §2.1 searchParams JSON, §2.4 where items
    resolved = json.loads(json.dumps(items).replace('"ACME"', json.dumps(where_docs["acme"])))
    response = search(api, {"where": resolved})
    assert sorted(ids(response)) == sorted(where_docs[name] for name in expected)
    assert response.json()["total"] == len(expected)


def test_keyset_paging_greater_than_id(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §2.5 keyset paging: greaterThan on id, orderBy id asc
    docs = [emu.add_document(f"K{n}", PDF) for n in range(5)]
    page = search(api, {"orderBy": "id", "order": "asc", "maxSize": 2,
                        "where": [{"type": "greaterThan", "attribute": "id", "value": docs[1]}]},
                  headers={"X-No-Total": "true"})
    assert ids(page) == docs[2:4] and page.json()["total"] == -1


def test_array_is_empty_and_datetime_compare(emu: EspoEmulator, clock: FakeClock, api: httpx.Client) -> None:
    # EspoCRM contract §6.1 empty arrays are null or []; §2.4 arrayIsEmpty, greaterThanOrEquals on modifiedAt (UTC)
    empty = emu.add_document("Empty", PDF, xaiCollections=None)
    clock.advance(3600)
    later = emu.add_document("Later", PDF, xaiCollections=["x"])
    assert ids(search(api, {"where": [{"type": "arrayIsEmpty", "attribute": "xaiCollections"}]})) == [empty]
    since = [{"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": "2025-03-01 12:30:00"}]
    assert ids(search(api, {"where": since})) == [later]


@pytest.mark.parametrize(("item", "reason"), [
    ({"type": "fuzzy", "attribute": "name", "value": "x"}, "Unknown where item type 'fuzzy'."),
    ({"type": "equals", "attribute": "nope", "value": "x"}, "Not existing attribute 'nope' in where."),
    ({"type": "equals", "attribute": "name", "value": "x", "extra": 1}, "Unknown parameter 'extra'."),
    ({"type": "equals", "value": "x"}, "No 'attribute' in where item."),
    ({"type": "in", "attribute": "status", "value": "Active"}, "Bad where item 'in'."),
])
def test_where_errors(api: httpx.Client, item: dict[str, Any], reason: str) -> None:
    # EspoCRM contract §2.4 where validation -> 400 with X-Status-Reason, empty body
    response = search(api, {"where": [item]})
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == reason
    assert response.content == b""


def test_where_error_in_bracket_form(api: httpx.Client) -> None:
    # EspoCRM contract §2.4: the same checks apply to the PHP query form
    response = api.get("Document", params={"where[0][type]": "bogus", "where[0][attribute]": "name"})
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == "Unknown where item type 'bogus'."


def test_order_errors(api: httpx.Client) -> None:
    # EspoCRM contract §2.1 orderBy / order validation
    bad_field = api.get("Document", params={"orderBy": "colour"})
    assert bad_field.status_code == 400
    assert bad_field.headers["x-status-reason"] == "Order by non-existing field 'colour'."
    bad_order = api.get("Document", params={"orderBy": "name", "order": "sideways"})
    assert bad_order.status_code == 400 and bad_order.headers["x-status-reason"] == "order value is bad."
    assert api.get("Document", params={"orderBy": "file", "order": "DESC"}).status_code == 200


def test_search_params_type_errors(api: httpx.Client) -> None:
    # EspoCRM contract §2.1/§8: searchParams must be JSON; maxSize must be an integer
    bad_json = api.get("Document", params={"searchParams": "{nope"})
    assert bad_json.status_code == 400 and bad_json.headers["x-status-reason"] == "Invalid search params JSON."
    assert search(api, {"maxSize": "10"}).headers["x-status-reason"] == "maxSize must be integer."


def test_primary_filter(where_docs: dict[str, str], api: httpx.Client) -> None:
    # EspoCRM contract §2.1 primaryFilter active (status Active) / unknown -> 400
    assert ids(api.get("Document", params={"primaryFilter": "active"})) == [where_docs["active"]]
    unknown = api.get("Document", params={"primaryFilter": "mine"})
    assert unknown.status_code == 400
    assert unknown.headers["x-status-reason"] == "No primary filter 'mine' for 'Document'."


# ---------------------------------------------------------------------------------------------------
# §3 read / update / delete


def test_get_record_and_404(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §3.1 full value map incl. link-multiple (not noLoad); 404 reason
    doc = emu.add_document("Read me", PDF, "r.pdf", teamsIds=[])
    record = api.get(f"Document/{doc}").json()
    assert record["id"] == doc and record["fileName"] == "r.pdf" and record["deleted"] is False
    assert "teamsIds" in record and "accountsIds" not in record
    missing = api.get("Document/00000000000000000")
    assert missing.status_code == 404
    assert missing.headers["x-status-reason"] == "Record 00000000000000000 does not exist."
    assert missing.content == b""
    assert api.get("Nothing").headers["x-status-reason"] == "Controller 'Nothing' does not exist."


def test_put_partial_update_and_modified_at(emu: EspoEmulator, clock: FakeClock, api: httpx.Client) -> None:
    # EspoCRM contract §3.2 partial update, unknown/system attributes dropped; §2.5 modifiedAt only on a real change
    doc = emu.add_document("Upd", PDF, "u.pdf")
    before = emu.document(doc)
    clock.advance(60)
    same = api.put(f"Document/{doc}", json={"name": "Upd", "bogusField": 1, "modifiedAt": "2000-01-01 00:00:00"})
    assert same.status_code == 200 and same.json()["modifiedAt"] == before["modifiedAt"]
    assert "bogusField" not in same.json()
    assert emu.document(doc)["modifiedById"] == before["modifiedById"]
    changed = api.put(f"Document/{doc}", json={"xaiSyncStatus": "synced", "xaiCollections": ["c1"]})
    assert changed.status_code == 200
    body = changed.json()
    assert body["xaiSyncStatus"] == "synced" and body["xaiCollections"] == ["c1"] and body["name"] == "Upd"
    assert body["modifiedAt"] == "2025-03-01 12:01:00" and body["modifiedById"] == emu.api_user_id
    # §3.2 PATCH is identical to PUT
    patched = api.patch(f"Document/{doc}", json={"md5": "d41d8cd98f00b204e9800998ecf8427e"})
    assert patched.status_code == 200 and emu.document(doc)["md5"] == "d41d8cd98f00b204e9800998ecf8427e"


def test_put_body_handling(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §3.2: non-JSON Content-Type -> body treated as {}; malformed JSON -> 500; 404 on update
    doc = emu.add_document("Body", PDF)
    ignored = api.put(f"Document/{doc}", content=b'{"name": "X"}', headers={"Content-Type": "text/plain"})
    assert ignored.status_code == 200 and emu.document(doc)["name"] == "Body"
    broken = api.put(f"Document/{doc}", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert broken.status_code == 500 and "x-status-reason" not in broken.headers
    missing = api.put("Document/00000000000000000", json={"name": "x"})
    assert missing.status_code == 404
    assert missing.headers["x-status-reason"] == "Record 00000000000000000 not found."


@pytest.mark.parametrize(("payload", "field", "kind"), [
    ({"xaiSyncStatus": "done"}, "xaiSyncStatus", "valid"),
    ({"dateiStatus": "Unbekannt"}, "dateiStatus", "valid"),
    ({"md5": "x" * 101}, "md5", "maxLength"),
    ({"name": ""}, "name", "required"),
    ({"name": "a<b"}, "name", "pattern"),
    ({"xaiCollections": "c1"}, "xaiCollections", "array"),
])
def test_validation_failure(emu: EspoEmulator, api: httpx.Client, payload: dict[str, Any], field: str,
                            kind: str) -> None:
    # EspoCRM contract §8 field validation -> 400 + validationFailure body; nothing is saved
    doc = emu.add_document("Valid", PDF)
    response = api.put(f"Document/{doc}", json=payload)
    assert response.status_code == 400
    assert response.headers["x-status-reason"] == (
        f"Field validation failure; entityType: Document, field: {field}, type: {kind}.")
    assert response.json() == {"messageTranslation": {"label": "validationFailure", "scope": None,
                                                      "data": {"field": field, "type": kind}}}
    assert emu.document(doc)["name"] == "Valid"


def test_delete(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §3.4 / §11: the API user's role deletes nothing (Document delete "no"): 403
    # "No delete access." before the record is looked up; a person's (soft) delete makes it 404 and unlisted
    doc = emu.add_document("Gone", PDF)
    response = api.delete(f"Document/{doc}")
    assert response.status_code == 403 and response.headers["x-status-reason"] == "No delete access."
    assert api.delete("Document/doesnotexist").headers["x-status-reason"] == "No delete access."
    assert emu.document(doc)["deleted"] is False
    emu.delete_document(doc)
    assert api.get(f"Document/{doc}").status_code == 404
    assert ids(api.get("Document")) == []


def test_optimistic_concurrency(occ: EspoEmulator, clock: FakeClock) -> None:
    # EspoCRM contract §3.3: versionNumber; stale X-Version-Number + differing sent field -> 409 body; else update
    doc = occ.add_document("Occ", PDF, cXaiSyncStatus="syncing")
    with client(occ, **{"X-Api-Key": KEY}) as http:
        assert http.get(f"Document/{doc}").json()["versionNumber"] == 1
        clock.advance(5)
        occ.user_update(doc, name="Occ edited by a human")
        assert occ.document(doc)["versionNumber"] == 2
        conflict = http.put(f"Document/{doc}", json={"cXaiSyncStatus": "synced"},
                            headers={"X-Version-Number": "1"})
        assert conflict.status_code == 409 and conflict.headers["x-status-reason"] == "modified"
        assert conflict.json() == {"values": {"cXaiSyncStatus": "syncing"}, "versionNumber": 2}
        assert occ.document(doc)["cXaiSyncStatus"] == "syncing"
        unchanged = http.put(f"Document/{doc}", json={"cXaiSyncStatus": "syncing"},
                             headers={"X-Version-Number": "1"})
        assert unchanged.status_code == 200 and unchanged.json()["versionNumber"] == 2
        current = http.put(f"Document/{doc}", json={"cXaiSyncStatus": "synced"},
                           headers={"X-Version-Number": "2"})
        assert current.status_code == 200 and current.json()["versionNumber"] == 3
        assert http.put(f"Document/{doc}", json={"cXaiSyncStatus": "failed"}).json()["versionNumber"] == 4


# ---------------------------------------------------------------------------------------------------
# §4 related records


def test_related_accounts(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §4.1 GET Document/{id}/accounts with list params; unknown link / missing parent -> 404
    acme = emu.add_account("Acme", "col-acme")
    other = emu.add_account("Other", None)
    emu.add_account("Unrelated", "col-x")
    doc = emu.add_document("Linked", PDF, accounts=[acme, other])
    response = api.get(f"Document/{doc}/accounts", params={"select": "id,xaiCollectionId", "orderBy": "name"})
    assert response.json() == {"total": 2, "list": [{"id": acme, "xaiCollectionId": "col-acme", "name": "Acme"},
                                                    {"id": other, "xaiCollectionId": None, "name": "Other"}]}
    emu.unlink(doc, "accounts", other)
    assert ids(api.get(f"Document/{doc}/accounts")) == [acme]
    unknown = api.get(f"Document/{doc}/planets")
    assert unknown.status_code == 404 and unknown.headers["x-status-reason"] == "Link does not exist."
    assert api.get("Document/00000000000000000/accounts").status_code == 404
    contact = emu.add_contact("Erika Mustermann", "col-erika")
    emu.link(doc, "contacts", contact)
    people = api.get(f"Document/{doc}/contacts").json()["list"]
    assert [(p["firstName"], p["lastName"], p["xaiCollectionId"]) for p in people] == [
        ("Erika", "Mustermann", "col-erika")]


# ---------------------------------------------------------------------------------------------------
# §5 attachments


def upload(http: httpx.Client, name: str, content: bytes, mime: str, field: str = "file",
           **extra: Any) -> httpx.Response:
    body = {"name": name, "type": mime, "role": "Attachment", "relatedType": "Document", "field": field,
            "file": data_uri(content, mime), **extra}
    return http.post("Attachment", json=body)


def test_post_attachment_file_field(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §5.2 upload to Document.file: size recomputed, relatedId cleared, accept list enforced
    response = upload(api, "nda.pdf", PDF, "application/pdf", size=1, relatedId="abc")
    assert response.status_code == 200
    body = response.json()
    assert body["size"] == len(PDF) and "relatedId" not in body and body["relatedType"] == "Document"
    assert emu.attachment(body["id"])["relatedId"] is None  # type: ignore[index]
    assert body["field"] == "file" and body["role"] == "Attachment" and "file" not in body
    assert emu.attachment_bytes(body["id"]) == PDF
    html = upload(api, "page.html", b"<html></html>", "text/html")
    assert html.status_code == 403 and html.headers["x-status-reason"] == "Not allowed file type."
    role = upload(api, "nda.pdf", PDF, "application/pdf", role="Export File")
    assert role.status_code == 403 and role.headers["x-status-reason"] == "Role not allowed."


@pytest.mark.parametrize(("name", "content", "mime", "status", "reason"), [
    ("p.webp", WEBP, "image/webp", 200, None),
    ("p.png", PNG, "image/png", 200, None),
    ("p.webp", PNG, "image/webp", 403, "Detected mime type does not correspond to extension."),
    ("p.webp", WEBP, "image/png", 403, "Passed type does not correspond to extension."),
    ("p.pdf", PDF, "application/pdf", 403, "Not allowed file type."),
    ("p.jpg", JPEG, "image/jpeg", 200, None),
])
def test_post_attachment_image_field(api: httpx.Client, name: str, content: bytes, mime: str, status: int,
                                     reason: str | None) -> None:
    # EspoCRM contract §5.2 image fields: extension mime allowed, type == extension mime, detected content matches
    response = upload(api, name, content, mime, field="preview")
    assert response.status_code == status
    assert response.headers.get("x-status-reason") == reason
    if status == 200:
        assert response.json()["type"] == mime and response.json()["size"] == len(content)


def test_post_attachment_bad_requests(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §5.2 errors
    no_comma = api.post("Attachment", json={"name": "a.pdf", "type": "application/pdf", "relatedType": "Document",
                                            "field": "file", "file": "JVBERi0x"})
    assert no_comma.status_code == 400 and no_comma.headers["x-status-reason"] == "Bad file contents."
    no_file = api.post("Attachment", json={"name": "a.pdf", "relatedType": "Document", "field": "file"})
    assert no_file.status_code == 400 and no_file.headers["x-status-reason"] == "No file contents."
    no_field = api.post("Attachment", json={"name": "a.pdf", "file": data_uri(PDF, "application/pdf")})
    assert no_field.headers["x-status-reason"] == "No `field` and `parentType`."
    bad_field = upload(api, "a.pdf", PDF, "application/pdf", field="nope")
    assert bad_field.status_code == 403 and bad_field.headers["x-status-reason"] == "Field 'nope' does not exist."
    wrong_type = upload(api, "a.pdf", PDF, "application/pdf", field="name")
    assert wrong_type.headers["x-status-reason"] == "Field type 'varchar' is not allowed for Attachment."
    emu.max_upload_bytes = 100  # PHP post_max_size: the body arrives empty
    try:
        assert upload(api, "big.pdf", PDF * 10, "application/pdf").status_code == 400
    finally:
        emu.max_upload_bytes = 256 * 1024 * 1024


def test_set_preview_replaces_previous_attachment(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §5.3: setting previewId relates the new attachment and deletes the previous one
    doc = emu.add_document("Prev", PDF)
    first = upload(api, "a.webp", WEBP, "image/webp", field="preview").json()["id"]
    second = upload(api, "b.webp", WEBP, "image/webp", field="preview").json()["id"]
    assert api.put(f"Document/{doc}", json={"previewId": first}).json()["previewName"] == "a.webp"
    assert emu.attachment(first)["relatedId"] == doc  # type: ignore[index]
    assert api.put(f"Document/{doc}", json={"previewId": second}).status_code == 200
    old = emu.attachment(first)
    assert old is not None and old["deleted"] is True and emu.attachment_bytes(first) is None
    assert api.get(f"Attachment/file/{first}").status_code == 404
    assert emu.attachment_bytes(second) == WEBP


def test_relate_non_existing_attachment(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §5.3: non-existent attachment id -> 403 with the cannotRelateNonExisting body
    doc = emu.add_document("Rel", PDF)
    response = api.put(f"Document/{doc}", json={"previewId": "00000000000000000"})
    assert response.status_code == 403
    assert response.json()["messageTranslation"]["label"] == "cannotRelateNonExisting"
    assert emu.document(doc)["previewId"] is None


def test_download_attachment(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §5.5 GET Attachment/file/{id}: raw bytes, Content-Disposition, Content-Length, Content-Type
    doc = emu.add_document("Down", PDF, "vertrag.pdf")
    file_id = emu.document(doc)["fileId"]
    response = api.get(f"Attachment/file/{file_id}")
    assert response.status_code == 200 and response.content == PDF
    assert response.headers["content-disposition"] == 'attachment; filename="vertrag.pdf"'
    assert response.headers["content-length"] == str(len(PDF))
    assert response.headers["content-type"] == "application/pdf"
    assert api.get("Attachment/file/00000000000000000").status_code == 404
    # a user uploads a new file: fileId changes, old attachment deleted, modifiedAt bumps (seed API)
    new_id = emu.replace_file(doc, b"%PDF-1.7 new")
    assert emu.document(doc)["fileId"] == new_id != file_id
    assert api.get(f"Attachment/file/{file_id}").status_code == 404
    assert api.get(f"Attachment/file/{new_id}").content == b"%PDF-1.7 new"


# ---------------------------------------------------------------------------------------------------
# §6.3 Metadata, §7.2 App/user


def test_metadata_key_serves_the_design_documents_fields(api: httpx.Client) -> None:
    # EspoCRM contract §6.3 GET Metadata?key=dot.path; §10.1 fields made from the seed have exactly its options
    fields = api.get("Metadata", params={"key": "entityDefs.Document.fields"}).json()
    assert fields["xaiCollections"]["type"] == "array"
    assert fields["xaiSyncStatus"] == {"type": "enum", "options": ["syncing", "synced", "failed"], "isCustom": True}
    assert fields["dateiStatus"]["options"] == ["Neu", "Geändert", "Gesynct", "Fehler"]
    assert fields["preview"]["type"] == "image"
    assert "Document" in api.get("Metadata").json()["entityDefs"]


def test_metadata_for_a_missing_key_is_an_empty_200(api: httpx.Client) -> None:
    # EspoCRM contract §10.2: the service returns null and the action processor writes no body
    answer = api.get("Metadata", params={"key": "entityDefs.Document.fields.nope"})
    assert answer.status_code == 200 and answer.content == b""


def test_enum_value_outside_the_options_refuses_the_whole_update(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §10.1: 400, the exact reason and body; no other attribute of that PUT is saved
    doc_id = emu.add_document("D", PDF, "d.pdf")
    for value in ("pending", "", None):
        answer = api.put(f"Document/{doc_id}", json={"md5": "a" * 32, "xaiSyncStatus": value})
        assert answer.status_code == 400, value
        assert answer.headers["X-Status-Reason"] == (
            "Field validation failure; entityType: Document, field: xaiSyncStatus, type: valid.")
        assert answer.json() == {"messageTranslation": {"label": "validationFailure", "scope": None,
                                                        "data": {"field": "xaiSyncStatus", "type": "valid"}}}
        assert emu.document(doc_id)["md5"] is None
    assert api.put(f"Document/{doc_id}", json={"dateiStatus": ""}).status_code == 400
    assert api.put(f"Document/{doc_id}", json={"xaiSyncStatus": "syncing"}).status_code == 200


def test_generated_fields_accept_their_extra_options() -> None:
    # EspoCRM contract §10.1: "" is accepted only where "" is one of the options (here: docsync's generated fields)
    from tests.espocrm_fields import generated_fields

    with EspoEmulator(api_key=KEY, document_fields=generated_fields()) as emulator, \
            client(emulator, **{"X-Api-Key": KEY}) as http:
        doc_id = emulator.add_document("D", PDF, "d.pdf")
        assert http.put(f"Document/{doc_id}", json={"xaiSyncStatus": "pending"}).status_code == 200
        assert http.put(f"Document/{doc_id}", json={"xaiSyncStatus": ""}).status_code == 200


def test_page_cap_is_configurable_and_reported_in_app_user() -> None:
    # EspoCRM contract §10.4: maxSize above recordListMaxSizeLimit is 403 with the reason (§10.3); App/user reports it;
    # omitting maxSize returns pages of exactly the cap
    with EspoEmulator(api_key=KEY, max_size_limit=3) as emulator, client(emulator, **{"X-Api-Key": KEY}) as http:
        for n in range(5):
            emulator.add_document(f"D{n}", PDF, f"d{n}.pdf")
        assert http.get("App/user").json()["settings"]["recordListMaxSizeLimit"] == 3
        refused = http.get("Document", params={"maxSize": 4})
        assert refused.status_code == 403
        assert refused.headers["X-Status-Reason"] == "Max size should not exceed 3. Use offset and limit."
        assert len(http.get("Document").json()["list"]) == 3


def test_write_back_with_a_replaced_file_id_is_refused(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §10.9: sending the fileId one worked on catches a concurrent replacement (the old attachment is
    # gone, so relating it is a 403 data error, §10.3)
    doc_id = emu.add_document("D", PDF, "d.pdf")
    worked_on = emu.document(doc_id)["fileId"]
    emu.replace_file(doc_id, b"%PDF-1.7 new")
    answer = api.put(f"Document/{doc_id}", json={"fileId": worked_on, "md5": "b" * 32})
    assert answer.status_code == 403
    assert answer.headers["X-Status-Reason"].startswith("Can't relate with non-existing record.")
    assert emu.document(doc_id)["md5"] is None and emu.document(doc_id)["fileId"] != worked_on


def test_metadata_custom_names(occ: EspoEmulator) -> None:
    # EspoCRM contract §6.2 custom field names (c prefix) and §3.3 optimisticConcurrencyControl flag
    with client(occ, **{"X-Api-Key": KEY}) as http:
        defs = http.get("Metadata", params={"key": "entityDefs.Document"}).json()
    assert "cXaiSyncStatus" in defs["fields"] and "xaiSyncStatus" not in defs["fields"]
    assert defs["fields"]["cPreview"]["type"] == "image" and defs["optimisticConcurrencyControl"] is True


def test_app_user(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §1.3/§7.2 GET App/user -> user.type = api
    body = api.get("App/user").json()
    assert body["user"]["type"] == "api" and body["user"]["id"] == emu.api_user_id
    assert {"user", "acl", "preferences", "token", "settings", "language", "appParams"} <= set(body)
