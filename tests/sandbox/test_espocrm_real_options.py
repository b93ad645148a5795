"""The EspoCRM emulator's options for what a real server may do that the loopback fixture cannot be switched into
(EspoCRM contract §11, docs/contracts.md). The real answers they reproduce are pinned on both backends by
``tests/contract`` (cited per test); here each option is checked as a keyword argument and as an attribute a test
flips between requests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.espocrm_collation import collation_key
from tests.fakes import FakeClock

KEY = "espo-test-key"
PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"


@pytest.fixture(scope="module")
def server() -> Iterator[EspoEmulator]:
    with EspoEmulator(api_key=KEY, global_stream=True) as emulator:
        yield emulator


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC))


@pytest.fixture
def emu(server: EspoEmulator, clock: FakeClock) -> EspoEmulator:
    server.reset()
    server.clock = clock
    server.date_skew = 0.0
    server.short_pages = server.count_disabled = server.relate_note_dedup = False
    server.account_read = server.account_stream = server.document_read = "all"
    server.read_only_fields = set()
    return server


@pytest.fixture
def api(emu: EspoEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url + "/api/v1/", headers={"X-Api-Key": KEY}, timeout=10) as http:
        yield http


def listing(http: httpx.Client, params: dict[str, Any], no_total: bool = False) -> dict[str, Any]:
    headers = {"X-No-Total": "true"} if no_total else {}
    response = http.get("Document", params={"searchParams": json.dumps(params)}, headers=headers)
    assert response.status_code == 200, response.headers.get("x-status-reason")
    answer: dict[str, Any] = response.json()
    return answer


def test_options_are_keyword_arguments_too() -> None:
    emulator = EspoEmulator(date_skew=-3.5, account_stream="own", account_read="own", relate_note_dedup=True,
                            read_only_fields={"file"}, count_disabled=True, short_pages=True)
    assert (emulator.date_skew, emulator.account_stream, emulator.account_read) == (-3.5, "own", "own")
    assert emulator.relate_note_dedup and emulator.stream.dedupe_pairs and emulator.version == "9.0.3"
    assert emulator.read_only_fields == {"file"} and emulator.count_disabled and emulator.short_pages
    with pytest.raises(ValueError, match="account_stream"):
        EspoEmulator(account_stream="some")


def test_date_skew_moves_the_date_header_and_not_modified_at(emu: EspoEmulator, api: httpx.Client,
                                                            clock: FakeClock) -> None:
    # the Date clock apart from the database clock (issue 20); on a plain installation they agree within a
    # second: tests/contract/test_answers.py::test_x_app_timestamp_is_a_build_stamp_and_date_is_the_time
    doc = emu.add_document("Skew", PDF)
    emu.date_skew = 90.0
    answer = api.put(f"Document/{doc}", json={emu.attr("dateiStatus"): "Gesynct"})
    assert parsedate_to_datetime(answer.headers["date"]) == datetime(2026, 3, 1, 12, 1, 30, tzinfo=UTC)
    assert answer.json()["modifiedAt"] == "2026-03-01 12:00:00"
    assert parsedate_to_datetime(answer.headers["last-modified"]) == datetime(2026, 3, 1, 12, 1, 30, tzinfo=UTC)
    emu.date_skew = -30.0  # a clock jump between two requests
    assert parsedate_to_datetime(api.get("App/user").headers["date"]) == datetime(2026, 3, 1, 11, 59, 30,
                                                                                   tzinfo=UTC)
    clock.advance(-3600)  # the database clock jumps back too
    emu.user_update(doc, name="Edited")
    assert emu.document(doc)["modifiedAt"] == "2026-03-01 11:00:00"


def test_x_app_timestamp_stays_put(emu: EspoEmulator, api: httpx.Client, clock: FakeClock) -> None:
    first = api.get("App/user").headers["x-app-timestamp"]
    clock.advance(3600)
    assert api.get("App/user").headers["x-app-timestamp"] == first == str(emu.app_timestamp)


def test_short_pages_answer_minus_one_until_the_end(emu: EspoEmulator, api: httpx.Client) -> None:
    # §11.2: a page shorter than maxSize with total -1 means "more exist"; only -2 or an empty page ends
    docs = [emu.add_document(f"Doc {i}", PDF) for i in range(7)]
    emu.short_pages = True
    seen: list[str] = []
    offset = 0
    pages = []
    while True:
        page = listing(api, {"select": ["id"], "orderBy": "id", "order": "asc", "maxSize": 4, "offset": offset})
        pages.append((len(page["list"]), page["total"]))
        seen += [item["id"] for item in page["list"]]
        offset += len(page["list"])
        if page["total"] == -2 or not page["list"]:
            break
    assert pages == [(2, -1), (2, -1), (3, -2)]
    assert seen == sorted(docs)
    by_name = listing(api, {"select": ["id"], "orderBy": "name", "maxSize": 4})
    assert (len(by_name["list"]), by_name["total"]) == (2, -1)
    emu.short_pages = False
    assert listing(api, {"select": ["id"], "maxSize": 4})["total"] == 7


def test_count_disabled_answers_minus_one_or_minus_two_even_with_the_index(emu: EspoEmulator,
                                                                         api: httpx.Client) -> None:
    # pinned on both backends:
    # tests/contract/test_lists.py::test_count_disabled_makes_every_total_minus_one_or_minus_two
    emu.bulk_seed(5)
    emu.count_disabled = True
    assert listing(api, {"select": ["id"], "maxSize": 2, "orderBy": "id"})["total"] == -1
    assert listing(api, {"select": ["id"], "maxSize": 5, "orderBy": "id"})["total"] == -2
    emu.count_disabled = False
    assert listing(api, {"select": ["id"], "maxSize": 2, "orderBy": "id"})["total"] == 5


def test_relate_note_dedup_as_8_4_to_9_0(emu: EspoEmulator, api: httpx.Client) -> None:
    # §10.7: link → unlink → link leaves no new Relate note; 9.2.7 writes one:
    # tests/contract/test_acl.py::test_relate_and_unrelate_notes_and_a_relink_writes_a_new_note
    emu.relate_note_dedup = True
    account = emu.add_account("A")
    doc = emu.add_document("D", PDF)
    emu.link(doc, "accounts", account)
    emu.unlink(doc, "accounts", account)
    emu.link(doc, "accounts", account)
    answer = api.get("GlobalStream", params={"maxSize": 10}).json()
    assert [n["type"] for n in answer["list"]] == ["Unrelate", "Relate"]
    assert api.get("App/user").json()["settings"]["version"] == "9.0.3"  # what docsync judges it by
    emu.relate_note_dedup = False
    assert api.get("App/user").json()["settings"]["version"] == "9.2.7"


def test_explicit_ids_are_case_insensitive_keys(emu: EspoEmulator, api: httpx.Client) -> None:
    # pinned on both backends: tests/contract/test_lists.py::test_explicit_ids_order_and_page_case_insensitively
    emu.add_document("Upper", PDF, record_id="ABCDEF0123456789Z")
    with pytest.raises(ValueError, match="Duplicate entry"):
        emu.add_document("Lower", PDF, record_id="abcdef0123456789z")
    lower = emu.add_document("lower", PDF, record_id="abcdef0123456789a")
    assert api.get("Document/abcdef0123456789z").json()["id"] == "ABCDEF0123456789Z"
    ids = [i["id"] for i in listing(api, {"select": ["id"], "orderBy": "id", "order": "asc"})["list"]]
    assert ids == [lower, "ABCDEF0123456789Z"]
    emu.bulk_seed(0)  # the index path (bench) orders the same way
    ids = [i["id"] for i in listing(api, {"select": ["id"], "orderBy": "id", "order": "asc",
                                          "where": [{"type": "greaterThan", "attribute": "id",
                                                     "value": "ABCDEF0123456789A"}]}, no_total=True)["list"]]
    assert ids == ["ABCDEF0123456789Z"]


def test_account_stream_own_needs_the_account_assigned_to_the_api_user(emu: EspoEmulator,
                                                                      api: httpx.Client) -> None:
    # pinned on both backends:
    # tests/contract/test_acl.py::test_global_stream_shows_only_notes_of_accounts_the_role_may_stream
    doc = emu.add_document("D", PDF)
    mine = emu.add_account("Mine", assigned_user_id=emu.api_user_id)
    theirs = emu.add_account("Theirs")
    emu.link(doc, "accounts", mine)
    emu.link(doc, "accounts", theirs)
    emu.account_stream = "own"
    assert [n["parentId"] for n in api.get("GlobalStream").json()["list"]] == [mine]
    emu.assign_account(theirs, emu.api_user_id)  # a person reassigns it: its notes show up
    assert [n["parentId"] for n in api.get("GlobalStream").json()["list"]] == [theirs, mine]
    emu.account_read = "no"  # no read: Account is not among the parent types at all
    assert api.get("GlobalStream").json() == {"total": -2, "list": []}
    assert api.get("Account").headers["x-status-reason"] == "No read access."


def test_the_collation_key_orders_as_mariadb_utf8mb4_unicode_ci() -> None:
    # observed on MariaDB 10.11 (ORDER BY a VARCHAR of each printable ASCII character):
    observed = "`^_-,;:!?.'\"()[]{}@*/\\&#%+<=>|~$0123456789AaBbCcDdEeFfGgHhIiJjKkLlMmNnOoPpQqRrSsTtUuVvWwXxYyZz"
    assert sorted(observed, key=lambda ch: (collation_key(ch), ch)) == list(observed)
    assert collation_key("a") == collation_key("A") == collation_key("ä") == collation_key("a  ")
    assert collation_key("ss") != collation_key("ß")
    assert collation_key("65f0c1a2b3c4d5e6f") == "65f0c1a2b3c4d5e6f"  # EspoCRM's own ids are their own key


def test_hiding_a_document_narrows_the_role_app_user_shows(emu: EspoEmulator, api: httpx.Client) -> None:
    # pinned on both backends:
    # tests/contract/test_acl.py::test_a_hidden_document_is_403_and_absent_from_lists_and_counts
    doc = emu.add_document("Hidden", PDF)
    assert api.get("App/user").json()["acl"]["table"]["Document"]["read"] == "all"
    emu.hide_document(doc.upper())
    assert api.get("App/user").json()["acl"]["table"]["Document"]["read"] == "team"
    assert api.get(f"Document/{doc}").headers["x-status-reason"] == "No 'read' access."
    emu.unhide_document(doc)
    assert api.get(f"Document/{doc}").status_code == 200
    with pytest.raises(ValueError, match="document_read"):
        emu.document_read = "some"
