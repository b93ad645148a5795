"""``reports/status.py``'s pure parts: the where items per status bucket, what waits for the next run, and what
the change feeds mean for how fast a change is noticed; plus the whole report over the emulators."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from docsync_cli.config import Settings, load_settings
from docsync_cli.model import CrmDocument, DateiStatus, LocalRecord
from docsync_cli.reports.status import (
    DATEI_STATUSES,
    EMPTY,
    STATUS_VERSION,
    StatusReport,
    collect_status,
    waiting_counts,
    where_equals,
)
from docsync_cli.reports.status_feeds import Feeds, feeds_explained
from docsync_cli.state import StreamFeed
from docsync_sandbox.seed import Sandbox, corpus_dir

# -- where items ------------------------------------------------------------------------------------


def test_a_status_is_asked_for_by_equality() -> None:
    assert where_equals("cDateiStatus", "Neu") == {"type": "equals", "attribute": "cDateiStatus", "value": "Neu"}


def test_the_empty_bucket_is_null_or_empty_text() -> None:
    assert where_equals("dateiStatus", EMPTY) == {"type": "or", "value": [
        {"type": "isNull", "attribute": "dateiStatus"},
        {"type": "equals", "attribute": "dateiStatus", "value": ""}]}


# -- what waits for the next run ---------------------------------------------------------------------------


def counts(**values: int) -> dict[str, int]:
    found = dict.fromkeys(DATEI_STATUSES, 0)
    found.update({DateiStatus.NEU.value: values.get("neu", 0), DateiStatus.GEAENDERT.value: values.get("geaendert", 0),
                  DateiStatus.FEHLER.value: values.get("fehler", 0), EMPTY: values.get("empty", 0)})
    return found


def failed(doc_id: str, modified_at: str = "2026-01-02 10:00:00", file_id: str = "att1") -> CrmDocument:
    return CrmDocument(doc_id, f"Doc {doc_id}", modified_at, file_id=file_id, datei_status=DateiStatus.FEHLER.value)


def local(doc_id: str, *, transient: bool = False, modified_at: str = "2026-01-02 10:00:00",
          file_id: str = "att1") -> LocalRecord:
    return LocalRecord(doc_id, file_id, None, None, None, (), modified_at, "too_large", transient, None)


def test_next_run_adds_new_changed_unmarked_unfinished_and_retried_failures() -> None:
    waiting = waiting_counts(counts(neu=3, geaendert=2, empty=1, fehler=0), other=4, unfinished=5, failed_total=0,
                             failed_listed=[], local={})
    assert waiting == {"new": 3, "changed": 2, "no_status": 5, "unfinished": 5, "failed_retry": 0,
                       "failed_held_back": 0, "approximate": False, "next_run": 15}
    assert list(waiting) == ["new", "changed", "no_status", "unfinished", "failed_retry", "failed_held_back",
                             "approximate", "next_run"]  # the order --json shows them in


def test_a_failure_is_retried_when_the_planner_would_and_held_back_otherwise() -> None:
    docs = [failed("transient"), failed("changed", modified_at="2026-01-03 09:00:00"), failed("unknown"),
            failed("permanent")]
    records = {"transient": local("transient", transient=True), "changed": local("changed"),
               "permanent": local("permanent")}  # "unknown": no local record, the cause is unknown: retried
    waiting = waiting_counts(counts(fehler=4), other=0, unfinished=0, failed_total=4, failed_listed=docs,
                             local=records)
    assert (waiting["failed_retry"], waiting["failed_held_back"], waiting["next_run"]) == (3, 1, 3)
    assert waiting["approximate"] is False


def test_failures_beyond_the_listed_ones_count_as_held_back_and_make_it_approximate() -> None:
    waiting = waiting_counts(counts(fehler=60), other=0, unfinished=0, failed_total=60,
                             failed_listed=[failed("a")], local={})
    assert (waiting["failed_retry"], waiting["failed_held_back"], waiting["approximate"]) == (1, 59, True)


# -- the change feeds, explained ------------------------------------------------------------------------


def feeds(**changes: Any) -> Feeds:
    values: dict[str, Any] = {"enabled": True, "watermark": "2026-01-02 03:04:05", "last_listing": None,
                              "listing_interval_seconds": 3600.0, "stream": None, "accounts_override": None,
                              "note_cursor": None, "clock_skew_seconds": None, "clock_set_back": None,
                              "stream_partial": None, "stream_early_end": None,
                              "partial_listing_interval_seconds": 900.0}
    return cast(Feeds, values | changes)


def test_feeds_off_means_every_run_lists_everything() -> None:
    assert feeds_explained(feeds(enabled=False)) == [
        "Change feeds are off (sync.change_feeds = false): every run lists every document."]


def test_without_stream_access_link_changes_wait_for_the_listing_pass() -> None:
    lines = feeds_explained(feeds(stream="no access", last_listing="2026-01-02T03:00:00Z"))
    assert lines[0].startswith("Watermark: 2026-01-02 03:04:05 (EspoCRM time); last listing pass: "
                               "2026-01-02T03:00:00Z (every 60 min")
    assert "Stream notes (GlobalStream): no access — linking/unlinking" in lines[2]
    assert "within 60 min" in lines[2]
    assert lines[3].startswith("accountsIds override: not checked yet")


def test_the_measured_clock_offset_and_a_set_back_are_said() -> None:
    assert feeds_explained(feeds())[-1] == ("EspoCRM's clocks: not measured yet (docsync measures them on its own "
                                             "write-backs).")
    in_step = feeds_explained(feeds(clock_skew_seconds=0.0))[-1]
    assert in_step == "EspoCRM's clocks: Date +0 s against modifiedAt (in step)."
    line = feeds_explained(feeds(clock_skew_seconds=600.0, clock_set_back=True))[-1]
    assert line == ("EspoCRM's clocks: Date +600 s against modifiedAt (the feed's overlap is widened by it); the last "
                    "run found the clock set back and listed every document.")


def test_an_active_stream_and_override_are_said_plainly() -> None:
    lines = feeds_explained(feeds(watermark=None, stream="active", accounts_override=True))
    assert lines[0].startswith("Watermark: (none yet: the next run makes a listing pass)")
    assert "last listing pass: never" in lines[0]
    assert lines[2].startswith("Stream notes (GlobalStream): active")
    assert lines[3].startswith("accountsIds override (noLoad: false): active")
    assert feeds_explained(feeds(accounts_override=False))[3].startswith("accountsIds override: not set")


@pytest.mark.parametrize("stored", ["no access", "unavailable (500)", "unavailable (EspoCRM timed out)", None])
def test_only_an_active_stream_counts_link_changes_in_the_next_run(stored: str | None) -> None:
    assert StreamFeed.ACTIVE.value == "active"  # the value state files hold: older files read the same
    active = feeds_explained(feeds(stream=StreamFeed.ACTIVE))[2]
    assert active == ("Stream notes (GlobalStream): active — a document linked to or unlinked from an account is "
                      "noticed by the next run.")
    assert feeds_explained(feeds(stream="active"))[2] == active  # as read back from the state file
    line = feeds_explained(feeds(stream=stored))[2]
    assert line.startswith(f"Stream notes (GlobalStream): {stored or 'not checked yet'} — linking/unlinking")


# -- the whole report over the emulators ---------------------------------------------------------------------


@pytest.fixture
def sandbox_settings(tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    with Sandbox(processing_delay=0.0) as sandbox:
        firm = sandbox.seed_firm(corpus_dir())
        env = sandbox.environment(tmp_path / "state")
        yield load_settings(None, env=env), len(firm.documents)


def test_a_report_before_any_run_counts_the_marked_documents_as_waiting(
        sandbox_settings: tuple[Settings, int]) -> None:
    settings, seeded = sandbox_settings
    data = collect_status(settings)
    assert data["version"] == STATUS_VERSION
    assert data["espocrm"] == {"reachable": True, "error": None}
    assert data["documents"]["total"] == seeded
    counted = data["documents"]["dateiStatus"]
    assert None not in counted.values()  # every bucket was counted
    by_status = {status: count or 0 for status, count in counted.items()}
    assert sum(by_status.values()) == seeded and data["documents"]["other_dateiStatus"] == 0
    # the seed marks most documents Neu or Geändert, a few Gesynct (drift only a run finds is not counted)
    assert data["waiting"]["next_run"] == by_status["Neu"] + by_status["Geändert"] == seeded - by_status["Gesynct"]
    assert data["runs"] == [] and data["installation_id"] is None
    assert data["lock"] == {"backend": "file", "holder": None, "error": None}
    assert not (settings.state_dir).exists()  # a report creates nothing


# -- the README's --json schema ------------------------------------------------------------------------


def _readme_status_example() -> dict[str, Any]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    _, found, rest = readme.partition("`docsync status --json` prints one object")
    assert found, "the README documents `docsync status --json`"
    example = rest.split("```json\n", 1)[1].split("\n```", 1)[0]
    return cast(dict[str, Any], json.loads(example))


def _undocumented(schema: Any, example: Any, where: str) -> list[str]:
    """Keys of the report's TypedDicts that the README example lacks, or has without the report having them."""
    if is_typeddict(schema):
        if not isinstance(example, dict):
            return [f"{where} is not an object in the README"]
        hints = get_type_hints(schema)
        problems = [f"{where}.{key} not in the README" for key in hints if key not in example]
        problems += [f"{where}.{key} in the README but not in the report" for key in example if key not in hints]
        for key, hint in hints.items():
            if key in example:
                problems += _undocumented(hint, example[key], f"{where}.{key}")
        return problems
    if get_origin(schema) is list and is_typeddict(get_args(schema)[0]):
        if not example:
            return [f"{where} has no example item in the README"]
        return _undocumented(get_args(schema)[0], example[0], f"{where}[]")
    return []


def test_every_status_json_key_is_documented_in_the_readme() -> None:
    """Issue 22: `status --json` has a `version` and a schema in the README like `search` and `verify`; a key added
    to the report (its TypedDicts) without documenting it fails here."""
    example = _readme_status_example()
    assert example["version"] == STATUS_VERSION == 1
    assert _undocumented(StatusReport, example, "status") == []
