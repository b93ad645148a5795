"""The one-line run summary counts documents a `--full` run verified unchanged as unchanged."""

from __future__ import annotations

import pytest

from docsync_cli.cli import views as ui
from docsync_cli.model import DocResult, Outcome, RunPlan, RunSummary


def test_full_run_summary_counts_verified_documents_as_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    # --full puts every document into the plan's work; 17 turn out in step ("verified"), 2 are synced
    results = [DocResult(f"d{i}", f"Doc {i}", Outcome.UNCHANGED, "verified: EspoCRM and xAI agree") for i in range(17)]
    results += [DocResult("s1", "Neu 1", Outcome.SYNCED), DocResult("s2", "Neu 2", Outcome.SYNCED)]
    summary = RunSummary(plan=RunPlan(work=(), unchanged=3), results=results)
    ui.print_summary(summary, dry_run=False)
    assert capsys.readouterr().out.splitlines()[0] == "docsync: 2 synced, 20 unchanged"
    assert summary.counts()["unchanged"] == 20  # history and metrics say the same


def test_the_summary_lists_the_documents_that_failed_were_skipped_or_deferred(
        capsys: pytest.CaptureFixture[str]) -> None:
    results = [DocResult(f"d-{outcome}", outcome.title(), outcome, f"because {outcome}") for outcome in Outcome]
    ui.print_summary(RunSummary(plan=RunPlan(work=(), unchanged=0), results=results), dry_run=False)
    listed = capsys.readouterr().out.splitlines()[1:]
    assert listed == ["  failed  d-failed  'Failed': because failed",
                      "  skipped  d-skipped  'Skipped': because skipped",
                      "  deferred  d-deferred  'Deferred': because deferred"]
