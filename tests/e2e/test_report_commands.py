"""End to end: `docsync status`, `explain`, `preview` and `check` as subprocesses against both emulators.

One sandbox (seeded with the sample firm and synced once with ``sync --no-preview``) serves the module; tests that
change the CRM compute their expectations from the emulators' state at the time they run. Every command's output
is checked for the sandbox keys: no secret may ever be printed.
"""

from __future__ import annotations

import io
import json
import os
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from docsync_cli.locks import FileLocks
from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.seed import Sandbox, SeededFirm, corpus_dir
from tests.e2e.cli_env import CliEnv

FAILED_DOC = "Leerer Datensatz ohne Datei"
PDF_DOC = "Mandatsvertrag Müller"


class Env(CliEnv):
    """The module's sandbox, its seeded firm and a runner for the real CLI."""

    def clear_journals(self) -> None:
        self.sandbox.espo.clear_journal()
        self.sandbox.xai.clear_journal()

    def writes(self) -> list[Any]:
        return [*self.sandbox.espo.writes(), *self.sandbox.xai.writes()]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Sandbox() as sandbox:
        firm = sandbox.seed_firm(corpus_dir())
        here = Env(sandbox, firm, tmp_path_factory.mktemp("report") / "state")
        first = here.run("sync", "--no-preview")
        assert first.returncode in (0, 1), first.stderr  # 1: the document without a file fails, by design
        yield here


def status_json(env: Env) -> dict[str, Any]:
    done = env.run("status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# ---------------------------------------------------------------------------------------------- status


def test_status_json_counts_match_the_emulator(env: Env) -> None:
    data = status_json(env)
    docs = env.sandbox.espo.documents()
    by_status = Counter(d.get("dateiStatus") or "(leer)" for d in docs)
    by_sync = Counter(d.get("xaiSyncStatus") or "(leer)" for d in docs)
    assert data["espocrm"] == {"reachable": True, "error": None}
    assert data["documents"]["total"] == len(docs)
    for name in ("Neu", "Geändert", "Gesynct", "Fehler", "(leer)"):
        assert data["documents"]["dateiStatus"][name] == by_status.get(name, 0), name
    for name in ("pending", "syncing", "synced", "failed", "(leer)"):
        assert data["documents"]["xaiSyncStatus"][name] == by_sync.get(name, 0), name
    missing = sum(1 for d in docs if d.get("dateiStatus") == "Gesynct" and not d.get("previewId"))
    assert data["previews"]["missing"] == missing


def test_status_lists_the_failed_document_and_the_last_run(env: Env) -> None:
    data = status_json(env)
    failed_id = env.firm.documents[FAILED_DOC]
    listed = {doc["id"]: doc for doc in data["failed"]["documents"]}
    assert data["failed"]["total"] >= 1
    assert listed[failed_id]["name"] == FAILED_DOC
    assert listed[failed_id]["error"] == env.sandbox.espo.document(failed_id)["xaiSyncError"]
    assert "no file" in listed[failed_id]["error"]
    # the permanent failure waits for a change; nothing else is waiting after the sync
    assert data["waiting"]["failed_held_back"] >= 1
    assert data["waiting"]["next_run"] == 0
    sync_runs = [run for run in data["runs"] if run["command"] == "sync"]
    assert sync_runs, data["runs"]
    assert sync_runs[-1]["counts"]["synced"] >= 1
    assert {"started_at", "duration_seconds", "exit_code", "counts"} <= set(sync_runs[-1])
    assert data["lock"] == {"backend": "file", "holder": None, "error": None}


def test_status_text_shows_the_german_status_names(env: Env) -> None:
    done = env.run("status")
    assert done.returncode == 0, done.stderr
    for name in ("Gesynct", "Fehler", "Neu", "Geändert"):
        assert name in done.stdout
    assert FAILED_DOC in done.stdout
    assert "Last runs" in done.stdout


def test_status_and_check_make_no_write_requests(env: Env) -> None:
    env.clear_journals()
    assert env.run("status").returncode == 0
    assert env.run("status", "--json").returncode == 0
    assert env.run("check").returncode == 0
    assert env.writes() == []
    assert env.sandbox.espo.requests(), "status asked EspoCRM nothing?"


def test_status_without_espocrm_still_shows_the_local_history(env: Env) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = env.run("status", "--json", extra_env={"ESPOCRM_URL": f"http://127.0.0.1:{port}"})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["espocrm"]["reachable"] is False
    assert "unreachable" in data["espocrm"]["error"]
    assert data["documents"]["total"] is None
    assert data["runs"], "the local history must still be shown"
    text = env.run("status", extra_env={"ESPOCRM_URL": f"http://127.0.0.1:{port}"})
    assert text.returncode == 0
    assert "EspoCRM could not be reached" in text.stdout


def test_status_names_the_lock_holder_without_taking_the_lock(env: Env) -> None:
    locks = FileLocks(env.state)
    locks.acquire_run()
    try:
        data = status_json(env)
        assert data["lock"]["holder"] is not None
        assert str(os.getpid()) in data["lock"]["holder"]
        check = env.run("check")
        assert check.returncode == 0, check.stdout
        assert "run lock held by" in check.stdout
    finally:
        locks.release_run()
        locks.close()
    assert status_json(env)["lock"]["holder"] is None


# ---------------------------------------------------------------------------------------------- explain


def test_explain_shows_collections_and_nothing_to_do(env: Env) -> None:
    doc_id = env.firm.documents["Schriftsatz Berufung"]  # linked to two accounts
    env.clear_journals()
    done = env.run("explain", "--id", doc_id)
    assert done.returncode == 0, done.stderr
    assert env.writes() == []
    for account in ("Müller GmbH", "Schmidt & Partner"):
        assert env.firm.collections[account] in done.stdout
    assert "link accounts.xaiCollectionId" in done.stdout
    crm = env.sandbox.espo.document(doc_id)
    assert crm["xaiFileId"] in done.stdout
    assert crm["sha"] in done.stdout
    assert "DOCUMENT_STATUS_PROCESSED" in done.stdout
    assert "Next run: nothing to do" in done.stdout


def test_explain_a_failed_document_names_the_error(env: Env) -> None:
    done = env.run("explain", "--id", env.firm.documents[FAILED_DOC])
    assert done.returncode == 0, done.stderr
    assert "no file attached" in done.stdout
    assert "held back" in done.stdout


def test_explain_unknown_document_is_a_usage_error(env: Env) -> None:
    done = env.run("explain", "--id", "doesnotexist0000")
    assert done.returncode == 2
    assert "no Document with id" in done.stderr


# ---------------------------------------------------------------------------------------------- preview


def test_preview_to_a_file_writes_a_webp_and_changes_nothing(env: Env, tmp_path: Path) -> None:
    out = tmp_path / "f.webp"
    env.clear_journals()
    done = env.run("preview", "--id", env.firm.documents[PDF_DOC], "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert env.writes() == []
    with Image.open(io.BytesIO(out.read_bytes())) as image:
        assert image.format == "WEBP"
        assert 16 <= image.width <= 600 and 16 <= image.height <= 800


def test_preview_upload_sets_the_documents_preview(env: Env) -> None:
    doc_id = env.firm.documents["Foto Wasserschaden"]
    done = env.run("preview", "--id", doc_id)
    assert done.returncode == 0, done.stderr
    preview_id = env.sandbox.espo.document(doc_id)["previewId"]
    assert preview_id and preview_id in done.stdout
    stored = env.sandbox.espo.attachment_bytes(preview_id)
    assert stored is not None
    with Image.open(io.BytesIO(stored)) as image:
        assert image.format == "WEBP"


def test_preview_of_a_document_without_file_fails_clearly(env: Env) -> None:
    done = env.run("preview", "--id", env.firm.documents[FAILED_DOC])
    assert done.returncode == 1
    assert "no file attached" in done.stderr


# ---------------------------------------------------------------------------------------------- check


def test_check_passes_against_the_healthy_sandbox(env: Env) -> None:
    done = env.run("check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✗" not in done.stdout
    assert "All checks passed" in done.stdout


@pytest.mark.parametrize(("extra", "failing", "fix"), [
    ({"XAI_API_KEY": "wrong"}, "xAI Files API key", "check XAI_API_KEY"),
    ({"XAI_MANAGEMENT_KEY": "wrong"}, "xAI Management API key", "check XAI_MANAGEMENT_KEY"),
    ({"DOCSYNC_ESPOCRM__FIELDS__MD5": "doesNotExist"}, "Document fields", "docsync espocrm-fields"),
    ({"DOCSYNC_COLLECTIONS__STATIC": "collection_missing"}, "collections.static", "collection_missing"),
    ({"DOCSYNC_COLLECTIONS__LINKS": "accounts:noSuchField"}, "link accounts:noSuchField", "collections.links"),
])
def test_check_fails_and_names_the_fix(env: Env, extra: dict[str, str], failing: str, fix: str) -> None:
    env.clear_journals()
    done = env.run("check", extra_env=extra)
    assert done.returncode != 0
    lines = done.stdout.splitlines()
    bad = [i for i, line in enumerate(lines) if line.startswith(f"✗ {failing}")]
    assert bad, done.stdout
    following = "\n".join(lines[bad[0]:bad[0] + 5])
    assert fix in following
    assert "fix:" in following
    assert env.writes() == []


def test_check_wrong_espocrm_key_says_which_key(env: Env) -> None:
    done = env.run("check", extra_env={"ESPOCRM_API_KEY": "wrong-key"})
    assert done.returncode != 0
    assert "✗ EspoCRM" in done.stdout
    assert "check ESPOCRM_API_KEY" in done.stdout


def test_check_reports_every_config_problem(env: Env) -> None:
    done = env.run("check", extra_env={"DOCSYNC_SYNC__CONCURRENCY": "99", "XAI_API_URL": "not a url"})
    assert done.returncode != 0
    assert "✗ configuration: 2 problem(s)" in done.stdout
    assert "sync.concurrency" in done.stdout
    assert "xai.api_url" in done.stdout


def test_check_reports_a_config_file_readable_by_others_without_printing_its_secret(env: Env, tmp_path: Path
                                                                                     ) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[xai]\napi_key = "{env.sandbox.xai_key}"\n')
    config.chmod(0o644)
    environment = env.sandbox.environment(env.state)
    done = env.run("--config", str(config), "check", extra_env={"XAI_API_KEY": ""})
    assert done.returncode != 0
    assert f"chmod 0640 {config}" in done.stdout and "chown root:" in done.stdout
    assert environment["XAI_API_KEY"] not in done.stdout  # also asserted by Env.run for every command


def test_check_with_a_renamed_crm_field(tmp_path: Path) -> None:
    """An EspoCRM where the admin's field is called cMd5 (EspoCRM ≥ 8.2): check finds it by itself and says
    so; a configured name that does not exist is a failure naming the field."""
    with Sandbox() as sandbox:
        sandbox.espo.stop()
        sandbox.espo = EspoEmulator(api_key=sandbox.espo_key, field_names={"md5": "cMd5"}).start()  # stopped on exit
        renamed = Env(sandbox, SeededFirm(), tmp_path / "state")
        done = renamed.run("check")
        assert done.returncode == 0, done.stdout
        assert 'md5 is cMd5 in this CRM' in done.stdout and 'espocrm.fields.md5 = "cMd5"' in done.stdout
        wrong = renamed.run("check", extra_env={"DOCSYNC_ESPOCRM__FIELDS__MD5": "hashMd5"})
        assert wrong.returncode != 0 and "hashMd5 (docsync's md5)" in wrong.stdout and "is missing" in wrong.stdout
        fixed = renamed.run("check", extra_env={"DOCSYNC_ESPOCRM__FIELDS__MD5": "cMd5"})
        assert fixed.returncode == 0 and "md5 is cMd5 in this CRM" not in fixed.stdout, fixed.stdout


def test_an_account_field_made_in_the_entity_manager_stops_sync_and_check_names_it(tmp_path: Path) -> None:
    """The Entity Manager names the Account field cXaiCollectionId (found by tests/real): EspoCRM answers a
    `select` of the missing xaiCollectionId without it (HTTP 200), which must not read as "no collection"."""
    with Sandbox() as sandbox:
        sandbox.espo.stop()
        sandbox.espo = EspoEmulator(api_key=sandbox.espo_key,  # stopped on exit
                                    field_names={"xaiCollectionId": "cXaiCollectionId"}).start()
        env = Env(sandbox, SeededFirm(), tmp_path / "state")
        collection = sandbox.xai.create_collection("Mandant")
        doc = sandbox.espo.add_document("D", b"Notiz zur Akte\n", "d.txt",
                                        accounts=[sandbox.espo.add_account("Mandant", collection)])
        check = env.run("check")
        assert check.returncode == 2, check.stdout
        assert "but has 'cXaiCollectionId'" in check.stdout
        assert "DOCSYNC_COLLECTIONS__LINKS=accounts:cXaiCollectionId" in check.stdout
        sync = env.run("sync", "--no-preview")
        assert sync.returncode == 2, sync.stdout + sync.stderr
        assert "no attribute 'xaiCollectionId'" in sync.stderr and "cXaiCollectionId" in sync.stderr
        assert sandbox.espo.document(doc)["dateiStatus"] == "Neu" and sandbox.xai.files() == {}
        fixed = {"DOCSYNC_COLLECTIONS__LINKS": "accounts:cXaiCollectionId"}
        assert env.run("check", extra_env=fixed).returncode == 0
        assert env.run("sync", "--no-preview", extra_env=fixed).returncode == 0
        assert sandbox.espo.document(doc)["dateiStatus"] == "Gesynct"
        members = sandbox.xai.collection_documents(collection).values()
        assert doc in {d["fields"].get("crm_document_id") for d in members}


def test_check_passes_on_the_design_documents_fields_and_offers_pending_as_a_hint(tmp_path: Path) -> None:
    with Sandbox() as sandbox:
        env = Env(sandbox, SeededFirm(), tmp_path / "state")
        done = env.run("check")
        assert done.returncode == 0, done.stdout
        assert "optional: add the option(s) 'pending'" in done.stdout
        assert "200 documents per request" in done.stdout


def test_check_and_sync_refuse_a_crm_without_an_option_docsync_writes(tmp_path: Path) -> None:
    from docsync_sandbox.crm_profiles import CrmProfile
    from tests.espocrm_fields import generated_fields

    fields = generated_fields()
    fields["xaiSyncStatus"]["options"] = ["", "synced", "failed"]
    del fields["xaiSyncedHash"]
    with Sandbox(crm=CrmProfile("broken", fields=fields)) as sandbox:
        env = Env(sandbox, SeededFirm(), tmp_path / "state")
        sandbox.espo.add_document("D", b"%PDF-1.4 x", "d.pdf")
        check = env.run("check")
        assert check.returncode != 0
        assert "'syncing' that docsync writes" in check.stdout and "xaiSyncedHash" in check.stdout
        sandbox.espo.clear_journal()
        sync = env.run("sync", "--no-preview")
        assert sync.returncode == 2, sync.stdout + sync.stderr
        assert "'syncing' that docsync writes" in sync.stderr and "xaiSyncedHash" in sync.stderr
        assert sandbox.espo.writes() == [] and sandbox.xai.writes() == []


def test_check_exits_3_like_sync_when_espocrm_is_unreachable(env: Env) -> None:
    """An unreachable service is exit 3 for `check` as it is for `sync` (2 means "fix the configuration")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    extra = {"ESPOCRM_URL": closed, "DOCSYNC_SYNC__MAX_ATTEMPTS": "1"}
    check = env.run("check", extra_env=extra)
    sync = env.run("sync", "--no-preview", extra_env=extra)
    assert sync.returncode == 3, sync.stderr
    assert check.returncode == 3, check.stdout
    assert "✗ EspoCRM" in check.stdout and "ESPOCRM_URL" in check.stdout


def test_check_tests_the_management_key_permissions_it_can_without_writing(tmp_path: Path) -> None:
    # xAI contract §15: a key without a permission gets 403 for that call only; check reads, never writes
    with Sandbox() as sandbox:
        collection = sandbox.xai.create_collection("Kanzlei")
        env = Env(sandbox, SeededFirm(), tmp_path / "state")
        static = {"DOCSYNC_COLLECTIONS__STATIC": collection}
        allowed = env.run("check", extra_env=static)
        assert allowed.returncode == 0, allowed.stdout
        assert "list and batch-get documents allowed" in allowed.stdout
        sandbox.xai.denied_permissions.add("BatchGetDocuments")
        denied = env.run("check", extra_env=static)
        assert denied.returncode != 0
        assert "batch-get documents" in denied.stdout and "BatchGetDocuments" in denied.stdout
        assert env.writes() == []
