"""Run history: round trip, ordering, trimming, file modes, preview errors, two processes' worth of handles."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from docsync_cli.state import history as history_module
from docsync_cli.state.history import History, RunRecord


def make_run(index: int, *, exit_code: int = 0, error: str | None = None) -> RunRecord:
    minute, second = divmod(index, 60)
    hour, minute = divmod(minute, 60)
    return RunRecord(
        started_at=f"2025-03-01T{hour:02d}:{minute:02d}:{second:02d}Z",
        finished_at=f"2025-03-01T{hour:02d}:{minute:02d}:{second:02d}Z",
        duration_seconds=1.5 + index,
        command="sync",
        exit_code=exit_code,
        counts={"synced": index, "failed": 0},
        host="host-a",
        pid=1000 + index,
        error=error,
    )


def test_round_trip_keeps_every_field(tmp_path: Path) -> None:
    run = RunRecord(
        started_at="2025-03-01T12:00:00Z",
        finished_at="2025-03-01T12:00:42Z",
        duration_seconds=42.25,
        command="sync --id 65f0c1a2b3c4d5e6f",
        exit_code=1,
        counts={"planned": 3, "synced": 1, "failed": 1, "preview_failed": 1, "custom_key": 7},
        host="crm-1",
        pid=4242,
        error="xAI answered 503 three times",
    )
    with History(tmp_path) as history:
        history.record(run)
        assert history.last() == [run]
    with History(tmp_path) as reopened:
        assert reopened.last(1) == [run]


def test_last_is_newest_first_and_last_success_skips_failures(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        assert history.last() == []
        assert history.last_success() is None
        history.record(make_run(1))
        history.record(make_run(3, exit_code=1, error="boom"))
        history.record(make_run(2))  # recorded late, started earlier: ordering is by start time
        assert [run.pid for run in history.last()] == [1003, 1002, 1001]
        assert [run.pid for run in history.last(2)] == [1003, 1002]
        success = history.last_success()
        assert success is not None and success.pid == 1002


def test_keeps_only_the_newest_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "KEEP_RUNS", 5)
    with History(tmp_path) as history:
        for index in range(12):
            history.record(make_run(index))
        runs = history.last(100)
    assert [run.pid for run in runs] == [1011, 1010, 1009, 1008, 1007]


def test_default_keeps_a_thousand(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        for index in range(1005):
            history.record(make_run(index))
        assert len(history.last(2000)) == 1000
        assert history.last(1)[0].pid == 1000 + 1004


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    import os

    state_dir = tmp_path / "state"
    old_umask = os.umask(0o000)
    try:
        with History(state_dir) as history:
            history.record(make_run(1))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state_dir / "history.sqlite3").stat().st_mode) == 0o600
    for sidecar in state_dir.glob("history.sqlite3-*"):
        assert stat.S_IMODE(sidecar.stat().st_mode) & 0o077 == 0, sidecar


def test_tightens_a_loose_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    path.touch()
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    History(tmp_path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


def test_preview_errors(tmp_path: Path) -> None:
    with History(tmp_path) as history:
        assert history.preview_errors() == {}
        history.set_preview_error("doc-b", "LibreOffice timed out")
        history.set_preview_error("doc-a", "encrypted PDF")
        history.set_preview_error("doc-b", "LibreOffice crashed")
        assert history.preview_errors() == {"doc-a": "encrypted PDF", "doc-b": "LibreOffice crashed"}
        history.clear_preview_error("doc-a")
        history.clear_preview_error("never-failed")
        assert history.preview_errors() == {"doc-b": "LibreOffice crashed"}


def test_two_handles_on_one_directory_see_each_others_writes(tmp_path: Path) -> None:
    first, second = History(tmp_path), History(tmp_path)
    try:
        first.record(make_run(1))
        second.record(make_run(2))
        second.set_preview_error("doc", "bad")
        assert [run.pid for run in first.last()] == [1002, 1001]
        assert first.preview_errors() == {"doc": "bad"}
    finally:
        first.close()
        second.close()


def test_concurrent_writers_do_not_lose_runs(tmp_path: Path) -> None:
    handles = [History(tmp_path) for _ in range(4)]
    errors: list[BaseException] = []

    def write(handle: History, offset: int) -> None:
        try:
            for index in range(25):
                handle.record(make_run(offset + index))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(handle, 100 * number)) for number, handle in enumerate(handles)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        assert len(handles[0].last(1000)) == 100
    finally:
        for handle in handles:
            handle.close()
