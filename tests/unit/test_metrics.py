"""Prometheus textfile: names and values as parsed back by prometheus_client, atomic replacement, file mode."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from docsync_cli.state.history import RunRecord
from docsync_cli.state.metrics import write_metrics
from docsync_cli.timestamps import parse_timestamp

RUN = RunRecord(
    started_at="2025-03-01T12:00:00Z",
    finished_at="2025-03-01T12:01:30Z",
    duration_seconds=90.5,
    command="sync",
    exit_code=1,
    counts={"synced": 4, "failed": 1, "pending": 2, "unchanged": 40, "deleted": 0, "preview_failed": 3},
    host="crm-1",
    pid=77,
)


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_writes_every_metric_with_its_value(tmp_path: Path) -> None:
    path = tmp_path / "docsync.prom"
    write_metrics(path, RUN, last_success_unixtime=1_740_000_000.0)
    values = samples(path)
    assert values[("docsync_last_run_timestamp_seconds", ())] == parse_timestamp(RUN.finished_at).timestamp()
    assert values[("docsync_last_run_duration_seconds", ())] == 90.5
    assert values[("docsync_last_run_exit_code", ())] == 1
    assert values[("docsync_last_success_timestamp_seconds", ())] == 1_740_000_000.0
    for result, count in RUN.counts.items():
        assert values[("docsync_documents", (("result", result),))] == count
    assert len(values) == 4 + len(RUN.counts)


def test_no_success_yet_leaves_the_gauge_out(tmp_path: Path) -> None:
    path = tmp_path / "docsync.prom"
    write_metrics(path, RUN, last_success_unixtime=None)
    assert not any(name == "docsync_last_success_timestamp_seconds" for name, _ in samples(path))


def test_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "docsync.prom"
    path.write_text("old content\n")
    old_inode = path.stat().st_ino
    write_metrics(path, RUN, last_success_unixtime=None)
    assert path.stat().st_ino != old_inode  # a new file renamed over the old one, not rewritten in place
    assert [entry.name for entry in tmp_path.iterdir()] == ["docsync.prom"]


def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "docsync.prom"
    write_metrics(path, RUN, last_success_unixtime=None)
    before = path.read_bytes()

    def broken_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_metrics(path, RUN, last_success_unixtime=1.0)
    assert path.read_bytes() == before
    assert [entry.name for entry in tmp_path.iterdir()] == ["docsync.prom"]


def test_file_is_world_readable_even_under_a_strict_umask(tmp_path: Path) -> None:
    path = tmp_path / "docsync.prom"
    old_umask = os.umask(0o077)
    try:
        write_metrics(path, RUN, last_success_unixtime=None)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_verify_gauges_and_no_ratio_when_nothing_was_probed(tmp_path: Path) -> None:
    from docsync_cli.state.metrics import write_verify_metrics

    path = tmp_path / "docsync_verify.prom"
    write_verify_metrics(path, 0.9, probed=20, missed=2, finished_unixtime=1_740_000_000.0)
    values = samples(path)
    assert values[("docsync_verify_found_ratio", ())] == 0.9
    assert values[("docsync_verify_probed_documents", ())] == 20
    assert values[("docsync_verify_missed_documents", ())] == 2
    assert values[("docsync_verify_timestamp_seconds", ())] == 1_740_000_000.0
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    write_verify_metrics(path, None, probed=0, missed=0, finished_unixtime=1_740_000_001.0)
    assert ("docsync_verify_found_ratio", ()) not in samples(path)  # absent(), not a fake 0 or 1
