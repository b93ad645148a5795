"""The CRM profile matrix: docsync's core scenario against every way a real firm's EspoCRM may be set up
(:mod:`docsync_sandbox.crm_profiles`): the design document's fields (no "" and no "pending"), the fields
`docsync espocrm-fields` generates, c-prefixed names found without a mapping, `preview` as a file field, a
page cap of 50 and an HMAC API user.

The scenario: a first sync while xAI indexes slower than docsync waits (the "still indexing" path), the next
run finishing it without a second upload, a third run with zero writes, a failed document, and changed files
with a SIGTERM in the middle of the run. Throughout, EspoCRM must never have refused a request of docsync's:
the emulator validates every write as the real one does (EspoCRM contract §10.1)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from docsync_sandbox.crm_profiles import PROFILE_NAMES
from docsync_sandbox.http import Callback, Request
from docsync_sandbox.seed import Sandbox, corpus_dir
from tests.espocrm_fields import crm_profile
from tests.faults import faults_of

CORPUS = corpus_dir()
INDEXING = 0.8  # seconds xAI takes to index: longer than docsync waits
WAIT = "0.2"


def command(sandbox: Sandbox, state: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "docsync_cli", "sync", *args]


def env_for(sandbox: Sandbox, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= sandbox.environment(state)
    env |= {"DOCSYNC_SYNC__MAX_ATTEMPTS": "2", "DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS": WAIT,
            "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.1", "DOCSYNC_SYNC__CONCURRENCY": "2"}
    return env


def sync(sandbox: Sandbox, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(sandbox, state, *args), env=env_for(sandbox, state), text=True,
                          capture_output=True, timeout=120, check=False)


def refused(sandbox: Sandbox) -> list[str]:
    """EspoCRM requests answered with an error (there must be none: docsync writes only accepted values)."""
    return [f"{e.method} {e.path} -> {e.status}" for e in sandbox.espo.requests()
            if e.status is None or e.status >= 400]


@pytest.mark.slow
@pytest.mark.parametrize("crm", PROFILE_NAMES)
def test_core_scenario_against_each_crm_profile(crm: str, tmp_path: Path) -> None:
    with Sandbox(crm=crm_profile(crm), processing_delay=INDEXING) as sandbox:
        espo = sandbox.espo
        attr = espo.attr
        collection = sandbox.xai.create_collection("Mandant")
        account = espo.add_account("Mandant", collection)
        docs = [espo.add_document("Vertrag", (CORPUS / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                                  accounts=[account]),
                espo.add_document("Notiz", b"Telefonnotiz: Frist am Montag.\n", "notiz.txt", accounts=[account]),
                espo.add_document("Gutachten", (CORPUS / "libreoffice-writer.pdf").read_bytes(), "gutachten.pdf",
                                  accounts=[account])]
        broken = espo.add_document("Ohne Datei", None, accounts=[account])
        state = tmp_path / "state"
        offers_pending = "pending" in sandbox.profile.fields["xaiSyncStatus"]["options"]

        # 1. First sync, xAI slower than the wait: uploaded, but nothing claims "Gesynct"; "still indexing" is
        #    written as a value the field has. The document without a file fails; the run goes on.
        first = sync(sandbox, state)
        assert first.returncode == 1, first.stdout + first.stderr
        assert refused(sandbox) == []
        for doc_id in docs:
            doc = espo.document(doc_id)
            assert doc[attr("dateiStatus")] == "Neu"
            assert doc[attr("xaiSyncStatus")] == ("pending" if offers_pending else "syncing")
            assert doc[espo.preview_field + "Id"], f"{crm}: no preview"  # image or file field, either works
        failed = espo.document(broken)
        assert failed[attr("dateiStatus")] == "Fehler" and failed[attr("xaiSyncStatus")] == "failed"
        assert "no file" in failed[attr("xaiSyncError")]
        uploads = len(sandbox.xai.files())
        assert uploads == len(docs)

        # 2. Indexing done: the next run finishes them without uploading again.
        time.sleep(INDEXING)
        second = sync(sandbox, state, "--no-preview")
        assert second.returncode == 0, second.stdout + second.stderr
        for doc_id in docs:
            doc = espo.document(doc_id)
            content = espo.attachment_bytes(doc["fileId"])
            assert content is not None
            assert doc[attr("dateiStatus")] == "Gesynct" and doc[attr("xaiSyncStatus")] == "synced"
            assert doc[attr("sha")] == hashlib.sha256(content).hexdigest() == doc[attr("xaiSyncedHash")]
            assert doc[attr("xaiCollections")] == [collection]
        assert len(sandbox.xai.files()) == uploads
        assert espo.document(broken)[attr("dateiStatus")] == "Fehler"  # held back until it changes
        assert refused(sandbox) == []

        # 3. Nothing changed: zero writes.
        espo.clear_journal()
        sandbox.xai.clear_journal()
        third = sync(sandbox, state, "--no-preview")
        assert third.returncode == 0, third.stderr
        assert espo.writes() == [] and sandbox.xai.writes() == []

        # 4. Two files replaced, SIGTERM after the first upload: the document in hand is finished, the other one
        #    keeps its state; the next run finishes it. Old files are retired.
        sandbox.xai.processing_delay = 0.0
        old = {d: espo.document(d)[attr("xaiFileId")] for d in docs[:2]}
        new = {docs[0]: (CORPUS / "pdflatex-4-pages.pdf").read_bytes(), docs[1]: b"Telefonnotiz, korrigiert.\n"}
        for doc_id, content in new.items():
            espo.replace_file(doc_id, content)
        process = subprocess.Popen(command(sandbox, state, "--no-preview", "--concurrency", "1"),
                                   env=env_for(sandbox, state), text=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)

        def terminate(request: Request) -> None:
            process.send_signal(signal.SIGTERM)

        faults_of(sandbox.xai).add(Callback(terminate, when="after"), method="POST", path="/v1/files", calls=[1])
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1, err
        shas = {d: espo.document(d)[attr("xaiSyncedHash")] for d in new}
        finished = [d for d in new if shas[d] == hashlib.sha256(new[d]).hexdigest()]
        assert len(finished) == 1, shas
        assert refused(sandbox) == []
        sandbox.xai.faults.clear()
        last = sync(sandbox, state, "--no-preview")
        assert last.returncode == 0, last.stdout + last.stderr
        for doc_id, content in new.items():
            doc = espo.document(doc_id)
            assert doc[attr("dateiStatus")] == "Gesynct" and doc[attr("xaiSyncStatus")] == "synced"
            assert doc[attr("xaiSyncedHash")] == hashlib.sha256(content).hexdigest()
            assert old[doc_id] not in sandbox.xai.files()
        assert refused(sandbox) == []
