"""docsync's own ``where`` shapes (``docsync_cli/crm/queries.py``, EspoCRM contract §2.4/§10.5) sent to both
backends: each selects the same records on the emulator and on a real EspoCRM; and what moves ``modifiedAt``."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from docsync_cli.crm import queries
from docsync_cli.model import Field
from tests.contract.backends import Backend

ATTRIBUTES = {field.value: field.value for field in Field}  # the design profile's names (no c prefix)


def selected(http: httpx.Client, prefix: str, where: list[dict[str, Any]]) -> set[str]:
    mine = {"type": "startsWith", "attribute": "name", "value": prefix}
    response = http.get("Document", params={"searchParams": json.dumps(
        {"where": [mine, *where], "select": ["name"], "maxSize": 50})})
    assert response.status_code == 200, response.headers.get("x-status-reason")
    return {item["name"].removeprefix(prefix + " ") for item in response.json()["list"]}


def test_docsyncs_where_shapes_select_the_same_records(backend: Backend) -> None:
    prefix = backend.unique("Query")
    ids = {
        "new": backend.add_document(f"{prefix} new"),
        "synced": backend.add_document(f"{prefix} synced", dateiStatus="Gesynct", xaiSyncStatus="synced",
                                       xaiFileId="file_1", xaiSyncedHash="a" * 64),
        "syncing": backend.add_document(f"{prefix} syncing", dateiStatus="Gesynct", xaiSyncStatus="syncing",
                                        xaiFileId="file_2"),
        "nofile": backend.add_document(f"{prefix} nofile", dateiStatus="Gesynct", xaiSyncStatus="synced"),
        "failed": backend.add_document(f"{prefix} failed", dateiStatus="Fehler", xaiSyncStatus="failed"),
    }
    account = backend.add_account(backend.unique("Acme"))
    backend.link(ids["synced"], [account])
    http = backend.client()
    assert selected(http, prefix, [queries.needs_work(ATTRIBUTES)]) == {"new", "syncing", "failed"}
    assert selected(http, prefix, queries.synced_with_file(ATTRIBUTES)) == {"synced", "syncing"}
    assert selected(http, prefix, queries.synced_but_unfinished(ATTRIBUTES)) == {"syncing"}
    assert selected(http, prefix, queries.synced_without_preview(ATTRIBUTES, "previewId")) == {
        "synced", "syncing", "nofile"}
    assert selected(http, prefix, queries.changed_since_or_needing_work("2999-01-01 00:00:00", ATTRIBUTES)) == {
        "new", "syncing", "failed"}
    assert len(selected(http, prefix, queries.changed_since("2000-01-01 00:00:00"))) == 5
    assert selected(http, prefix, queries.linked_to("accounts", account)) == {"synced"}
    assert selected(http, prefix, queries.with_ids([ids["new"].upper(), ids["failed"]])) == {"new", "failed"}
    assert selected(http, prefix, queries.field_is("dateiStatus", None)) == set()
    assert selected(http, prefix, queries.field_is("dateiStatus", "Fehler")) == {"failed"}
    assert selected(http, prefix, queries.field_is("xaiFileId", None)) == {"new", "nofile", "failed"}


def test_what_moves_modified_at(backend: Backend) -> None:
    # §10.5: a save with identical values and linking leave modifiedAt alone; a changed value moves it
    http = backend.client()
    doc = backend.add_document(backend.unique("Modified"))
    created = http.get(f"Document/{doc}").json()["modifiedAt"]
    time.sleep(1.1)  # modifiedAt has second precision
    same = http.put(f"Document/{doc}", json={"dateiStatus": "Neu"})
    assert same.status_code == 200 and same.json()["modifiedAt"] == created
    backend.link(doc, [backend.add_account(backend.unique("Acme"))])
    assert http.get(f"Document/{doc}").json()["modifiedAt"] == created
    changed = http.put(f"Document/{doc}", json={"dateiStatus": "Gesynct"}).json()
    assert changed["modifiedAt"] > created and changed["modifiedById"] == backend.api_user_id()


def test_a_deleted_document_is_404_and_unlisted(backend: Backend) -> None:
    http = backend.client()
    prefix = backend.unique("Deleted")
    doc = backend.add_document(f"{prefix} gone")
    backend.delete_document(doc)
    response = http.get(f"Document/{doc}")
    assert response.status_code == 404 and response.headers["x-status-reason"] == f"Record {doc} does not exist."
    assert selected(http, prefix, []) == set()
