"""EspoCRM contract §10.7/§11.2 (docs/contracts.md): ``GET GlobalStream`` as docsync asks it (``searchParams`` JSON
with ``where`` on ``number``/``type``/``parentType`` plus the ``beforeNumber`` query parameter, which the server
reads beside ``searchParams``: ``Tools/Stream/Api/GetGlobal.php``), on both backends."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.contract.backends import Backend


def page(http: httpx.Client, where: list[dict[str, Any]], max_size: int, **extra: Any) -> httpx.Response:
    return http.get("GlobalStream", params={"searchParams": json.dumps({"maxSize": max_size, "where": where}),
                                            **extra})


def test_docsyncs_query_pages_through_every_note_newest_first(backend: Backend) -> None:
    http = backend.client()
    doc = backend.add_document(backend.unique("Feed"))
    accounts = [backend.add_account(backend.unique("Acme")) for _ in range(3)]
    backend.link(doc, accounts)
    backend.unlink(doc, accounts[0])
    mine = [{"type": "equals", "attribute": "relatedId", "value": doc}]
    newest = page(http, mine, 1).json()["list"][0]["number"]
    where = [{"type": "greaterThan", "attribute": "number", "value": newest - 4},
             {"type": "in", "attribute": "type", "value": ["Relate", "Unrelate", "CreateRelated"]},
             {"type": "in", "attribute": "parentType", "value": ["Account"]}, *mine]
    seen: list[tuple[str, str]] = []
    before: int | None = None
    totals = []
    while True:
        answer = page(http, where, 2, **({"beforeNumber": before} if before else {})).json()
        totals.append(answer["total"])
        seen += [(n["type"], n["parentId"]) for n in answer["list"]]
        if answer["total"] == -2 or not answer["list"]:
            break
        before = min(n["number"] for n in answer["list"])
    assert seen == [("Unrelate", accounts[0]), *[("Relate", a) for a in reversed(accounts)]]
    assert totals == [-1, -2]


def test_global_stream_refuses_an_offset_and_a_page_above_the_cap(backend: Backend) -> None:
    http = backend.client()
    offset = http.get("GlobalStream", params={"offset": 5})
    assert offset.status_code == 400 and offset.headers["x-status-reason"] == "Offset is not supported."
    big = http.get("GlobalStream", params={"maxSize": 201})
    assert big.status_code == 403
    assert big.headers["x-status-reason"] == "Max size should not exceed 200. Use offset and limit."


def test_after_keeps_notes_created_later_than_a_time(backend: Backend) -> None:
    http = backend.client()
    doc = backend.add_document(backend.unique("After"))
    backend.link(doc, [backend.add_account(backend.unique("Acme"))])
    note = page(http, [{"type": "equals", "attribute": "relatedId", "value": doc}], 1).json()["list"][0]
    mine = [{"type": "equals", "attribute": "relatedId", "value": doc}]
    assert page(http, mine, 5, after=note["createdAt"]).json()["list"] == []
    earlier = page(http, mine, 5, after="2000-01-01 00:00:00").json()["list"]
    assert [n["id"] for n in earlier] == [note["id"]]
