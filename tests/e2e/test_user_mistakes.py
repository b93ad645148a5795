"""End to end: mistakes a new admin makes, each answered with one clear message, its advice and the documented
exit code (README "Exit codes"), never a traceback or a key. Found by using docsync from the README as a new
user would (QA pass).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_sandbox.seed import Sandbox, corpus_dir
from tests.e2e.cli_env import CliEnv


class Env(CliEnv):
    forbid_traceback = True


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Sandbox() as sandbox:
        firm = sandbox.seed_firm(corpus_dir())
        yield Env(sandbox, firm, tmp_path_factory.mktemp("mistakes") / "state")


@pytest.mark.parametrize("command", [["sync"], ["sync", "--dry-run"], ["prune", "--dry-run"], ["verify"],
                                     ["search", "Fristen"]])
def test_espocrm_url_of_something_else_is_a_configuration_error_naming_the_setting(env: Env,
                                                                                    command: list[str]) -> None:
    """ESPOCRM_URL pointing at a server without EspoCRM's API (here: the xAI emulator, which answers 404 "No
    route") is a configuration mistake: exit 2 and the setting to fix, as `docsync check` says, not exit 1
    ("some documents failed") with a bare HTTP 404."""
    done = env.run(*command, extra_env={"ESPOCRM_URL": env.sandbox.environment(env.state)["XAI_API_URL"]})
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "HTTP 404" in done.stderr
    assert "fix: check ESPOCRM_URL" in done.stderr
    assert env.sandbox.espo.writes() == [] and env.sandbox.xai.writes() == []



def test_preview_to_a_file_it_cannot_write_is_a_local_problem(env: Env, tmp_path: Path) -> None:
    """`preview --out` into a directory that does not exist (or is not writable) is exit 4, a local problem,
    not exit 1 ("some documents failed"); EspoCRM is not touched."""
    env.sandbox.espo.clear_journal()
    target = tmp_path / "no-such-dir" / "x.webp"
    done = env.run("preview", "--id", env.firm.documents["Mandatsvertrag Müller"], "--out", str(target))
    assert done.returncode == 4, (done.returncode, done.stderr)
    assert f"cannot write {target}" in done.stderr
    assert env.sandbox.espo.writes() == []


def test_xai_api_url_of_something_else_stops_the_run_without_marking_documents_fehler(env: Env) -> None:
    """XAI_API_URL naming another server (here: the EspoCRM emulator): the upload's 404 is the setup's fault,
    not the document's. It used to mark the document Fehler as a *permanent* failure (held back until someone
    ran --retry-failed); now the run stops with exit 2 and the setting to fix, the document keeps its status."""
    doc_id = env.firm.documents["Gutachten Bauschaden"]
    before = env.sandbox.espo.document(doc_id)["dateiStatus"]
    wrong = env.sandbox.environment(env.state)["ESPOCRM_URL"]
    done = env.run("sync", "--id", doc_id, "--no-preview", extra_env={"XAI_API_URL": wrong})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "fix: check XAI_API_URL" in done.stderr
    after = env.sandbox.espo.document(doc_id)
    assert after["dateiStatus"] == before and after["dateiStatus"] != "Fehler"
    assert env.run("sync", "--id", doc_id, "--no-preview").returncode == 0  # fixed: the next run syncs it
    assert env.sandbox.espo.document(doc_id)["dateiStatus"] == "Gesynct"


def test_sync_metrics_file_in_a_missing_directory_is_a_local_problem_not_a_traceback(env: Env,
                                                                                       tmp_path: Path) -> None:
    """`sync --metrics-file` into a directory that does not exist (node_exporter not installed yet): the run
    itself is done and recorded; the missing file is exit 4 with its path, as for `verify --metrics-file`."""
    target = tmp_path / "no-such-dir" / "docsync.prom"
    done = env.run("sync", "--no-preview", "--metrics-file", str(target))
    assert done.returncode == 4, (done.returncode, done.stderr)
    assert f"cannot write {target}" in done.stderr


def test_status_names_both_ways_to_retry_documents_held_back(env: Env) -> None:
    """A document without a file is a permanent failure, held back until it changes; `status` names both ways an
    admin can retry it now (it used to name only `sync --id`)."""
    env.run("sync", "--no-preview")
    done = env.run("status")
    assert done.returncode == 0, done.stderr
    assert "Fehler held back until they change" in done.stdout
    assert "docsync sync --id ID" in done.stdout and "docsync sync --retry-failed" in done.stdout


def test_xai_management_url_of_something_else_stops_the_run_and_leaves_gesynct_documents_alone(env: Env) -> None:
    """XAI_MANAGEMENT_URL naming another server: every collection 404s. A nightly `sync --full` turned every
    Gesynct document into Fehler ("GET /v1/collections/…: HTTP 404"); now the run stops with exit 2 and the
    setting to fix, and no document changes. (A genuinely deleted collection still fails only its documents.)"""
    env.run("sync", "--no-preview")
    before = {d["id"]: d["dateiStatus"] for d in env.sandbox.espo.documents()}
    assert list(before.values()).count("Gesynct") > 10
    wrong = env.sandbox.environment(env.state)["ESPOCRM_URL"]
    done = env.run("sync", "--full", "--no-preview", extra_env={"XAI_MANAGEMENT_URL": wrong})
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "fix: check XAI_MANAGEMENT_URL" in done.stderr
    assert {d["id"]: d["dateiStatus"] for d in env.sandbox.espo.documents()} == before


def _unused_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("setting", ["ESPOCRM_URL", "XAI_API_URL", "XAI_MANAGEMENT_URL"])
@pytest.mark.parametrize("url", ["refused", "no-such-name"])
def test_an_unreachable_url_at_start_is_one_line_and_exit_3(env: Env, setting: str, url: str) -> None:
    """Issue 22: a wrong or unreachable URL (a refused port, a name the resolver does not know) is not retried
    like a 502 at start: one line naming the setting, exit 3, no retry warnings (it was ~30 s and 15 of them)."""
    env.run("sync", "--no-preview")  # whatever there is to do is done: the next run has no other xAI request
    wrong = f"http://127.0.0.1:{_unused_loopback_port()}" if url == "refused" else "http://docsync-test.invalid"
    done = env.run("sync", "--no-preview", extra_env={setting: wrong})
    assert done.returncode == 3, (done.returncode, done.stderr)
    assert "retry scheduled" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "is unreachable: cannot connect" in lines[0], done.stderr
    assert f"fix: check {setting} and the network" in lines[1]


@pytest.mark.parametrize("setting", ["XAI_API_KEY", "XAI_MANAGEMENT_KEY"])
def test_a_wrong_xai_key_fails_a_run_with_nothing_to_do(env: Env, setting: str) -> None:
    """Issue 22: a run with nothing to do made no xAI request, so a wrong key passed with exit 0 until the first
    new document. Now each key is proven by the cheapest read when the run did not use it (docs/contracts.md
    §15: a wrong key is refused): exit 3 and the setting to fix, and nothing written."""
    env.run("sync", "--no-preview")
    env.sandbox.espo.clear_journal()
    done = env.run("sync", "--no-preview", extra_env={setting: "xai-not-the-right-key"})
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)
    assert "rejected the credentials" in done.stderr and f"fix: check {setting}" in done.stderr
    assert env.sandbox.espo.writes() == []


def test_the_key_proof_is_kept_for_a_while_and_then_asked_again(env: Env) -> None:
    """The proof costs one cheap read per key, at most every 15 minutes: a run right after a proven one asks xAI
    nothing; when the proof is old, each key is asked once."""
    env.run("sync", "--no-preview")
    env.sandbox.xai.clear_journal()
    assert env.run("sync", "--no-preview").returncode == 0
    assert env.sandbox.xai.requests() == []
    proofs = env.state / "keys-proven.json"
    proofs.write_text(json.dumps({mark: 0 for mark in json.loads(proofs.read_text())}))
    assert env.run("sync", "--no-preview").returncode == 0
    assert sorted(f"{e.method} {e.path}" for e in env.sandbox.xai.requests()) == [
        "GET /v1/collections", "GET /v1/files"]


@pytest.mark.parametrize("command", [["sync"], ["status"], ["check"]])
def test_tls_certificates_the_user_cannot_read_are_a_local_problem_not_a_traceback(
        env: Env, tmp_path: Path, command: list[str]) -> None:
    """Found in a fresh Debian 12 chroot: httpx loads the CA bundle when a client is made (certifi's, inside the
    installation; or SSL_CERT_FILE). docsync installed in root's 0700 home and run as the service user could not
    read it and every command died with a PermissionError traceback. A bundle that cannot be read is a local
    problem: sync exits 4 with one line naming it; check shows it as a failed line and goes on."""
    missing = tmp_path / "no-such-ca.pem"
    env.sandbox.espo.clear_journal()
    env.sandbox.xai.clear_journal()
    done = env.run(*command, extra_env={"SSL_CERT_FILE": str(missing)})
    output = done.stdout + done.stderr
    assert f"cannot load the TLS CA certificates {missing}" in output, output
    assert "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in output, output
    if command == ["check"]:
        assert done.returncode == 2 and "✗ services" in done.stdout and "✓ state directory" in done.stdout, output
    elif command == ["sync"]:
        assert done.returncode == 4, output
    assert env.sandbox.espo.writes() == [] and env.sandbox.xai.writes() == []
