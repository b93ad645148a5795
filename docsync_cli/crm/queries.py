"""Every EspoCRM ``where`` shape docsync sends, behind a name that says what it asks for (EspoCRM contract §2.2,
§10.5, §11). No other module builds a where item (``tests/unit/test_import_layers.py``); the attribute names come
from the CRM's own schema (``attributes``: logical name → this CRM's attribute, see :mod:`.schema`).

Values are EspoCRM's UTC ``YYYY-MM-DD HH:MM:SS`` strings for times (never ``dateTime: true``, which reinterprets
them in the app's time zone), and id lists of at most :data:`IDS_PER_QUERY`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from docsync_cli.model import DateiStatus, Field, SyncStatus

Where = list[dict[str, Any]]
IDS_PER_QUERY = 100  # ids per `in` item: keeps the query string well under the web server's URL limits


def equals(attribute: str, value: str | None) -> dict[str, Any]:
    """``attribute`` equals ``value``; None means NULL or empty text (both count as "no value")."""
    if value is None:
        return {"type": "or", "value": [{"type": "isNull", "attribute": attribute},
                                        {"type": "equals", "attribute": attribute, "value": ""}]}
    return {"type": "equals", "attribute": attribute, "value": value}


def needs_work(attributes: Mapping[str, str]) -> dict[str, Any]:
    """The records that say they need work: ``dateiStatus`` Neu, Geändert, Fehler or empty, or an
    ``xaiSyncStatus`` other than synced."""
    status = attributes[Field.DATEI_STATUS]
    waiting = [DateiStatus.NEU.value, DateiStatus.GEAENDERT.value, DateiStatus.FEHLER.value, ""]
    unfinished = [s.value for s in SyncStatus if s is not SyncStatus.SYNCED]
    return {"type": "or", "value": [
        {"type": "in", "attribute": status, "value": waiting},
        {"type": "isNull", "attribute": status},
        {"type": "in", "attribute": attributes[Field.XAI_SYNC_STATUS], "value": unfinished}]}


def changed_since(since: str) -> Where:
    """Records saved at or after ``since`` (``modifiedAt >= since``; linking does not save, §10.5)."""
    return [{"type": "greaterThanOrEquals", "attribute": "modifiedAt", "value": since}]


def changed_since_or_needing_work(since: str, attributes: Mapping[str, str]) -> Where:
    """Documents saved since ``since``, or saying they need work: a plain run's document feed, in one request."""
    return [{"type": "or", "value": [*changed_since(since), needs_work(attributes)]}]


def stream_notes(after_number: int, up_to: int | None, types: Sequence[str], parent_types: Sequence[str]) -> Where:
    """GlobalStream notes numbered above ``after_number`` (and at most ``up_to``) of ``types`` on ``parent_types``
    (contract §10.7: ``Note.number`` is the cursor)."""
    where: Where = [{"type": "greaterThan", "attribute": "number", "value": after_number}]
    if up_to is not None:
        where.append({"type": "lessThanOrEquals", "attribute": "number", "value": up_to})
    return [*where, {"type": "in", "attribute": "type", "value": list(types)},
            {"type": "in", "attribute": "parentType", "value": list(parent_types)}]


def linked_to(link: str, record_id: str) -> Where:
    """Records linked through ``link`` to the record ``record_id`` (e.g. a Document's accounts)."""
    return [{"type": "linkedWith", "attribute": link, "value": [record_id]}]


def with_ids(ids: Sequence[str]) -> Where:
    """Records whose id is one of ``ids`` (at most :data:`IDS_PER_QUERY`)."""
    if len(ids) > IDS_PER_QUERY:
        raise ValueError(f"at most {IDS_PER_QUERY} ids per query, got {len(ids)}")
    return [{"type": "in", "attribute": "id", "value": list(ids)}]


def has_value(attribute: str) -> Where:
    """Records where ``attribute`` is set (e.g. an Account's collection field)."""
    return [{"type": "isNotNull", "attribute": attribute}]


def synced_with_file(attributes: Mapping[str, str]) -> Where:
    """Documents that say "Gesynct" and name an xAI file: what ``verify`` samples from."""
    return [equals(attributes[Field.DATEI_STATUS], DateiStatus.GESYNCT.value),
            {"type": "isNotNull", "attribute": attributes[Field.XAI_FILE_ID]}]


def synced_without_preview(attributes: Mapping[str, str], preview_attribute: str) -> Where:
    """Documents that say "Gesynct" but have no preview."""
    return [equals(attributes[Field.DATEI_STATUS], DateiStatus.GESYNCT.value),
            {"type": "isNull", "attribute": preview_attribute}]


def synced_but_unfinished(attributes: Mapping[str, str]) -> Where:
    """Documents that say "Gesynct" while their ``xaiSyncStatus`` is not synced (xAI not done, or a crash)."""
    return [equals(attributes[Field.DATEI_STATUS], DateiStatus.GESYNCT.value),
            {"type": "in", "attribute": attributes[Field.XAI_SYNC_STATUS],
             "value": [SyncStatus.PENDING.value, SyncStatus.SYNCING.value, SyncStatus.FAILED.value]}]


def field_is(attribute: str, value: str | None) -> Where:
    """Records whose ``attribute`` is ``value`` (None: NULL or empty), e.g. to count one ``dateiStatus``."""
    return [equals(attribute, value)]


def id_range(low: str | None, high: str | None) -> list[dict[str, Any]]:
    """The ``where`` of the records with ``low <= id < high`` (None: an open end)."""
    where = []
    if low is not None:
        where.append({"type": "greaterThanOrEquals", "attribute": "id", "value": low})
    if high is not None:
        where.append({"type": "lessThan", "attribute": "id", "value": high})
    return where
