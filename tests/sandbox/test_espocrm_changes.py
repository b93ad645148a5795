"""Contract tests for the EspoCRM emulator's change-feed capabilities (EspoCRM contract §2.5, §10.5-10.7): what
moves ``modifiedAt``, keyset paging by (``modifiedAt``, ``id``), ``accountsIds`` only with the override,
Stream notes and ``GlobalStream``, ``linkedWith``, counts, soft delete, and the index used for a million records."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from docsync_sandbox.espocrm import EspoEmulator
from tests.fakes import FakeClock

KEY = "espo-test-key"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"


@pytest.fixture(scope="module")
def server() -> Iterator[EspoEmulator]:
    with EspoEmulator(api_key=KEY) as emulator:
        yield emulator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def emu(server: EspoEmulator, clock: FakeClock) -> Iterator[EspoEmulator]:
    server.reset()
    server.clock = clock
    server.global_stream = False
    server.stream.dedupe_pairs = False
    server.use_index = False
    server.set_accounts_load(False)
    yield server


@pytest.fixture
def api(emu: EspoEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url + "/api/v1/", headers={"X-Api-Key": KEY}, timeout=10) as http:
        yield http


def search(http: httpx.Client, params: dict[str, Any], *, no_total: bool = False) -> httpx.Response:
    headers = {"X-No-Total": "true"} if no_total else None
    response = http.get("Document", params={"searchParams": json.dumps(params)}, headers=headers)
    assert response.status_code == 200, response.headers.get("x-status-reason")
    return response


def stream(http: httpx.Client, **params: Any) -> httpx.Response:
    query = {key: json.dumps(value) if key == "searchParams" else value for key, value in params.items()}
    return http.get("GlobalStream", params=query)


# ---------------------------------------------------------------------------------------------------
# §10.5 modifiedAt


def test_links_do_not_move_modified_at_but_a_put_of_accounts_ids_does(emu: EspoEmulator, clock: FakeClock) -> None:
    # EspoCRM contract §10.5: linking/unlinking writes the relation only; a PUT with accountsIds always counts
    # as changed
    a1, a2 = emu.add_account("A"), emu.add_account("B")
    doc = emu.add_document("D", PDF, "d.pdf", accounts=[a1])
    created = emu.document(doc)["modifiedAt"]
    clock.advance(60)
    emu.link(doc, "accounts", a2)
    emu.unlink(doc, "accounts", a1)
    assert emu.document(doc)["modifiedAt"] == created
    assert emu.document(doc)["accountsIds"] == [a2]
    clock.advance(60)
    emu.put_accounts_ids(doc, [a2])  # the same links: still a save
    assert emu.document(doc)["modifiedAt"] == "2026-03-01 12:02:00"


def test_an_identical_put_does_not_move_modified_at(emu: EspoEmulator, api: httpx.Client, clock: FakeClock) -> None:
    # EspoCRM contract §2.5: a PUT with identical values does not bump modifiedAt
    doc = emu.add_document("D", PDF, "d.pdf")
    clock.advance(30)
    assert api.put(f"Document/{doc}", json={"name": "D"}).status_code == 200
    assert emu.document(doc)["modifiedAt"] == "2026-03-01 12:00:00"
    assert api.put(f"Document/{doc}", json={"name": "E"}).status_code == 200
    assert emu.document(doc)["modifiedAt"] == "2026-03-01 12:00:30"


def test_or_group_and_keyset_paging_by_modified_at_then_id(emu: EspoEmulator, api: httpx.Client,
                                                           clock: FakeClock) -> None:
    # EspoCRM contract §10.5: (dateiStatus in [...]) OR (modifiedAt >= T) in one request; orderBy modifiedAt adds id
    old = [emu.add_document(f"old {n}", PDF, "o.pdf", dateiStatus="Gesynct") for n in range(3)]
    waiting = emu.add_document("waiting", PDF, "w.pdf", dateiStatus="Neu")
    clock.advance(3600)
    same_second = [emu.add_document(f"new {n}", PDF, "n.pdf", dateiStatus="Gesynct") for n in range(5)]
    where = [{"type": "or", "value": [
        {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": "2026-03-01 12:30:00"},
        {"type": "in", "attribute": "dateiStatus", "value": ["Neu", "Geändert"]}]}]
    seen: list[str] = []
    cursor: tuple[str, str] | None = None
    totals = []
    while True:
        conditions = list(where)
        if cursor is not None:
            conditions.append({"type": "or", "value": [
                {"type": "greaterThan", "attribute": "modifiedAt", "value": cursor[0]},
                {"type": "and", "value": [{"type": "equals", "attribute": "modifiedAt", "value": cursor[0]},
                                          {"type": "greaterThan", "attribute": "id", "value": cursor[1]}]}]})
        page = search(api, {"maxSize": 2, "orderBy": "modifiedAt", "order": "asc", "select": ["id", "modifiedAt"],
                            "where": conditions}, no_total=True).json()
        totals.append(page["total"])
        seen += [item["id"] for item in page["list"]]
        if page["total"] == -2:
            break
        cursor = (page["list"][-1]["modifiedAt"], page["list"][-1]["id"])
    assert seen == [waiting, *sorted(same_second)]  # id breaks the tie within one second
    assert totals == [-1, -1, -2]  # X-No-Total: -1 = more, -2 = no more (§2.3)
    assert not set(old) & set(seen)


def test_deleted_records_are_not_listed_and_a_restore_is_silent(emu: EspoEmulator, api: httpx.Client,
                                                                clock: FakeClock) -> None:
    # EspoCRM contract §10.5: soft delete; an admin's restore does not change modifiedAt
    keep, gone = emu.add_document("keep", PDF, "k.pdf"), emu.add_document("gone", PDF, "g.pdf")
    emu.delete_document(gone)
    assert [i["id"] for i in search(api, {"select": ["id"]}).json()["list"]] == [keep]
    assert api.get(f"Document/{gone}").status_code == 404
    clock.advance(600)
    emu.restore_document(gone)
    assert search(api, {"select": ["id"]}).json()["total"] == 2
    assert emu.document(gone)["modifiedAt"] == "2026-03-01 12:00:00"


def test_count_of_an_id_range(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §2.3 total, §2.4 greaterThanOrEquals/lessThan on id
    docs = sorted(emu.add_document(f"d{n}", PDF, "d.pdf") for n in range(6))
    emu.delete_document(docs[2])
    where = [{"type": "greaterThanOrEquals", "attribute": "id", "value": docs[1]},
             {"type": "lessThan", "attribute": "id", "value": docs[4]}]
    answer = search(api, {"maxSize": 1, "orderBy": "id", "order": "asc", "select": ["id"], "where": where}).json()
    assert answer["total"] == 2 and [i["id"] for i in answer["list"]] == [docs[1]]


# ---------------------------------------------------------------------------------------------------
# §10.6 accountsIds


def test_accounts_ids_only_with_the_no_load_override(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §10.6: noLoad: selecting accountsIds is silently ignored; with noLoad: false it is listed
    a1, a2 = emu.add_account("A"), emu.add_account("B")
    doc = emu.add_document("D", PDF, "d.pdf", accounts=[a2, a1])
    params = {"select": ["id", "accountsIds"]}
    assert "accountsIds" not in search(api, params).json()["list"][0]
    assert "accountsIds" not in api.get(f"Document/{doc}").json()
    fields = api.get("Metadata", params={"key": "entityDefs.Document.fields.accounts"}).json()
    assert fields["noLoad"] is True
    emu.set_accounts_load(True)
    listed = search(api, params).json()["list"][0]
    assert listed["accountsIds"] == sorted([a1, a2])
    assert "accountsIds" not in search(api, {"select": ["id"]}).json()["list"][0]  # only when selected
    assert api.get("Metadata", params={"key": "entityDefs.Document.fields.accounts.noLoad"}).json() is False
    emu.unlink(doc, "accounts", a1)
    assert search(api, params).json()["list"][0]["accountsIds"] == [a2]


def test_linked_with(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §2.4 linkedWith on the accounts relation
    a1, a2 = emu.add_account("A"), emu.add_account("B")
    d1 = emu.add_document("1", PDF, "1.pdf", accounts=[a1])
    d2 = emu.add_document("2", PDF, "2.pdf", accounts=[a1, a2])
    emu.add_document("3", PDF, "3.pdf", accounts=[a2])
    emu.add_document("4", PDF, "4.pdf")
    where = [{"type": "linkedWith", "attribute": "accounts", "value": [a1]}]
    listed = search(api, {"select": ["id"], "orderBy": "id", "where": where}).json()
    assert [i["id"] for i in listed["list"]] == sorted([d1, d2]) and listed["total"] == 2


# ---------------------------------------------------------------------------------------------------
# §10.7 Stream notes, GlobalStream


def test_global_stream_needs_the_scope(emu: EspoEmulator, api: httpx.Client) -> None:
    # EspoCRM contract §10.7: GET GlobalStream needs the role scope GlobalStream
    assert stream(api).status_code == 403
    assert api.get("App/user").json()["acl"]["table"]["GlobalStream"] is False
    emu.global_stream = True
    assert stream(api).status_code == 200
    assert api.get("App/user").json()["acl"]["table"]["GlobalStream"] is True


def test_relate_and_unrelate_notes_from_either_side(emu: EspoEmulator, api: httpx.Client, clock: FakeClock) -> None:
    # EspoCRM contract §10.7: Relate/Unrelate notes, parentType Account, relatedType Document; newest first; number
    emu.global_stream = True
    a1, a2 = emu.add_account("A"), emu.add_account("B")
    doc = emu.add_document("D", PDF, "d.pdf", accounts=[a1])  # one CreateRelated note, links silent
    clock.advance(5)
    emu.link(doc, "accounts", a2)
    emu.unlink(doc, "accounts", a1)
    emu.link(doc, "accounts", a2)  # already related: a no-op, no note
    emu.link(doc, "accounts", a1, silent=True)  # a bulk relate writes none
    notes = stream(api).json()["list"]
    assert [(n["type"], n["parentType"], n["parentId"], n["relatedType"], n["relatedId"]) for n in notes] == [
        ("Unrelate", "Account", a1, "Document", doc), ("Relate", "Account", a2, "Document", doc),
        ("CreateRelated", "Account", a1, "Document", doc)]
    assert [n["number"] for n in notes] == [3, 2, 1]
    # where on the number cursor, type filter, beforeNumber paging, after (createdAt > T)
    where = [{"type": "greaterThan", "attribute": "number", "value": 1},
             {"type": "in", "attribute": "type", "value": ["Relate", "Unrelate"]}]
    page = stream(api, searchParams={"where": where, "maxSize": 1}).json()
    assert [n["number"] for n in page["list"]] == [3] and page["total"] == -1
    rest = stream(api, searchParams={"where": where, "maxSize": 1}, beforeNumber=3).json()
    assert [n["number"] for n in rest["list"]] == [2] and rest["total"] == -2
    assert [n["number"] for n in stream(api, after="2026-03-01 12:00:00").json()["list"]] == [3, 2]
    assert stream(api, searchParams={"maxSize": 201}).status_code == 403


def test_note_dedupe_of_old_versions(emu: EspoEmulator) -> None:
    # EspoCRM contract §10.7: 8.4.0-9.0.x write no second note for a pair that already has one; 9.1.0 does
    emu.global_stream = True
    account = emu.add_account("A")
    doc = emu.add_document("D", PDF, "d.pdf")
    for dedupe, expected in ((True, 2), (False, 4)):
        emu.stream.clear()
        emu.stream.dedupe_pairs = dedupe
        for _ in range(2):
            emu.link(doc, "accounts", account)
            emu.unlink(doc, "accounts", account)
        assert len(emu.stream.notes) == expected


def test_the_date_header_follows_the_server_clock(emu: EspoEmulator, api: httpx.Client, clock: FakeClock) -> None:
    # the HTTP Date header is the server's time (what a client's watermark is taken from)
    clock.advance(-86400 * 3)
    date = parsedate_to_datetime(api.get("App/user").headers["date"])
    assert date == datetime(2026, 2, 26, 12, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------
# the index (same answers as without it) and the bulk seed


def test_the_index_gives_the_same_answers(emu: EspoEmulator, api: httpx.Client, clock: FakeClock) -> None:
    rng = random.Random(7)
    accounts = [emu.add_account(f"A{n}") for n in range(3)]
    docs = []
    for n in range(60):
        clock.advance(rng.choice([0, 0, 1, 30]))
        docs.append(emu.add_document(f"d{n}", PDF, "d.pdf", dateiStatus=rng.choice(["Neu", "Gesynct", "Fehler"]),
                                     accounts=rng.sample(accounts, rng.randint(0, 2))))
    for doc in rng.sample(docs, 10):
        clock.advance(1)
        emu.user_update(doc, dateiStatus="Geändert")
    for doc in rng.sample(docs, 5):
        emu.user_update(doc, xaiSyncStatus="failed")
    docs.append(emu.add_document("no status", PDF, "n.pdf", dateiStatus=None))
    for doc in rng.sample(docs, 5):
        emu.delete_document(doc)
    pivot = sorted(docs)[20]
    queries: list[dict[str, Any]] = [
        {"orderBy": "id", "where": [{"type": "greaterThan", "attribute": "id", "value": pivot}], "maxSize": 7},
        {"orderBy": "id", "maxSize": 1, "where": [{"type": "greaterThanOrEquals", "attribute": "id", "value": pivot},
                                                  {"type": "lessThan", "attribute": "id", "value": sorted(docs)[40]}]},
        {"orderBy": "modifiedAt", "maxSize": 50, "where": [{"type": "or", "value": [
            {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": "2026-03-01 12:05:00"},
            {"type": "in", "attribute": "dateiStatus", "value": ["Neu", "Geändert"]}]}]},
        {"orderBy": "id", "where": [{"type": "linkedWith", "attribute": "accounts", "value": [accounts[1]]}]},
        {"orderBy": "modifiedAt", "where": [{"type": "or", "value": [  # the plain run's feed
            {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": "2026-03-01 13:00:00"},
            {"type": "or", "value": [{"type": "in", "attribute": "dateiStatus", "value": ["Geändert", ""]},
                                     {"type": "isNull", "attribute": "dateiStatus"},
                                     {"type": "in", "attribute": "xaiSyncStatus", "value": ["failed"]}]}]}]},
        {"orderBy": "modifiedAt", "where": [{"type": "equals", "attribute": "modifiedAt",
                                             "value": emu.document(docs[30])["modifiedAt"]}]},
    ]
    for query in queries:
        query["select"] = ["id", "modifiedAt"]
        emu.use_index = False
        plain = [search(api, query, no_total=flag).json() for flag in (False, True)]
        emu.use_index = True
        indexed = [search(api, query, no_total=flag).json() for flag in (False, True)]
        assert indexed == plain, query
        assert plain[0]["list"], query  # each query finds something


def test_bulk_seed(emu: EspoEmulator, api: httpx.Client) -> None:
    account = emu.add_account("A")
    ids = emu.bulk_seed(1000, accounts=[account], values=lambda n, doc_id: {"dateiStatus": "Gesynct"})
    assert ids == sorted(ids) and len(set(ids)) == 1000
    answer = search(api, {"maxSize": 1, "orderBy": "id", "select": ["id"]}).json()
    assert answer["total"] == 1000
    where = [{"type": "in", "attribute": "dateiStatus", "value": ["Neu"]}]
    assert search(api, {"select": ["id"], "where": where}).json()["total"] == 0
    linked = [{"type": "linkedWith", "attribute": "accounts", "value": [account]}]
    assert search(api, {"maxSize": 1, "select": ["id"], "where": linked}).json()["total"] == 1000
