"""HTTP faults from the emulators' fault scripts (reliability.md C.15–C.24, A.3), docsync run as the real CLI.

Every test checks the outcome from the emulators' state and journals, never through docsync.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from docsync_sandbox.http import Callback, Drop, Request, Respond
from docsync_sandbox.seed import Sandbox
from tests.faults import faults_of

from .helpers import (
    Firm,
    clear_journals,
    describe,
    mutate_firm,
    run_engine,
    run_sync,
    sandbox_running,
    seed_small_firm,
    write_summary,
)
from .invariants import assert_invariants

UPLOAD = r"/v1/files"
ADD = r"/v1/collections/[^/]+/documents/[^/]+"
LISTING = r"/v1/collections/[^/]+/documents"
XAI_JSON_ERROR = '{"code": "unavailable", "error": "try again"}'


@dataclass
class FirmRun:
    sandbox: Sandbox
    firm: Firm
    state_dir: Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[FirmRun]:
    with sandbox_running() as sandbox:
        yield FirmRun(sandbox, seed_small_firm(sandbox), tmp_path / "state")


def _synced_then_mutated(world: FirmRun) -> None:
    """An earlier clean run synced everything, then people changed the CRM (new, replaced, unlinked, deleted)."""
    first = run_engine(world.sandbox, world.state_dir, full=False)
    assert first.exit_code == 0, first
    mutate_firm(world.sandbox, world.firm)
    clear_journals(world.sandbox)


def _statuses(entries: list[Any]) -> list[int | None]:
    return [e.status for e in entries]


def test_429_storm_is_waited_out(world: FirmRun) -> None:
    sandbox = world.sandbox
    faults_of(sandbox.xai).add(
        Respond(429, XAI_JSON_ERROR, {"Retry-After": "0", "Content-Type": "application/json"}),
        method="POST",
        path=UPLOAD,
        calls=[1, 2, 3],
    )
    proc = run_sync(sandbox, world.state_dir, "--concurrency", "1", DOCSYNC_SYNC__MAX_ATTEMPTS="5")
    assert proc.returncode == 0, describe(proc)
    assert_invariants(sandbox, all_synced=True)
    uploads = sandbox.xai.requests("POST", UPLOAD)
    assert _statuses(uploads) == [429, 429, 429] + [200] * 4  # three refusals, then each document once
    assert len(sandbox.xai.files()) == 4


def test_a_429_asking_for_an_hour_stops_the_run_as_rate_limited_and_blames_no_document(world: FirmRun) -> None:
    _synced_then_mutated(world)
    sandbox = world.sandbox
    rule = faults_of(sandbox.xai).add(
        Respond(429, XAI_JSON_ERROR, {"Retry-After": "3600", "Content-Type": "application/json"}),
        method="POST",
        path=UPLOAD,
    )
    proc = run_sync(sandbox, world.state_dir, "--concurrency", "1")
    assert proc.returncode == 3, describe(proc)
    assert "rate limited until " in proc.stderr and "Traceback" not in proc.stderr, describe(proc)
    assert len(sandbox.xai.requests("POST", UPLOAD)) == 1, "the run went on uploading after the 429"
    a = sandbox.espo.attr
    docs = sandbox.espo.documents()
    assert not [d["id"] for d in docs if d.get(a("dateiStatus")) == "Fehler"], "a document was blamed"
    assert not [d["id"] for d in docs if d.get(a("xaiSyncStatus")) in ("failed", "syncing")]
    # Once the limit is over, the next run finishes everything.
    faults_of(sandbox.xai).clear()
    assert rule.seen >= 1
    again = run_sync(sandbox, world.state_dir, "--full")
    assert again.returncode == 0, describe(again)
    assert_invariants(sandbox, all_synced=True)


def test_5xx_on_reads_is_retried(world: FirmRun) -> None:
    _synced_then_mutated(world)
    sandbox = world.sandbox
    faults_of(sandbox.espo).add(Respond(503, "Service Unavailable"), method="GET", path=r"/api/v1/Document", calls=[1])
    faults_of(sandbox.espo).add(
        Respond(502, "<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"}),
        method="GET",
        path=r"/api/v1/Attachment/file/.+",
        calls=[1],
    )
    faults_of(sandbox.xai).add(Respond(502, XAI_JSON_ERROR), method="GET", path=LISTING, calls=[1])
    faults_of(sandbox.xai).add(Respond(504, XAI_JSON_ERROR), method="GET", path=r"/v1/files/[^/]+", calls=[1])
    faults_of(sandbox.xai).add(Respond(503, XAI_JSON_ERROR), method="GET", path=r".*/documents:batchGet", calls=[1])
    proc = run_sync(sandbox, world.state_dir, "--full")
    assert proc.returncode == 0, describe(proc)
    assert_invariants(sandbox, all_synced=True)
    for emulator, path, status in (
        (sandbox.espo, r"/api/v1/Document", 503),
        (sandbox.espo, r"/api/v1/Attachment/file/.+", 502),
        (sandbox.xai, LISTING, 502),
        (sandbox.xai, r"/v1/files/[^/]+", 504),
        (sandbox.xai, r".*/documents:batchGet", 503),
    ):
        seen = _statuses(emulator.requests("GET", path))
        assert seen[0] == status and seen[1] == 200, (path, seen)  # failed once, asked again, answered


def test_dropped_connection_on_collection_add_is_retried(world: FirmRun) -> None:
    sandbox = world.sandbox
    faults_of(sandbox.xai).add(Drop(), method="POST", path=ADD, calls=[1])
    proc = run_sync(sandbox, world.state_dir)
    assert proc.returncode == 0, describe(proc)
    assert_invariants(sandbox, all_synced=True)
    adds = sandbox.xai.requests("POST", ADD)
    assert _statuses(adds).count(None) == 1
    assert len(adds) == 5 + 1  # five memberships (unlinked is in A and B), one of them sent twice
    assert len(sandbox.xai.requests("POST", UPLOAD)) == 4


def test_upload_applied_then_dropped_is_looked_up_not_repeated(world: FirmRun) -> None:
    """The rclone #360 pattern: xAI stored the file but the answer was lost. docsync must find it by its marked
    name instead of uploading a second copy (or, if it did, remove the duplicate in the same run)."""
    sandbox = world.sandbox
    faults_of(sandbox.xai).add(Drop(after_apply=True), method="POST", path=UPLOAD, calls=[1])
    proc = run_sync(sandbox, world.state_dir, "--concurrency", "1")
    assert proc.returncode == 0, describe(proc)
    assert_invariants(sandbox, all_synced=True)
    assert len(sandbox.xai.files()) == 4, sandbox.xai.files()
    uploads = sandbox.xai.requests("POST", UPLOAD)
    assert len(uploads) == 4, "the lost upload was repeated blindly"
    lookups = sandbox.xai.requests("GET", r"/v1/files")
    assert lookups and lookups[0].started > uploads[0].started
    assert "filter" in lookups[0].raw_path


def test_revoked_key_mid_run_aborts_and_leaves_untouched_documents_alone(world: FirmRun) -> None:
    # xAI contract §15: the api host answers a revoked key with 400 "Incorrect API key provided"
    sandbox = world.sandbox

    def rotate(request: Request) -> None:
        sandbox.xai.set_keys(api_key="rotated-" + sandbox.xai_key[::-1])

    faults_of(sandbox.xai).add(Callback(rotate, when="after"), method="POST", path=UPLOAD, calls=[2])
    proc = run_sync(sandbox, world.state_dir, "--concurrency", "1")
    assert proc.returncode == 3, describe(proc)
    output = proc.stdout + proc.stderr
    for secret in (sandbox.xai_key, sandbox.mgmt_key, sandbox.espo_key):
        assert secret not in output
    aborted = [line for line in proc.stderr.splitlines() if line.startswith("docsync: run aborted")]
    assert len(aborted) == 1 and "HTTP 400" in aborted[0] and "Incorrect API key" in aborted[0], describe(proc)
    assert "XAI_API_KEY" in proc.stderr
    docs = sandbox.espo.documents()
    statuses = sorted(d["dateiStatus"] for d in docs)
    assert "Fehler" not in statuses, statuses
    assert statuses.count("Gesynct") == 2 and statuses.count("Neu") == 2, statuses
    assert_invariants(sandbox, clean=True)  # nothing left "syncing", the two synced ones are really synced


def test_401_abort_message_is_one_line(world: FirmRun) -> None:
    sandbox = world.sandbox
    sandbox.xai.set_keys(api_key="revoked")
    proc = run_sync(sandbox, world.state_dir, "--concurrency", "1")
    assert proc.returncode == 3, describe(proc)
    aborted = [line for line in proc.stderr.splitlines() if line.startswith("docsync: run aborted")]
    assert len(aborted) == 1 and "rejected the credentials" in aborted[0], describe(proc)
    assert "fix:" not in aborted[0]  # the advice is its own line


def test_listing_that_fails_halfway_deletes_nothing(world: FirmRun) -> None:
    """rclone's "not deleting files as there were IO errors": the second collection listing fails (every retry
    too), so the file of the document deleted in the CRM must survive this run; a clean run removes it."""
    sandbox = world.sandbox
    first = run_engine(sandbox, world.state_dir, full=False)
    assert first.exit_code == 0, first
    deleted_file = sandbox.espo.document(world.firm.docs["deleted"])["xaiFileId"]
    sandbox.espo.delete_document(world.firm.docs["deleted"])
    clear_journals(sandbox)
    faults_of(sandbox.xai).add(Respond(500, XAI_JSON_ERROR), method="GET", path=LISTING, calls=range(2, 1000))
    proc = run_sync(sandbox, world.state_dir, "--full")
    assert proc.returncode in (0, 1), describe(proc)
    assert len(sandbox.xai.requests("GET", LISTING)) >= 2
    assert [f"{e.method} {e.path}" for e in sandbox.xai.requests("DELETE")] == [], describe(proc)
    assert deleted_file in sandbox.xai.files()
    sandbox.xai.faults.clear()
    again = run_sync(sandbox, world.state_dir, "--full")
    assert again.returncode == 0, describe(again)
    assert deleted_file not in sandbox.xai.files()
    assert_invariants(sandbox, all_synced=True)


def test_empty_crm_listing_is_refused_without_force_delete(world: FirmRun) -> None:
    sandbox = world.sandbox
    first = run_engine(sandbox, world.state_dir, full=False)
    assert first.exit_code == 0, first
    files = set(sandbox.xai.files())
    for doc in sandbox.espo.documents():
        sandbox.espo.delete_document(doc["id"])
    clear_journals(sandbox)
    proc = run_sync(sandbox, world.state_dir, "--full")
    assert proc.returncode == 4, describe(proc)
    assert "--force-delete" in proc.stderr
    assert sandbox.xai.requests("DELETE") == []
    assert set(sandbox.xai.files()) == files
    forced = run_sync(sandbox, world.state_dir, "--full", "--force-delete")
    assert forced.returncode == 0, describe(forced)
    assert sandbox.xai.files() == {}
    assert_invariants(sandbox)


def test_html_page_with_200_is_a_classified_error(world: FirmRun) -> None:
    sandbox = world.sandbox
    faults_of(sandbox.espo).add(
        Respond(200, "<!doctype html><html><body>Login</body></html>", {"Content-Type": "text/html"}),
        method="GET",
        path=r"/api/v1/Document",
    )
    proc = run_sync(sandbox, world.state_dir)
    assert proc.returncode in (1, 3), describe(proc)
    assert "Traceback" not in proc.stderr, describe(proc)
    assert "docsync" in proc.stderr
    assert write_summary(sandbox) == []


def test_redirect_to_another_host_is_not_followed(world: FirmRun) -> None:
    sandbox = world.sandbox
    with sandbox_running() as other:
        target = other.xai.api_url + "/v1/files"
        faults_of(sandbox.xai).add(Respond(307, "", {"Location": target}), method="POST", path=UPLOAD)
        proc = run_sync(sandbox, world.state_dir, "--concurrency", "1")
        assert proc.returncode == 3, describe(proc)
        assert other.xai.requests() == [] and other.espo.requests() == []
        assert "redirect" in proc.stderr
        assert sandbox.xai_key not in proc.stdout + proc.stderr
        assert "Fehler" not in [d["dateiStatus"] for d in sandbox.espo.documents()]
        assert_invariants(sandbox, clean=True)
