"""The one mapping from an error or a run's summary to docsync's exit code (README's "Exit codes")."""

from __future__ import annotations

import pytest

from docsync_cli import outcome
from docsync_cli.errors import (
    AuthError,
    ConfigError,
    DocsyncError,
    ForeignInstallation,
    LocalEnvironmentError,
    LocalStateError,
    LockHeld,
    NotFoundError,
    PermanentDocumentError,
    RateLimited,
    ServiceUnreachable,
    SetupError,
    UnsafePlan,
    UsageError,
)
from docsync_cli.model import CrmDocument, DocResult, Outcome, RunPlan, RunSummary, WorkItem


@pytest.mark.parametrize(("error", "code"), [
    (ConfigError(["espocrm.url: missing"]), 2),
    (UsageError("no such document"), 2),
    (SetupError("no field md5"), 2),
    (NotFoundError("espocrm", "GET", "/App/user", 404), 2),
    (AuthError("xai", 401), 3),
    (ServiceUnreachable("connection refused"), 3),
    (LocalEnvironmentError("disk full"), 4),
    (LocalStateError("/var/lib/docsync", "save a document's record", "disk_full", "database or disk is full"), 4),
    (RateLimited("xai", 3600, "2026-01-01T13:00:00Z"), 3),
    (ForeignInstallation(["other-installation"], ["d1"]), 2),
    (UnsafePlan("would delete 90%"), 4),
    (LockHeld("host:1"), 75),
    (PermanentDocumentError("too large"), 1),
    (DocsyncError("anything else"), 1),
])
def test_each_error_has_its_exit_code(error: DocsyncError, code: int) -> None:
    assert outcome.error_code(error) == code


def _work() -> RunPlan:
    doc = CrmDocument(id="d1", name="Doc", modified_at="2026-01-01 00:00:00", datei_status="Neu")
    return RunPlan(work=(WorkItem(doc, "new"),), unchanged=0)


def test_a_run_exits_by_its_documents_its_stop_and_its_fatal_error() -> None:
    assert outcome.run_code(RunSummary(results=[DocResult("d1", "Doc", Outcome.SYNCED)])) == 0
    assert outcome.run_code(RunSummary(results=[DocResult("d1", "Doc", Outcome.SYNCED),
                                                DocResult("d2", "Doc", Outcome.FAILED, "boom")])) == 1
    assert outcome.run_code(RunSummary(stopped=True)) == 1
    assert outcome.run_code(RunSummary(results=[DocResult("d1", "Doc", Outcome.FAILED)],
                                       fatal=AuthError("espocrm", 403))) == 3


def test_a_dry_run_with_work_exits_1_and_one_without_exits_0() -> None:
    assert outcome.run_code(RunSummary(plan=_work()), dry_run=True) == 1
    assert outcome.run_code(RunSummary(plan=RunPlan(work=(), unchanged=4)), dry_run=True) == 0
    assert outcome.run_code(RunSummary(plan=_work())) == 0  # the same plan, run for real with nothing failed


def test_documents_asked_for_by_id_that_another_run_holds_exit_75() -> None:
    busy = RunSummary(results=[DocResult("d1", "Doc", Outcome.SKIPPED, "busy: another run holds it",
                                         busy_holder="another run")])
    assert outcome.run_code(busy, ids_requested=True) == 75
    assert outcome.run_code(busy) == 0  # the scheduled run skips it quietly; the next run takes it
    failed_too = RunSummary(results=[*busy.results, DocResult("d2", "Doc", Outcome.FAILED)])
    assert outcome.run_code(failed_too, ids_requested=True) == 1
