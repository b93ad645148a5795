"""``docsync_cli.changes``' pure pieces: which records say they need work, and the ids of one id range. The
feeds themselves (requests against a CRM) are tested against the emulator (tests/sandbox/test_change_feed_*.py,
tests/e2e/test_change_feeds.py); the decisions they ask (feed window, listing due, link drift) in
test_plan_changes.py."""

from __future__ import annotations

import pytest

from docsync_cli.changes import in_range, need_work_where
from docsync_cli.config import FieldNames


def test_the_records_that_need_work_are_waiting_erroneous_or_not_synced() -> None:
    names = FieldNames(dateiStatus="cDateiStatus", xaiSyncStatus="cXaiSyncStatus").model_dump()
    assert need_work_where(names) == {"type": "or", "value": [
        {"type": "in", "attribute": "cDateiStatus", "value": ["Neu", "Geändert", "Fehler", ""]},
        {"type": "isNull", "attribute": "cDateiStatus"},
        {"type": "in", "attribute": "cXaiSyncStatus", "value": ["pending", "syncing", "failed"]}]}


IDS = ["a", "b", "c", "d"]


@pytest.mark.parametrize(("low", "high", "expected"), [
    (None, None, IDS), ("b", None, ["b", "c", "d"]), (None, "c", ["a", "b"]), ("b", "d", ["b", "c"]),
    ("bb", "cc", ["c"]), ("e", None, []), ("c", "c", []),
])
def test_an_id_range_includes_its_low_end_and_excludes_its_high_end(low: str | None, high: str | None,
                                                                    expected: list[str]) -> None:
    assert in_range(IDS, low, high) == expected
