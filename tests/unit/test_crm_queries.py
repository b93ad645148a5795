"""``crm/queries.py``: every EspoCRM where shape docsync sends, under this CRM's attribute names (EspoCRM contract
§2.2, §10.5), and the refusal of a write to a Document attribute docsync does not own."""

from __future__ import annotations

import pytest

from docsync_cli.config import FieldNames
from docsync_cli.crm import queries
from docsync_cli.crm.schema import LearnedSchema
from docsync_cli.model import Field

NAMES = FieldNames(dateiStatus="cDateiStatus", xaiSyncStatus="cXaiSyncStatus", xaiFileId="cXaiFileId").model_dump()


def test_the_records_that_need_work_are_waiting_erroneous_or_not_synced() -> None:
    assert queries.needs_work(NAMES) == {"type": "or", "value": [
        {"type": "in", "attribute": "cDateiStatus", "value": ["Neu", "Geändert", "Fehler", ""]},
        {"type": "isNull", "attribute": "cDateiStatus"},
        {"type": "in", "attribute": "cXaiSyncStatus", "value": ["pending", "syncing", "failed"]}]}


def test_the_document_feed_is_one_or_group() -> None:
    where = queries.changed_since_or_needing_work("2026-12-05 07:00:00", NAMES)
    assert where == [{"type": "or", "value": [
        {"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": "2026-12-05 07:00:00"},
        queries.needs_work(NAMES)]}]


def test_empty_means_null_or_empty_text() -> None:
    assert queries.equals("cDateiStatus", "Neu") == {"type": "equals", "attribute": "cDateiStatus", "value": "Neu"}
    assert queries.equals("cDateiStatus", None) == {"type": "or", "value": [
        {"type": "isNull", "attribute": "cDateiStatus"},
        {"type": "equals", "attribute": "cDateiStatus", "value": ""}]}


def test_links_ids_and_values() -> None:
    assert queries.linked_to("accounts", "a1") == [{"type": "linkedWith", "attribute": "accounts", "value": ["a1"]}]
    assert queries.with_ids(["x", "y"]) == [{"type": "in", "attribute": "id", "value": ["x", "y"]}]
    assert queries.has_value("cXaiCollectionId") == [{"type": "isNotNull", "attribute": "cXaiCollectionId"}]
    with pytest.raises(ValueError, match="at most 100 ids"):
        queries.with_ids([str(n) for n in range(101)])


def test_the_report_shapes_use_this_crms_names() -> None:
    assert queries.synced_with_file(NAMES) == [
        {"type": "equals", "attribute": "cDateiStatus", "value": "Gesynct"},
        {"type": "isNotNull", "attribute": "cXaiFileId"}]
    assert queries.synced_without_preview(NAMES, "previewId")[1] == {"type": "isNull", "attribute": "previewId"}
    assert queries.synced_but_unfinished(NAMES)[1] == {
        "type": "in", "attribute": "cXaiSyncStatus", "value": ["pending", "syncing", "failed"]}


def test_a_write_to_an_attribute_docsync_does_not_own_never_leaves() -> None:
    schema = LearnedSchema(NAMES)
    assert schema.update_body({Field.DATEI_STATUS: "Gesynct"}) == {"cDateiStatus": "Gesynct"}
    assert schema.update_body({schema.preview_attr: "att1"}) == {schema.preview_attr: "att1"}
    with pytest.raises(ValueError, match="assignedUserId, status"):
        schema.update_body({Field.MD5: "0" * 32, "status": "Active", "assignedUserId": "u1"})
