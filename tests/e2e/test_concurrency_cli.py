"""End to end: several docsync processes, signals, Redis, and people editing while docsync works."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_sandbox.http import Callback, Request
from docsync_sandbox.seed import Sandbox, corpus_dir
from tests.faults import faults_of
from tests.redis_server import RedisServer, require_redis_server

CORPUS = corpus_dir()
SAMPLES = ["minimal-document.pdf", "libreoffice-writer.pdf", "python-docx-test.docx", "libreoffice-source.odt"]


def env_for(sandbox: Sandbox, state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= sandbox.environment(state)
    env["DOCSYNC_SYNC__MAX_ATTEMPTS"] = "2"
    env |= extra
    return env


def start(sandbox: Sandbox, state: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "docsync_cli", "sync", "--no-preview", *args],
                            env=env_for(sandbox, state, **extra), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def firm(sandbox: Sandbox, documents: int) -> tuple[str, list[str]]:
    collection = sandbox.xai.create_collection("Mandant")
    account = sandbox.espo.add_account("Mandant", collection)
    ids = []
    for n in range(documents):
        sample = CORPUS / SAMPLES[n % len(SAMPLES)]
        ids.append(sandbox.espo.add_document(f"Dokument {n}", sample.read_bytes(), f"{n}-{sample.name}",
                                             accounts=[account]))
    return collection, ids


def uploads_per_document(sandbox: Sandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for entry in sandbox.xai.requests("POST", "/v1/files"):
        marker = entry.body.split(b'filename="crm-', 1)[1][:17].decode()
        counts[marker] = counts.get(marker, 0) + 1
    return counts


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


@pytest.mark.needs_redis
def test_two_hosts_share_one_backlog_through_redis(sandbox: Sandbox, tmp_path: Path) -> None:
    binary = require_redis_server()
    collection, ids = firm(sandbox, 24)
    sandbox.xai.set_latency(0.01)
    with RedisServer(binary) as redis:
        extra = {"DOCSYNC_LOCK__BACKEND": "redis", "DOCSYNC_LOCK__URL": redis.url}
        hosts = [start(sandbox, tmp_path / f"host-{n}", **extra) for n in range(2)]
        results = [host.communicate(timeout=240) for host in hosts]
    assert [host.returncode for host in hosts] == [0, 0], results
    assert all(sandbox.espo.document(doc_id)["dateiStatus"] == "Gesynct" for doc_id in ids)
    per_doc = uploads_per_document(sandbox)
    assert sorted(per_doc) == sorted(ids) and set(per_doc.values()) == {1}, per_doc
    assert len(sandbox.xai.collection_documents(collection)) == len(ids)
    assert len(sandbox.xai.files()) == len(ids)
    # one installation: both hosts use (and show) the id the first one stored in Redis
    shared = {(tmp_path / f"host-{n}" / "installation-id").read_text() for n in range(2)}
    assert len(shared) == 1
    assert {m["fields"]["installation_id"] + "\n" for m in sandbox.xai.collection_documents(collection).values()
            } == shared


@pytest.mark.needs_redis
def test_losing_redis_mid_run_stops_both_hosts_cleanly(sandbox: Sandbox, tmp_path: Path) -> None:
    binary = require_redis_server()
    collection, ids = firm(sandbox, 30)
    sandbox.xai.set_latency(0.05)
    with RedisServer(binary) as redis:
        seen = {"n": 0}

        def kill_redis(request: Request) -> None:
            seen["n"] += 1
            if seen["n"] == 3:
                redis.kill()

        faults_of(sandbox.xai).add(Callback(kill_redis, when="after"), method="POST", path="/v1/files")
        extra = {"DOCSYNC_LOCK__BACKEND": "redis", "DOCSYNC_LOCK__URL": redis.url}
        hosts = [start(sandbox, tmp_path / f"host-{n}", **extra) for n in range(2)]
        started = time.monotonic()
        outputs = [host.communicate(timeout=120) for host in hosts]
    assert time.monotonic() - started < 120
    assert [host.returncode for host in hosts] == [4, 4], outputs
    assert all("Redis" in err or "lock" in err for _, err in outputs)
    # Nothing claims "Gesynct" unless its file is really in the collection.
    members = {doc["fields"]["crm_document_id"] for doc in sandbox.xai.collection_documents(collection).values()}
    for doc_id in ids:
        doc = sandbox.espo.document(doc_id)
        if doc["dateiStatus"] == "Gesynct":
            assert doc_id in members
    assert sum(1 for d in ids if sandbox.espo.document(d)["dateiStatus"] == "Neu") > 0


def test_sigterm_finishes_the_document_in_hand_and_releases_the_lock(sandbox: Sandbox, tmp_path: Path) -> None:
    _, ids = firm(sandbox, 20)
    sandbox.espo.set_latency(0.02)
    state = tmp_path / "state"
    process = start(sandbox, state, "--concurrency", "1")
    uploads = {"n": 0}

    def terminate(request: Request) -> None:
        uploads["n"] += 1
        if uploads["n"] == 3:
            process.send_signal(signal.SIGTERM)

    faults_of(sandbox.xai).add(Callback(terminate, when="after"), method="POST", path="/v1/files")
    started = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert time.monotonic() - started < 60
    assert process.returncode == 1, err
    statuses = [sandbox.espo.document(doc_id)["dateiStatus"] for doc_id in ids]
    assert statuses.count("Gesynct") == 3  # the document in hand was finished, no new one started
    # The summary says so (it once read "3 synced, 0 unchanged", silent about the 17 not started).
    assert "stopped by a signal: 17 planned documents not started; the next run does them" in out, out
    assert all(sandbox.espo.document(d)["xaiSyncStatus"] != "syncing" for d in ids)
    # The lock was released: the next run starts at once and finishes the rest without re-uploading.
    sandbox.xai.faults.clear()
    rerun = start(sandbox, state)
    rerun.communicate(timeout=120)
    assert rerun.returncode == 0
    assert all(sandbox.espo.document(doc_id)["dateiStatus"] == "Gesynct" for doc_id in ids)
    assert set(uploads_per_document(sandbox).values()) == {1}


@pytest.mark.parametrize("optimistic", [False, True], ids=["re-read", "version-number"])
def test_a_users_edit_during_the_sync_is_kept_and_picked_up_again(tmp_path: Path, optimistic: bool) -> None:
    with Sandbox(optimistic_concurrency=optimistic) as sandbox:
        _, (doc_id,) = firm(sandbox, 1)

        def edit(request: Request) -> None:
            sandbox.espo.user_update(doc_id, description="Anmerkung der Kanzlei")

        if optimistic:
            # Edit right before docsync's final write: only X-Version-Number can catch this one.
            # (a new document without xaiSyncStatus gets no "syncing" mark: the write-back is the first PUT)
            faults_of(sandbox.espo).add(Callback(edit), method="PUT", path=f"/api/v1/Document/{doc_id}", calls=[1])
        else:
            faults_of(sandbox.xai).add(Callback(edit, when="after"), method="POST", path="/v1/files", calls=[1])
        state = tmp_path / "state"
        first = start(sandbox, state)
        first.communicate(timeout=60)
        doc = sandbox.espo.document(doc_id)
        assert doc["description"] == "Anmerkung der Kanzlei"
        # "another pass is needed": "syncing", as the design document's xaiSyncStatus has no "pending"
        assert doc["dateiStatus"] == "Neu" and doc["xaiSyncStatus"] == "syncing"
        second = start(sandbox, state)
        second.communicate(timeout=60)
        doc = sandbox.espo.document(doc_id)
        assert second.returncode == 0
        assert doc["dateiStatus"] == "Gesynct" and doc["description"] == "Anmerkung der Kanzlei"
        assert len(sandbox.xai.files()) == 1  # the first run's upload was adopted, not repeated


def test_a_file_replaced_right_before_the_write_back_is_refused_by_espocrm_and_picked_up_next_run(
        tmp_path: Path) -> None:
    # EspoCRM contract §10.9: without optimistic concurrency only the fileId in the write-back catches this one (the
    # replaced attachment is gone, so EspoCRM refuses to relate it: 403, §10.3); the upload is taken back out
    with Sandbox() as sandbox:
        collection, (doc_id,) = firm(sandbox, 1)
        replaced = (CORPUS / "pdflatex-4-pages.pdf").read_bytes()

        def replace(request: Request) -> None:
            sandbox.espo.replace_file(doc_id, replaced, "neu.pdf")

        faults_of(sandbox.espo).add(Callback(replace), method="PUT", path=f"/api/v1/Document/{doc_id}", calls=[1])
        state = tmp_path / "state"
        first = start(sandbox, state)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 0, err
        doc = sandbox.espo.document(doc_id)
        assert doc["dateiStatus"] == "Neu" and doc["sha"] is None  # nothing of the old file was written
        refused = [e for e in sandbox.espo.requests("PUT", f"/api/v1/Document/{doc_id}") if e.status == 403]
        assert len(refused) == 1
        assert sandbox.xai.files() == {} and sandbox.xai.collection_documents(collection) == {}
        second = start(sandbox, state)
        second.communicate(timeout=60)
        assert second.returncode == 0
        doc = sandbox.espo.document(doc_id)
        assert doc["dateiStatus"] == "Gesynct" and doc["sha"] == hashlib.sha256(replaced).hexdigest()
