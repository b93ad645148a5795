"""Crash-at-every-step sweep (reliability.md A.4, with A.1 and A.2 as special cases).

A reference run (``sync --full`` with one new document, one replaced file, one document unlinked from an account
and one deleted in the CRM, plus an unchanged one) makes N external calls, in a fixed order because it runs with
``--concurrency 1``. For a call index k, docsync is started afresh from the same starting state and SIGKILLed by
the emulator either *before* call k is applied (the request is dropped unapplied) or right *after* it was applied
(before any answer reaches docsync). Then a clean ``sync --full`` must bring both services to the invariants of
reliability.md (c), checked from the emulators' state, and a third run must make zero writes.

Which k: every write both ways (the interesting crash points: each is a state change whose answer may be lost),
and the first read of every kind (a crash before a read is the same as a crash after the previous call, so the
other reads add nothing). ``DOCSYNC_CRASH_ALL=1`` runs every k both ways (about three times as long).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from docsync_sandbox.http import Callback, DropConnection, Request
from docsync_sandbox.seed import Sandbox
from tests.faults import faults_of

from .helpers import (
    RUN_TIMEOUT,
    Firm,
    clear_journals,
    describe,
    mutate_firm,
    run_engine,
    run_sync,
    sandbox_running,
    seed_small_firm,
    start_sync,
    write_summary,
)
from .invariants import assert_invariants

SYNC_ARGS = ("--full", "--concurrency", "1")


def _is_write(label: str) -> bool:
    return label.split()[1] in {"POST", "PUT", "PATCH", "DELETE"}


KNOWN_BUGS: dict[str, str] = {}  # case id -> reason, for a crash point docsync is known to mishandle


def _cases(reference: list[str]) -> list[tuple[int, str, str]]:
    every = os.environ.get("DOCSYNC_CRASH_ALL") == "1"
    cases: list[tuple[int, str, str]] = []
    seen: set[str] = set()
    for k, label in enumerate(reference, start=1):
        if every or _is_write(label) or label not in seen:
            cases.append((k, "before", label))
        if every or _is_write(label):
            cases.append((k, "after", label))
        seen.add(label)
    return cases


def _case_id(case: tuple[int, str, str]) -> str:
    k, when, label = case
    _, method, path = label.split()
    return f"{k:02d}-{when}-{method}-{path.strip('/').replace('/', '_')}"


def _shape(path: str) -> str:
    path = re.sub(r"/[0-9a-f]{17}(?=/|$)", "/{doc}", path)
    path = re.sub(r"collection_[-0-9a-f]+", "{c}", path)
    return re.sub(r"file_[-0-9a-f]+", "{f}", path)


def _calls(sandbox: Sandbox) -> list[str]:
    entries = sorted(sandbox.espo.requests() + sandbox.xai.requests(), key=lambda e: e.started)
    return [f"{e.listener} {e.method} {_shape(e.path)}" for e in entries]


def _starting_state(sandbox: Sandbox, tmp_path: Path) -> tuple[Firm, Path]:
    """Four documents synced by an earlier run, then changed by people in the CRM (see helpers.mutate_firm)."""
    state_dir = tmp_path / "state"
    firm = seed_small_firm(sandbox)
    first = run_engine(sandbox, state_dir, full=False)
    assert first.exit_code == 0, first
    assert_invariants(sandbox, all_synced=True)
    mutate_firm(sandbox, firm)
    clear_journals(sandbox)
    return firm, state_dir


class _KillAt:
    """One counter over every call to both emulators; SIGKILLs docsync at call ``k`` before or after it is
    applied. ``before`` also drops the request, so the emulator never applies it."""

    def __init__(self, sandbox: Sandbox, k: int, when: str) -> None:
        self.k = k
        self.when = when
        self.count = 0
        self.fired: str | None = None
        self.proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        for emulator in (sandbox.espo, sandbox.xai):
            faults_of(emulator).add(Callback(self._before, when="before"))
            faults_of(emulator).add(Callback(self._after, when="after"))
        self._pending: set[int] = set()  # ids of requests to kill after applying

    def _before(self, request: Request) -> None:
        with self._lock:
            self.count += 1
            hit = self.count == self.k
            if hit and self.when == "after":
                self._pending.add(id(request))
                return
        if hit:
            self._kill(request)
            raise DropConnection  # never applied: the emulator closes the socket without running the handler

    def _after(self, request: Request) -> None:
        with self._lock:
            hit = id(request) in self._pending
            self._pending.discard(id(request))
        if hit:
            self._kill(request)

    def _kill(self, request: Request) -> None:
        assert self.proc is not None
        self.fired = f"{request.listener} {request.method} {_shape(request.path)}"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def _finish(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    out, err = proc.communicate(timeout=RUN_TIMEOUT)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def reference_run(tmp_path: Path) -> list[str]:
    """The external calls of the reference run, in order (``--concurrency 1``), ids shortened to
    ``{doc}``/``{c}``/``{f}``; asserts the run itself is clean, reaches the invariants and is idempotent."""
    with sandbox_running() as sandbox:
        _, state_dir = _starting_state(sandbox, tmp_path)
        ref = run_sync(sandbox, state_dir, *SYNC_ARGS)
        assert ref.returncode == 0, describe(ref)
        calls = _calls(sandbox)
        assert_invariants(sandbox, all_synced=True)
        clear_journals(sandbox)
        again = run_sync(sandbox, state_dir, "--full")
        assert again.returncode == 0, describe(again)
        assert write_summary(sandbox) == [], "a --full rerun with nothing changed wrote"
        return calls


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The crash cases come from a reference run made at collection time, so they follow the engine."""
    if "case" not in metafunc.fixturenames:
        return
    with tempfile.TemporaryDirectory(prefix="docsync-reference-") as tmp:
        reference = reference_run(Path(tmp))
    assert len({c for c in reference if _is_write(c)}) >= 5, reference
    params = []
    for case in _cases(reference):
        bug = KNOWN_BUGS.get(_case_id(case))
        marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
        params.append(pytest.param(case, id=_case_id(case), marks=marks))
    metafunc.parametrize("case", params)


def test_reference_run_is_deterministic_and_covers_every_kind_of_work(tmp_path: Path) -> None:
    """Two reference runs make the same calls in the same order (the crash index means the same call in every
    case), and the run does every kind of write: upload, add, remove, delete, CRM update."""
    first = reference_run(tmp_path / "one")
    second = reference_run(tmp_path / "two")
    assert first == second
    kinds = {" ".join(c.split()[1:]) for c in first if _is_write(c)}
    assert kinds >= {
        "PUT /api/v1/Document/{doc}",
        "POST /v1/files",
        "POST /v1/collections/{c}/documents/{f}",
        "DELETE /v1/collections/{c}/documents/{f}",
        "DELETE /v1/files/{f}",
    }, kinds


def test_crash_then_rerun_heals(case: tuple[int, str, str], tmp_path: Path) -> None:
    k, when, label = case
    with sandbox_running() as sandbox:
        _, state_dir = _starting_state(sandbox, tmp_path)
        killer = _KillAt(sandbox, k, when)
        killer.proc = start_sync(sandbox, state_dir, *SYNC_ARGS)
        crashed = _finish(killer.proc)
        assert killer.fired is not None, f"call {k} never came (only {killer.count}):\n{describe(crashed)}"
        assert crashed.returncode == -signal.SIGKILL, describe(crashed)
        assert killer.fired == label, f"call {k} was {killer.fired}, in the reference run it was {label}"
        sandbox.espo.faults.clear()
        sandbox.xai.faults.clear()

        rerun = run_sync(sandbox, state_dir, "--full")
        assert rerun.returncode == 0, describe(rerun)
        assert_invariants(sandbox, all_synced=True)

        clear_journals(sandbox)
        third = run_engine(sandbox, state_dir, full=True)
        assert third.exit_code == 0, third
        assert write_summary(sandbox) == []
        assert_invariants(sandbox, all_synced=True)
