"""End to end: the real `docsync` CLI as a subprocess against both emulators on loopback.

Every assertion reads the emulators' own state (never docsync's output alone)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_sandbox.http import Respond
from docsync_sandbox.seed import Sandbox, corpus_dir
from tests.faults import faults_of

CORPUS = corpus_dir()


def docsync(sandbox: Sandbox, state: Path, *args: str, extra_env: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= sandbox.environment(state)
    env["DOCSYNC_SYNC__MAX_ATTEMPTS"] = "3"
    env |= extra_env or {}
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=env, text=True, capture_output=True,
                          timeout=timeout, check=False)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def small_firm(sandbox: Sandbox) -> dict[str, str]:
    """Two accounts with a collection each; three documents; one linked to both accounts."""
    c1 = sandbox.xai.create_collection("Mandant A")
    c2 = sandbox.xai.create_collection("Mandant B")
    a1 = sandbox.espo.add_account("A", c1)
    a2 = sandbox.espo.add_account("B", c2)
    d1 = sandbox.espo.add_document("Vertrag", (CORPUS / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                                   accounts=[a1])
    d2 = sandbox.espo.add_document("Klage", (CORPUS / "python-docx-test.docx").read_bytes(), "klage.docx",
                                   accounts=[a1, a2])
    d3 = sandbox.espo.add_document("Notiz", b"Telefonnotiz: Frist am Montag.\n", "notiz.txt",
                                   datei_status="Geändert", accounts=[a2])
    return {"c1": c1, "c2": c2, "a1": a1, "a2": a2, "d1": d1, "d2": d2, "d3": d3}


def members(sandbox: Sandbox, collection_id: str) -> dict[str, str]:
    """crm document id -> xAI file id, for the collection's documents."""
    return {doc["fields"]["crm_document_id"]: file_id
            for file_id, doc in sandbox.xai.collection_documents(collection_id).items()
            if "crm_document_id" in doc["fields"]}


def test_initial_sync_writes_everything_back_and_fills_the_collections(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    run = docsync(sandbox, state, "sync", "--no-preview")
    assert run.returncode == 0, run.stderr
    for key in ("d1", "d2", "d3"):
        doc = sandbox.espo.document(ids[key])
        content = sandbox.espo.attachment_bytes(doc["fileId"])
        assert content is not None
        assert doc["dateiStatus"] == "Gesynct"
        assert doc["xaiSyncStatus"] == "synced"
        assert doc["xaiSyncError"] in ("", None)
        assert doc["sha"] == hashlib.sha256(content).hexdigest() == doc["xaiSyncedHash"]
        assert doc["md5"] == hashlib.md5(content).hexdigest()
        assert sandbox.xai.file_bytes(doc["xaiFileId"]) == content
    assert members(sandbox, ids["c1"]) == {ids["d1"]: sandbox.espo.document(ids["d1"])["xaiFileId"],
                                           ids["d2"]: sandbox.espo.document(ids["d2"])["xaiFileId"]}
    assert set(members(sandbox, ids["c2"])) == {ids["d2"], ids["d3"]}
    assert sorted(sandbox.espo.document(ids["d2"])["xaiCollections"]) == sorted([ids["c1"], ids["c2"]])
    # Collections made by hand had no field definitions: docsync declared its keys.
    keys = {d["key"] for d in sandbox.xai.collection(ids["c1"])["field_definitions"]}
    assert {"crm_document_id", "content_sha256", "managed_by"} <= keys
    # One file per document, named with the recoverable marker.
    names = sorted(f["filename"] for f in sandbox.xai.files().values())
    assert len(names) == 3 and all(name.startswith("crm-") for name in names)


def test_second_run_with_nothing_changed_makes_no_writes(sandbox: Sandbox, state: Path) -> None:
    small_firm(sandbox)
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    sandbox.espo.clear_journal()
    sandbox.xai.clear_journal()
    again = docsync(sandbox, state, "sync", "--no-preview")
    assert again.returncode == 0, again.stderr
    assert sandbox.espo.writes() == [] and sandbox.xai.writes() == []
    assert "3 unchanged" in again.stdout


def test_replaced_file_is_swapped_make_before_break(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    old_file = sandbox.espo.document(ids["d1"])["xaiFileId"]
    new_bytes = (CORPUS / "libreoffice-writer.pdf").read_bytes()
    sandbox.espo.replace_file(ids["d1"], new_bytes, "vertrag-v2.pdf")  # status stays "Gesynct"
    sandbox.espo.clear_journal()
    sandbox.xai.clear_journal()
    run = docsync(sandbox, state, "sync", "--no-preview")
    assert run.returncode == 0, run.stderr
    doc = sandbox.espo.document(ids["d1"])
    assert doc["sha"] == hashlib.sha256(new_bytes).hexdigest() and doc["xaiFileId"] != old_file
    assert members(sandbox, ids["c1"])[ids["d1"]] == doc["xaiFileId"]
    assert old_file not in sandbox.xai.files()
    # Order: upload new → add new → CRM write → remove old → delete old.
    journal = sorted(sandbox.espo.requests() + sandbox.xai.requests(), key=lambda e: e.started)
    steps = [(e.method, e.path) for e in journal if e.is_write]
    upload = steps.index(("POST", "/v1/files"))
    add = next(i for i, s in enumerate(steps) if s[0] == "POST" and s[1].endswith(doc["xaiFileId"]))
    final_put = max(i for i, s in enumerate(steps) if s == ("PUT", f"/api/v1/Document/{ids['d1']}"))
    remove_old = steps.index(("DELETE", f"/v1/collections/{ids['c1']}/documents/{old_file}"))
    delete_old = steps.index(("DELETE", f"/v1/files/{old_file}"))
    assert upload < add < final_put < remove_old < delete_old


def test_unlinked_document_leaves_the_collection_on_a_full_run(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    sandbox.espo.unlink(ids["d2"], "accounts", ids["a2"])
    run = docsync(sandbox, state, "sync", "--no-preview", "--full")
    assert run.returncode == 0, run.stderr
    assert ids["d2"] not in members(sandbox, ids["c2"])
    assert ids["d2"] in members(sandbox, ids["c1"])
    assert sandbox.espo.document(ids["d2"])["xaiCollections"] == [ids["c1"]]


def test_deleted_document_is_pruned_and_hand_added_files_stay(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    foreign = sandbox.xai.add_foreign_file_to_collection(ids["c2"], "handbuch.txt", b"von Hand hochgeladen")
    gone_file = sandbox.espo.document(ids["d3"])["xaiFileId"]
    sandbox.espo.delete_document(ids["d3"])
    dry = docsync(sandbox, state, "prune", "--dry-run")
    assert dry.returncode == 1 and gone_file in dry.stdout
    assert gone_file in sandbox.xai.files()
    run = docsync(sandbox, state, "prune")
    assert run.returncode == 0, run.stderr
    assert gone_file not in sandbox.xai.files()
    assert ids["d3"] not in members(sandbox, ids["c2"])
    assert foreign in sandbox.xai.collection_documents(ids["c2"])


def test_mass_deletion_is_refused_without_force(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    for key in ("d1", "d2", "d3"):
        sandbox.espo.delete_document(ids[key])
    refused = docsync(sandbox, state, "sync", "--no-preview", "--full")
    assert refused.returncode == 4
    assert "--force-delete" in refused.stderr
    assert len(sandbox.xai.files()) == 3
    forced = docsync(sandbox, state, "sync", "--no-preview", "--full", "--force-delete")
    assert forced.returncode == 0, forced.stderr
    assert sandbox.xai.files() == {}


def test_dry_run_plans_but_writes_nothing(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    run = docsync(sandbox, state, "sync", "--dry-run")
    assert run.returncode == 1
    assert ids["d1"] in run.stdout and "would sync" in run.stdout
    assert sandbox.espo.writes() == [] and sandbox.xai.writes() == []


def test_bad_documents_are_marked_and_the_run_goes_on(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    no_file = sandbox.espo.add_document("Ohne Datei", None, accounts=[ids["a1"]])
    broken = sandbox.espo.add_document("Kaputt", b"not a pdf at all", "kaputt.pdf", accounts=[ids["a1"]])
    big = sandbox.espo.add_document("Riesig", b"x" * 50_000, "riesig.txt", accounts=[ids["a1"]])
    run = docsync(sandbox, state, "sync", "--no-preview", extra_env={"DOCSYNC_XAI__MAX_FILE_BYTES": "40000"})
    assert run.returncode == 1
    assert sandbox.espo.document(no_file)["dateiStatus"] == "Fehler"
    assert "no file" in sandbox.espo.document(no_file)["xaiSyncError"]
    failed = sandbox.espo.document(broken)
    assert failed["dateiStatus"] == "Fehler" and "could not process" in failed["xaiSyncError"]
    # The upload xAI could not parse does not linger unsearchable in the collection.
    assert broken not in members(sandbox, ids["c1"])
    assert not any(f["filename"].endswith("kaputt.pdf") for f in sandbox.xai.files().values())
    too_big = sandbox.espo.document(big)
    assert too_big["dateiStatus"] == "Fehler" and "larger than" in too_big["xaiSyncError"]
    assert not any(f["filename"].endswith("riesig.txt") for f in sandbox.xai.files().values())
    for key in ("d1", "d2", "d3"):
        assert sandbox.espo.document(ids[key])["dateiStatus"] == "Gesynct"
    # Permanent failures are held back until the document changes: the next run leaves them alone.
    sandbox.espo.clear_journal()
    sandbox.xai.clear_journal()
    again = docsync(sandbox, state, "sync", "--no-preview", extra_env={"DOCSYNC_XAI__MAX_FILE_BYTES": "40000"})
    assert again.returncode == 0
    assert sandbox.espo.writes() == [] and sandbox.xai.writes() == []


def test_wrong_xai_key_aborts_with_exit_3_and_marks_nothing_failed(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    run = docsync(sandbox, state, "sync", "--no-preview", extra_env={"XAI_API_KEY": "xai-wrong-CANARY"})
    assert run.returncode == 3
    assert "XAI_API_KEY" in run.stderr
    assert "CANARY" not in run.stderr + run.stdout
    for key in ("d1", "d2"):
        doc = sandbox.espo.document(ids[key])
        assert doc["dateiStatus"] == "Neu" and doc["xaiSyncStatus"] != "syncing"
    assert "CANARY" not in json.dumps(sandbox.espo.documents())


def test_config_errors_are_all_reported_with_exit_2(sandbox: Sandbox, state: Path) -> None:
    run = docsync(sandbox, state, "sync", extra_env={"ESPOCRM_URL": "ftp://nope", "DOCSYNC_SYNC__CONCURRENCY": "0"})
    assert run.returncode == 2
    assert "espocrm.url" in run.stderr and "sync.concurrency" in run.stderr
    assert sandbox.espo.requests() == [] and sandbox.xai.requests() == []


def test_a_second_run_exits_75_while_the_lock_is_held(sandbox: Sandbox, state: Path) -> None:
    from docsync_cli.locks import FileLocks

    small_firm(sandbox)
    held = FileLocks(state)
    held.acquire_run()
    try:
        run = docsync(sandbox, state, "sync", "--no-preview")
    finally:
        held.release_run()
        held.close()
    assert run.returncode == 75
    assert "lock" in run.stderr and str(os.getpid()) in run.stderr
    # what cron.example promises of a locked run: one line on stderr (to syslog), nothing else
    assert run.stdout == "" and len(run.stderr.strip().splitlines()) == 1, run.stderr
    cron = (Path(__file__).resolve().parents[2] / "cron.example").read_text()
    assert "exits 75 after one line on stderr" in cron and "without output" not in cron
    assert sandbox.espo.writes() == [] and sandbox.xai.writes() == []


def test_transient_errors_are_retried(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    faults_of(sandbox.xai).add(Respond(503, b'{"code":"Unavailable","error":"try later"}', {"Retry-After": "0"}),
                           method="POST", path=r"/v1/collections/.*/documents/.*", times=2)
    faults_of(sandbox.espo).add(Respond(502, "<html>bad gateway</html>"), method="GET", path=r"/api/v1/Document",
                            times=1)
    run = docsync(sandbox, state, "sync", "--no-preview")
    assert run.returncode == 0, run.stderr
    assert all(sandbox.espo.document(ids[k])["dateiStatus"] == "Gesynct" for k in ("d1", "d2", "d3"))
    assert len(sandbox.xai.files()) == 3


def test_sync_by_id_touches_only_that_document(sandbox: Sandbox, state: Path) -> None:
    ids = small_firm(sandbox)
    run = docsync(sandbox, state, "sync", "--no-preview", "--id", ids["d3"])
    assert run.returncode == 0, run.stderr
    assert sandbox.espo.document(ids["d3"])["dateiStatus"] == "Gesynct"
    assert sandbox.espo.document(ids["d1"])["dateiStatus"] == "Neu"
    assert {e.path for e in sandbox.espo.writes()} == {f"/api/v1/Document/{ids['d3']}"}


def test_previews_are_written_back_as_webp(sandbox: Sandbox, state: Path) -> None:
    from io import BytesIO

    from PIL import Image

    ids = small_firm(sandbox)
    run = docsync(sandbox, state, "sync", "--id", ids["d1"], "--id", ids["d3"])
    assert run.returncode == 0, run.stderr
    for key in ("d1", "d3"):
        preview_id = sandbox.espo.document(ids[key])["previewId"]
        attachment = sandbox.espo.attachment(preview_id)
        assert attachment is not None and attachment["type"] == "image/webp"
        data = sandbox.espo.attachment_bytes(preview_id)
        assert data is not None
        image = Image.open(BytesIO(data))
        assert image.format == "WEBP" and image.width <= 600 and image.height <= 800


def test_an_outage_trips_the_breaker_instead_of_failing_every_document(sandbox: Sandbox, state: Path) -> None:
    c1 = sandbox.xai.create_collection("Mandant")
    account = sandbox.espo.add_account("Mandant", c1)
    ids = [sandbox.espo.add_document(f"Dok {n}", f"Inhalt {n}\n".encode(), f"dok-{n}.txt", accounts=[account])
           for n in range(12)]
    faults_of(sandbox.xai).add(Respond(503, b'{"code":"Unavailable","error":"down"}', {"Retry-After": "0"}),
                           listener="api")
    run = docsync(sandbox, state, "sync", "--no-preview", "--concurrency", "1",
                  extra_env={"DOCSYNC_SYNC__MAX_ATTEMPTS": "2"})
    assert run.returncode == 3, run.stderr
    assert "in a row" in run.stderr
    statuses = [sandbox.espo.document(doc_id)["dateiStatus"] for doc_id in ids]
    assert statuses.count("Fehler") == 5 and statuses.count("Neu") == 7
    sandbox.xai.faults.clear()
    healed = docsync(sandbox, state, "sync", "--no-preview")
    assert healed.returncode == 0, healed.stderr
    assert all(sandbox.espo.document(doc_id)["dateiStatus"] == "Gesynct" for doc_id in ids)


def test_metrics_file_and_json_logs(sandbox: Sandbox, state: Path, tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    small_firm(sandbox)
    metrics = tmp_path / "docsync.prom"
    run = docsync(sandbox, state, "--log-format", "json", "sync", "--no-preview", "--metrics-file", str(metrics))
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert sum("synced" in line["message"] for line in lines) == 3
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(metrics.read_text()) for s in family.samples}
    assert samples[("docsync_last_run_exit_code", ())] == 0
    assert samples[("docsync_documents", (("result", "synced"),))] == 3
    assert ("docsync_last_success_timestamp_seconds", ()) in samples


def test_espocrm_fields_prints_entity_defs_with_configured_names(sandbox: Sandbox, state: Path) -> None:
    run = docsync(sandbox, state, "espocrm-fields", extra_env={"DOCSYNC_ESPOCRM__FIELDS__DATEISTATUS": "cDateiStatus"})
    assert run.returncode == 0, run.stderr
    first_json = run.stdout.split("\n//")[0].split("\n", 1)[1]
    fields = json.loads(first_json)["fields"]
    assert fields["cDateiStatus"]["options"] == ["", "Neu", "Geändert", "Gesynct", "Fehler"]
    assert fields["xaiCollections"]["type"] == "array"
    assert fields["preview"]["type"] == "image"


def test_an_unwritable_state_dir_is_a_clear_local_error(sandbox: Sandbox, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state directory should be")
    run = docsync(sandbox, blocked, "sync", "--no-preview")
    assert run.returncode == 4
    assert "Traceback" not in run.stderr and str(blocked) in run.stderr
    assert sandbox.espo.requests() == [] and sandbox.xai.requests() == []


def test_sync_by_id_skips_a_document_another_run_is_working_on(sandbox: Sandbox, state: Path) -> None:
    from docsync_cli.locks import FileLocks

    ids = small_firm(sandbox)
    timer_run = FileLocks(state)  # a scheduled run holds the run lock and is working on d1
    timer_run.acquire_run()
    try:
        with timer_run.document(ids["d1"]):
            run = docsync(sandbox, state, "sync", "--no-preview", "--id", ids["d1"], "--id", ids["d2"])
    finally:
        timer_run.release_run()
        timer_run.close()
    assert run.returncode == 75, run.stdout + run.stderr
    assert f"skipped  {ids['d1']}" in run.stdout and "busy" in run.stdout
    assert sandbox.espo.document(ids["d1"])["dateiStatus"] == "Neu"  # never worked on twice at once
    assert sandbox.espo.document(ids["d2"])["dateiStatus"] == "Gesynct"  # the --id run did not wait for the lock
