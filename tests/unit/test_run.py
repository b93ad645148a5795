"""runner.py: the private temp sweep, what a run takes and gives back (lock, state, history, TMPDIR), the
installation id it chooses, the preview failures it remembers and how it records the run.

Real state directories in ``tmp_path``, real file locks, a real Redis where the id is shared; no engine run (the
engine and reconcile have their own tests) and no mocks of runner's internals.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from docsync_cli.config import Settings, load_settings
from docsync_cli.errors import ConfigError, LocalEnvironmentError, LockHeld
from docsync_cli.locks import FileLocks
from docsync_cli.model import DocResult, Outcome, Preview, PreviewFailure, RunOptions, RunSummary
from docsync_cli.state import INSTALLATION_FILE, installation_id
from docsync_cli.state.history import History
from docsync_cli.sync.run import PreviewNote, SyncRun, preview_note, remember_previews, sweep_temp
from docsync_cli.timestamps import parse_timestamp
from tests.redis_server import RedisServer, require_redis_server


def settings_for(state_dir: Path, **extra: str) -> Settings:
    env = {"HOME": str(state_dir.parent / "home"), "ESPOCRM_URL": "https://crm.example.com",
           "ESPOCRM_API_KEY": "espo-key-runner-0001", "XAI_API_KEY": "xai-key-runner-0002",
           "XAI_MANAGEMENT_KEY": "mgmt-key-runner-0003", "DOCSYNC_STATE_DIR": str(state_dir),
           "DOCSYNC_CONFIG": str(state_dir.parent / "config.toml")}
    (state_dir.parent / "config.toml").touch()  # an empty file: never /etc/docsync/config.toml
    try:
        return load_settings(None, env | extra)
    except ConfigError as exc:  # pragma: no cover - a broken test setup
        raise AssertionError(exc.problems) from exc


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_for(tmp_path / "state")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def result(doc_id: str, preview: str | None, failure: PreviewFailure | None = None) -> DocResult:
    return DocResult(doc_id=doc_id, name=f"{doc_id}.pdf", outcome=Outcome.SYNCED, preview=preview,
                     preview_failure=failure)


# ---------------------------------------------------------------------------------------------- temp sweep


def test_sweep_removes_what_dead_runs_left_and_keeps_live_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    root = state / "tmp"
    root.mkdir(parents=True)
    dead = root / f"run-{dead_pid()}-abc"
    (dead / "nested").mkdir(parents=True)
    (dead / "nested" / "client.pdf").write_bytes(b"%PDF-")
    live = root / f"run-{os.getpid()}-xyz"  # e.g. the scheduled run beside an admin's sync --id
    live.mkdir()
    stray = root / "leftover.bin"
    stray.write_bytes(b"x")
    odd = root / "not-a-run"
    odd.mkdir()

    mine = sweep_temp(state)

    assert not dead.exists() and not stray.exists() and not odd.exists()
    assert live.is_dir()
    assert mine.parent == root and mine.name.startswith(f"run-{os.getpid()}-")
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700


def test_sweep_never_follows_symlinks(tmp_path: Path) -> None:
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not docsync's")
    state.mkdir()
    (state / "tmp").symlink_to(elsewhere)  # the temp root itself replaced by a link
    mine = sweep_temp(state)
    assert not (state / "tmp").is_symlink() and mine.parent == state / "tmp"
    assert (elsewhere / "keep.txt").exists()

    link = state / "tmp" / f"run-{dead_pid()}-link"
    link.symlink_to(elsewhere)  # a dead run's entry that is a link: the link goes, its target stays
    sweep_temp(state)
    assert not link.is_symlink() and (elsewhere / "keep.txt").exists()


def test_sweep_creates_a_missing_state_dir_privately(tmp_path: Path) -> None:
    state = tmp_path / "new" / "state"
    mine = sweep_temp(state)
    assert mine.is_dir()
    assert stat.S_IMODE(state.stat().st_mode) == stat.S_IMODE((state / "tmp").stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------------------- previews


@pytest.mark.parametrize(("preview", "failure", "note"), [
    (None, None, PreviewNote.CLEAR),
    (Preview.WRITTEN, None, PreviewNote.CLEAR),
    (Preview.UNCHANGED, None, PreviewNote.CLEAR),
    (Preview.OFF, None, PreviewNote.CLEAR),
    (Preview.KNOWN_FAILURE, None, PreviewNote.KEEP),
    ("corrupt: not a PDF", PreviewFailure.RENDER, PreviewNote.RECORD),
    ("upload_failed: HTTP 503", PreviewFailure.UPLOAD, PreviewNote.RECORD),
])
def test_what_a_result_changes_in_the_preview_failures(preview: str | None, failure: PreviewFailure | None,
                                                       note: PreviewNote) -> None:
    assert preview_note(result("d1", preview, failure)) is note


def test_preview_failures_are_remembered_cleared_and_kept(tmp_path: Path) -> None:
    history = History(tmp_path)
    try:
        history.set_preview_error("known", "timeout")
        history.set_preview_error("fixed", "corrupt")
        remember_previews(history, [result("known", Preview.KNOWN_FAILURE), result("fixed", Preview.WRITTEN),
                                    result("new", "encrypted", PreviewFailure.RENDER), result("plain", None)])
        assert history.preview_errors() == {"known": "timeout", "new": "encrypted"}
    finally:
        history.close()


# ---------------------------------------------------------------------------------------------- the run's resources


def test_a_run_holds_the_lock_and_gives_everything_back(settings: Settings) -> None:
    saved_tmpdir = os.environ.get("TMPDIR")
    with SyncRun(settings, RunOptions(), command="sync") as run:
        assert run.locks is not None and run.state is not None and run.history is not None
        assert run.temp_dir is not None and run.temp_dir.is_dir()
        assert os.environ["TMPDIR"] == str(run.temp_dir) == tempfile.gettempdir()
        holder = FileLocks(settings.state_dir).holder()
        assert holder is not None and holder.startswith(f"pid {os.getpid()} ")
        with pytest.raises(LockHeld), SyncRun(settings, RunOptions(), command="sync"):
            pass
        temp_dir = run.temp_dir
    assert not temp_dir.exists()
    assert os.environ.get("TMPDIR") == saved_tmpdir
    assert FileLocks(settings.state_dir).holder() is None
    with SyncRun(settings, RunOptions(), command="sync"):  # the lock is free again
        pass


def test_an_id_run_may_overlap_the_scheduled_run(settings: Settings) -> None:
    with SyncRun(settings, RunOptions(), command="sync"), \
            SyncRun(settings, RunOptions(ids=frozenset({"d1"})), command="sync --id d1") as admin:
        assert admin.locks is not None


def test_an_unusable_state_dir_stops_the_run_before_locking(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file, not a directory")
    with pytest.raises(LocalEnvironmentError, match="is not a directory"), \
            SyncRun(settings_for(state), RunOptions(), command="sync"):
        pass


def test_previews_only_for_real_runs_with_previews_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert SyncRun(settings_for(state), RunOptions(), command="sync").previews
    assert not SyncRun(settings_for(state), RunOptions(dry_run=True), command="sync --dry-run").previews
    assert not SyncRun(settings_for(state), RunOptions(), command="sync", previews=False).previews
    off = settings_for(state, DOCSYNC_PREVIEW__ENABLED="false")
    assert not SyncRun(off, RunOptions(), command="sync").previews


# ---------------------------------------------------------------------------------------------- installation id


def test_the_installation_id_is_made_once_and_kept(settings: Settings) -> None:
    with SyncRun(settings, RunOptions(), command="sync") as run:
        assert run.state is not None
        first = run.state.installation_id
    assert installation_id(settings.state_dir) == first
    with SyncRun(settings, RunOptions(), command="sync") as run:
        assert run.state is not None and run.state.installation_id == first


def test_a_configured_installation_id_wins(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "state", DOCSYNC_SYNC__INSTALLATION_ID="firm-production")
    with SyncRun(settings, RunOptions(), command="sync") as run:
        assert run.state is not None and run.state.installation_id == "firm-production"
    assert not (settings.state_dir / INSTALLATION_FILE).exists()  # nothing generated, nothing remembered


@pytest.mark.needs_redis
def test_hosts_sharing_redis_take_the_first_hosts_id(tmp_path: Path) -> None:
    binary = require_redis_server()
    with RedisServer(binary) as server:
        redis.Redis.from_url(server.url).set("docsync:installation", "first-host-id")
        settings = settings_for(tmp_path / "state", DOCSYNC_LOCK__BACKEND="redis", DOCSYNC_LOCK__URL=server.url)
        with SyncRun(settings, RunOptions(), command="sync") as run:
            assert run.state is not None and run.state.installation_id == "first-host-id"
        assert installation_id(settings.state_dir) == "first-host-id"  # remembered for status


# ---------------------------------------------------------------------------------------------- recording


def test_a_run_is_recorded_in_the_history(settings: Settings) -> None:
    summary = RunSummary(results=[result("d1", Preview.WRITTEN), result("d2", "corrupt", PreviewFailure.RENDER)])
    with SyncRun(settings, RunOptions(), command="sync --full") as run:
        record = run.record(1, summary, None)
    assert record.command == "sync --full" and record.exit_code == 1
    assert record.counts["synced"] == 2 and record.counts["preview_failed"] == 1
    assert record.pid == os.getpid() and record.error is None
    assert parse_timestamp(record.started_at) <= parse_timestamp(record.finished_at)
    history = History(settings.state_dir)
    try:
        assert history.last(1) == [record]
    finally:
        history.close()


def test_a_dry_run_is_not_recorded_but_its_error_is_described(settings: Settings) -> None:
    with SyncRun(settings, RunOptions(dry_run=True), command="sync --dry-run") as run:
        record = run.record(4, None, LocalEnvironmentError("disk full"))
    assert record.error == "disk full" and record.counts == {}
    history = History(settings.state_dir)
    try:
        assert history.last(1) == []
    finally:
        history.close()


def test_the_metrics_file_is_written_with_the_last_success(settings: Settings, tmp_path: Path) -> None:
    metrics = tmp_path / "docsync.prom"
    with SyncRun(settings, RunOptions(), command="sync", metrics_file=metrics) as run:
        ok = run.record(0, RunSummary(), None)
    with SyncRun(settings, RunOptions(), command="sync", metrics_file=metrics) as run:
        run.record(1, RunSummary(), None)
    values = {sample.name: sample.value for family in text_string_to_metric_families(metrics.read_text())
              for sample in family.samples}
    assert values["docsync_last_run_exit_code"] == 1
    assert values["docsync_last_success_timestamp_seconds"] == parse_timestamp(ok.finished_at).timestamp()


def test_an_unwritable_metrics_file_is_a_local_problem_after_the_run_is_recorded(settings: Settings,
                                                                                 tmp_path: Path) -> None:
    metrics = tmp_path / "missing-dir" / "docsync.prom"
    with SyncRun(settings, RunOptions(), command="sync", metrics_file=metrics) as run, \
            pytest.raises(LocalEnvironmentError, match="cannot write"):
        run.record(0, RunSummary(), None)
    history = History(settings.state_dir)
    try:
        assert [run.exit_code for run in history.last(1)] == [0]
    finally:
        history.close()
