"""One ``sync`` or ``prune`` run for the CLI, from lock to run history.

:class:`SyncRun` takes the run lock, opens the local state and the run history, builds the service clients, the
warm preview service and the engine, runs it, and afterwards records the run (history, Prometheus textfile) and
releases everything. Printing and exit codes stay in ``cli.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any

from docsync_cli.config import Settings
from docsync_cli.errors import DocsyncError, LocalEnvironmentError
from docsync_cli.locks import Locks, make_locks, pid_alive
from docsync_cli.model import DocResult, Preview, RunOptions, RunPlan, RunSummary
from docsync_cli.state import StateStore, installation_id, remember_installation_id
from docsync_cli.state.directory import foreign_owner_warning, state_dir_problem
from docsync_cli.state.history import History, RunRecord
from docsync_cli.sync.engine import Engine
from docsync_cli.sync.keys import key_fingerprints, prove_keys
from docsync_cli.sync.services import engine_settings, open_services
from docsync_cli.timestamps import timestamp_to_unix, utc_timestamp

log = logging.getLogger("docsync.run")


class PreviewNote(Enum):
    """What a document's result changes in the run history's preview failures (``docsync status`` shows them)."""

    KEEP = "keep"  # a failure already known for this content: the reason recorded when it failed stays
    CLEAR = "clear"  # a preview was written, is unchanged or is off: no failure to show
    RECORD = "record"  # the preview failed now: remember why


def preview_note(result: DocResult) -> PreviewNote:
    """The change to the preview failures for one document's result."""
    if result.preview == Preview.KNOWN_FAILURE:
        return PreviewNote.KEEP
    return PreviewNote.CLEAR if result.preview_failure is None else PreviewNote.RECORD


def remember_previews(history: History, results: Iterable[DocResult]) -> None:
    """Apply each result's :func:`preview_note` to the run history."""
    for result in results:
        note = preview_note(result)
        if note is PreviewNote.CLEAR:
            history.clear_preview_error(result.doc_id)
        elif note is PreviewNote.RECORD:
            history.set_preview_error(result.doc_id, str(result.preview))


class SyncRun:
    def __init__(self, settings: Settings, options: RunOptions, *, command: str, wait: float | None = None,
                 concurrency: int | None = None, previews: bool = True, metrics_file: Path | None = None) -> None:
        self.settings = settings
        self.options = options
        self.command = command
        self.wait = wait
        self.concurrency = concurrency
        self.previews = previews and not options.dry_run and settings.preview.enabled
        self.metrics_file = metrics_file
        self.started = datetime.now(UTC)
        self._started_mono = time.monotonic()
        self._stack = contextlib.ExitStack()
        self.locks: Locks | None = None
        self.state: StateStore | None = None
        self.history: History | None = None
        self.temp_dir: Path | None = None

    def __enter__(self) -> SyncRun:
        settings = self.settings
        problem = state_dir_problem(settings.state_dir)
        if problem is not None:
            raise LocalEnvironmentError(str(problem))
        warning = foreign_owner_warning(settings.state_dir)
        if warning is not None:
            log.warning("%s", warning)
        locks = make_locks(settings.lock.backend, settings.state_dir, settings.lock.url, settings.lock.ttl_seconds,
                           purpose="id" if self.options.ids else "sync")
        self._stack.callback(locks.close)
        locks.acquire_run(self.wait)
        self._stack.callback(locks.release_run)
        self.locks = locks
        try:
            self._private_temp()
            # Configured, else shared through the lock backend (hosts on one Redis are one installation), else
            # the one in the state dir (made on the first run).
            try:
                own = settings.sync.installation_id or installation_id(settings.state_dir)
                chosen = settings.sync.installation_id or locks.installation_id(own)
                if chosen != own:  # another host on the same Redis was first: remember its id (shown by status)
                    remember_installation_id(settings.state_dir, chosen)
            except OSError as exc:
                raise LocalEnvironmentError(f"cannot keep the installation id in {settings.state_dir}: {exc}") from exc
            self.state = StateStore(settings.state_dir, chosen)
            self._stack.callback(self.state.close)
            self.history = History(settings.state_dir)
            self._stack.callback(self.history.close)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()

    def _private_temp(self) -> None:
        """Downloads and renderer files go to a private temp dir under the state dir (not the shared
        ``$TMPDIR``); what a killed run left there (client documents) is swept now."""
        self.temp_dir = sweep_temp(self.settings.state_dir)
        self._stack.callback(shutil.rmtree, self.temp_dir, True)
        saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
        os.environ["TMPDIR"], tempfile.tempdir = str(self.temp_dir), str(self.temp_dir)

        def restore() -> None:
            tempfile.tempdir = saved_tempdir
            if saved_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_env

        self._stack.callback(restore)

    def execute(self, *, on_result: Callable[[DocResult], None], on_plan: Callable[[RunPlan], None],
                stop: threading.Event) -> RunSummary:
        """Run the engine; remember preview failures for ``docsync status``."""
        assert self.locks is not None and self.state is not None and self.history is not None
        with (open_services(self.settings, concurrency=self.concurrency) as services,
              self._preview_service() as previews):
            engine = Engine(services.espo, services.xai, self.state, self.locks,
                            engine_settings(self.settings, self.concurrency, self.temp_dir), previews=previews,
                            on_result=on_result, on_plan=on_plan, stop=stop)
            summary = engine.run(self.options)
            if summary.fatal is None and not summary.stopped:  # a run with nothing to do proves the keys too
                prove_keys(services.xai, self.settings.state_dir, key_fingerprints(self.settings))
        remember_previews(self.history, summary.results)
        return summary

    def record(self, exit_code: int, summary: RunSummary | None, error: DocsyncError | None) -> RunRecord:
        """Write the run into the history (not for dry runs) and the metrics file, if one was asked for."""
        assert self.history is not None
        finished = datetime.now(UTC)
        failure = error or (summary.fatal if summary else None)
        record = RunRecord(started_at=utc_timestamp(self.started), finished_at=utc_timestamp(finished),
                           duration_seconds=round(time.monotonic() - self._started_mono, 3), command=self.command,
                           exit_code=exit_code, counts=summary.counts() if summary else {},
                           host=socket.gethostname(), pid=os.getpid(), error=str(failure) if failure else None)
        if not self.options.dry_run:
            self.history.record(record)
        if self.metrics_file is not None:
            from docsync_cli.state.metrics import write_metrics

            last = self.history.last_success()
            try:
                write_metrics(self.metrics_file, record,
                              timestamp_to_unix(last.finished_at) if last else None)
            except OSError as exc:  # the run is recorded; the missing textfile is a local problem (exit 4)
                raise LocalEnvironmentError(f"cannot write {self.metrics_file}: {exc.strerror or exc}") from None
        return record

    @contextlib.contextmanager
    def _preview_service(self) -> Iterator[Any]:
        if not self.previews:
            yield None
            return
        from docsync_cli.preview import PreviewService

        private_root = self.settings.state_dir / "libreoffice"
        with PreviewService(self.settings.preview.limits(), private_root=private_root) as service:
            yield service


def sweep_temp(state_dir: Path) -> Path:
    """``<state dir>/tmp/run-<pid>-<random>`` for this run (``0700``), after removing the directories of runs
    whose process is gone (a SIGKILL leaves downloaded client documents behind)."""
    root = state_dir / "tmp"
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if root.is_symlink():
        root.unlink()
    root.mkdir(mode=0o700, exist_ok=True)
    for entry in root.iterdir():
        pid = entry.name.split("-")[1] if entry.name.startswith("run-") else ""
        if pid.isdigit() and pid_alive(int(pid)):
            continue  # a concurrent run on this host (e.g. sync --id beside the scheduled one)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-", dir=root))
