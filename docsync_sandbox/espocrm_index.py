"""Database indexes for the EspoCRM emulator's Document table, so a million records answer like MySQL would.

A real installation answers ``modifiedAt >= T`` (index on ``modifiedAt``), an id range count (primary key) and
``dateiStatus in (...)`` without reading every row. The emulator's general path evaluates the where clause on
every record, which is fine for tests and far too slow for the 1,000,000-document benchmark. This index only
*narrows* the candidate rows; the exact where predicate still decides each one, so an answer through the index
is the same as one without it (tested in ``tests/sandbox``).

The index is maintained by the emulator's own mutations (saves, seeds, deletes, restores). Code that edits
``emulator.records`` directly must rebuild it: ``emulator.index.build(emulator.records["Document"].values())``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from typing import Any

from docsync_sandbox.espocrm_acl import id_key

Key = tuple[bool, str, tuple[Any, ...]]  # (live, modifiedAt, the indexed enum attributes' values)
NULL = object()  # the index entry of a null value (``isNull``)


class DocumentIndex:
    def __init__(self, *enum_attrs: str) -> None:
        self.enum_attrs = enum_attrs  # e.g. dateiStatus, xaiSyncStatus
        self.ids: list[str] = []  # collation keys of the live ids (case-folded, ``utf8mb4_unicode_ci``), sorted
        self.stored: dict[str, str] = {}  # collation key -> the id as stored
        self.by_modified: list[tuple[str, str]] = []  # (modifiedAt, id) of live records, sorted
        self.by_value: dict[tuple[str, Any], set[str]] = {}  # (attribute, value or NULL) -> ids

    def key(self, record: dict[str, Any]) -> Key:
        values = tuple(_indexed(record.get(attr)) for attr in self.enum_attrs)
        return (not record.get("deleted"), str(record.get("modifiedAt") or ""), values)

    def build(self, records: Iterable[dict[str, Any]]) -> None:
        live = [r for r in records if not r.get("deleted")]
        self.stored = {id_key(r["id"]): str(r["id"]) for r in live}
        self.ids = sorted(self.stored)
        self.by_modified = sorted((str(r.get("modifiedAt") or ""), str(r["id"])) for r in live)
        self.by_value = {}
        for record in live:
            for attr in self.enum_attrs:
                self.by_value.setdefault((attr, _indexed(record.get(attr))), set()).add(str(record["id"]))

    def update(self, record_id: str, before: Key | None, after: Key) -> None:
        if before == after:
            return
        if before is not None and before[0]:
            _remove(self.ids, id_key(record_id))
            self.stored.pop(id_key(record_id), None)
            _remove(self.by_modified, (before[1], record_id))
            for attr, value in zip(self.enum_attrs, before[2], strict=True):
                self.by_value.get((attr, value), set()).discard(record_id)
        if after[0]:
            bisect.insort(self.ids, id_key(record_id))
            self.stored[id_key(record_id)] = record_id
            bisect.insort(self.by_modified, (after[1], record_id))
            for attr, value in zip(self.enum_attrs, after[2], strict=True):
                self.by_value.setdefault((attr, value), set()).add(record_id)

    # -- queries -------------------------------------------------------------------------------------

    def id_bounds(self, where: Any) -> tuple[int, int] | None:
        """When ``where`` is only id bounds (AND-ed), the slice of :attr:`ids` it selects (compared
        case-insensitively, as the server does); else None."""
        items = where if isinstance(where, list) else ([] if where in (None, "") else None)
        if items is None:
            return None
        start, stop = 0, len(self.ids)
        for item in items:
            if not isinstance(item, dict) or item.get("attribute", item.get("field")) != "id" \
                    or not isinstance(item.get("value"), str):
                return None
            kind, value = item.get("type"), id_key(item["value"])
            if kind in ("greaterThan", "after"):
                start = max(start, bisect.bisect_right(self.ids, value))
            elif kind == "greaterThanOrEquals":
                start = max(start, bisect.bisect_left(self.ids, value))
            elif kind in ("lessThan", "before"):
                stop = min(stop, bisect.bisect_left(self.ids, value))
            elif kind == "lessThanOrEquals":
                stop = min(stop, bisect.bisect_right(self.ids, value))
            else:
                return None
        return start, max(start, stop)

    def narrow(self, where: Any, linked: Callable[[str, list[str]], set[str]]) -> set[str] | None:
        """Ids that can match ``where`` (a superset), or None when no index helps."""
        if not isinstance(where, list):
            return None
        found: set[str] | None = None
        for item in where:
            part = self._narrow_item(item, linked)
            if part is not None:
                found = part if found is None else found & part
        return found

    def _narrow_item(self, item: Any, linked: Callable[[str, list[str]], set[str]]) -> set[str] | None:
        if not isinstance(item, dict):
            return None
        kind = item.get("type")
        value = item.get("value")
        if kind == "or" and isinstance(value, list):
            parts = [self._narrow_item(sub, linked) for sub in value]
            if not parts or any(part is None for part in parts):
                return None
            return set().union(*(part for part in parts if part is not None))
        if kind == "and" and isinstance(value, list):
            return self.narrow(value, linked)
        if item.get("dateTime"):
            return None
        attribute = item.get("attribute", item.get("field"))
        if attribute == "modifiedAt" and isinstance(value, str):
            return self._modified(kind, value)
        if attribute in self.enum_attrs and kind in ("in", "equals") and value is not None:
            wanted = value if isinstance(value, list) else [value]
            return set().union(*(self.by_value.get((attribute, _indexed(v)), set()) for v in wanted))
        if attribute in self.enum_attrs and kind == "isNull":
            return set(self.by_value.get((attribute, NULL), set()))
        if kind == "linkedWith" and isinstance(attribute, str):
            ids = value if isinstance(value, list) else [value]
            return linked(attribute, [str(v) for v in ids])
        return None

    def _modified(self, kind: Any, value: str) -> set[str] | None:
        rows = self.by_modified
        if kind in ("greaterThan", "after"):
            start = bisect.bisect_right(rows, (value, "\uffff"))
            return {row[1] for row in rows[start:]}
        if kind == "greaterThanOrEquals":
            start = bisect.bisect_left(rows, (value, ""))
            return {row[1] for row in rows[start:]}
        if kind in ("equals", "on"):
            start = bisect.bisect_left(rows, (value, ""))
            stop = bisect.bisect_right(rows, (value, "\uffff"))
            return {row[1] for row in rows[start:stop]}
        return None


def _indexed(value: Any) -> Any:
    return NULL if value is None else value if isinstance(value, str) else repr(value)


def _remove(rows: list[Any], value: Any) -> None:
    at = bisect.bisect_left(rows, value)
    if at < len(rows) and rows[at] == value:
        del rows[at]
