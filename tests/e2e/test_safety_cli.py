"""Issue 11 through the real CLI (subprocess) against the emulators: echoed keys appear in no output, field or
state file (case 4); hostile names never stop a run (6); a listing outage exits 3 (7); the smaller hardening of
case 9 (no escape sequences printed, ``--id`` of an unknown document, the private temp dir swept at start)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_sandbox.http import Drop, FaultAction, Respond
from docsync_sandbox.seed import Sandbox
from tests.faults import faults_of

PDF = b"%PDF-1.4\n% docsync safety test\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


def docsync(sandbox: Sandbox, state: Path, *args: str, extra_env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= sandbox.environment(state)
    env["DOCSYNC_SYNC__MAX_ATTEMPTS"] = "2"
    env |= extra_env or {}
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=env, text=True, capture_output=True,
                          timeout=180, check=False)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox() as box:
        yield box


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def account(sandbox: Sandbox, name: str = "Mandant A") -> str:
    return sandbox.espo.add_account(name, sandbox.xai.create_collection(f"Collection {name}"))


def pdf(label: str) -> bytes:
    return PDF + label.encode() + b"\n"


# -- 4. secrets -----------------------------------------------------------------------------------------------


def test_keys_echoed_back_by_the_services_appear_in_no_output_field_or_state_file(sandbox: Sandbox,
                                                                                  state: Path) -> None:
    a = account(sandbox)
    docs = [sandbox.espo.add_document(f"Akte {i}", pdf(f"akte {i}"), f"akte-{i}.pdf", accounts=[a])
            for i in range(3)]
    keys = (sandbox.espo_key, sandbox.xai_key, sandbox.mgmt_key)
    echo = json.dumps({"code": "Client specified an invalid argument",
                       "error": f"upload refused; request had Authorization: Bearer {sandbox.xai_key}, "
                                f"management {sandbox.mgmt_key}"})
    faults_of(sandbox.xai).add(Respond(422, echo), method="POST", path=r"/v1/files", times=1)
    faults_of(sandbox.espo).add(Respond(400, "", {"X-Status-Reason": f"request by {sandbox.espo_key} refused"}),
                            method="GET", path=rf"/api/v1/Document/{docs[1]}/accounts", times=1)
    run = docsync(sandbox, state, "-v", "sync", "--no-preview", "--concurrency", "1")
    outputs = [run, docsync(sandbox, state, "status"), docsync(sandbox, state, "status", "--json"),
               docsync(sandbox, state, "explain", docs[0]), docsync(sandbox, state, "explain", docs[1])]
    records = [sandbox.espo.document(d) for d in docs]
    assert any(r["dateiStatus"] == "Fehler" for r in records), records  # the echoes did reach docsync
    stored = b"".join(p.read_bytes() for p in state.rglob("*") if p.is_file())
    for key in keys:
        for proc in outputs:
            assert key not in proc.stdout + proc.stderr, (proc.args, proc.stdout, proc.stderr)
        assert key not in json.dumps(records, ensure_ascii=False)
        assert key.encode() not in stored, "a key is in a state file"
    failed = [r for r in records if r["dateiStatus"] == "Fehler"]
    assert all(r["xaiSyncError"] for r in failed)  # still a readable reason, just without the key


# -- 6. hostile values ----------------------------------------------------------------------------------------


def test_nul_control_characters_and_absurd_lengths_never_stop_a_run(sandbox: Sandbox, state: Path) -> None:
    a = account(sandbox)
    hostile = [
        sandbox.espo.add_document("NUL im Namen", pdf("nul"), "akte.pd\x00f", accounts=[a]),
        sandbox.espo.add_document("Steuerzeichen \x1b[31m\u202eetka", pdf("ctl"), "a\r\nb\u202e.pdf", accounts=[a]),
        sandbox.espo.add_document("x" * 100_000, pdf("long"), "y" * 5000 + ".pdf", accounts=[a]),
    ]
    normal = [sandbox.espo.add_document(f"Akte {i}", pdf(f"ok {i}"), f"ok-{i}.pdf", accounts=[a]) for i in range(3)]
    run = docsync(sandbox, state, "sync", "--no-preview", "--concurrency", "1")
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode in (0, 1), run.stderr
    for doc_id in normal:
        assert sandbox.espo.document(doc_id)["dateiStatus"] == "Gesynct"
    for doc_id in hostile:
        record = sandbox.espo.document(doc_id)
        assert record["dateiStatus"] == "Gesynct" or (record["dateiStatus"] == "Fehler" and record["xaiSyncError"])
        if record["xaiFileId"]:
            name = sandbox.xai.files()[record["xaiFileId"]]["filename"]
            assert name.isprintable() and len(name) <= 200, repr(name)
    status = docsync(sandbox, state, "status", "--json")
    assert json.loads(status.stdout)["runs"], "the run was not recorded"


# -- 7. a listing outage ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Respond(503, "<html><body>Service Unavailable</body></html>",
                                           {"Content-Type": "text/html"}),
                                   Respond(502, "Bad Gateway"), Drop()], ids=["503-html", "502", "reset"])
def test_an_outage_during_the_listing_exits_3(sandbox: Sandbox, state: Path, fault: FaultAction) -> None:
    a = account(sandbox)
    sandbox.espo.add_document("Akte", pdf("akte"), "akte.pdf", accounts=[a])
    faults_of(sandbox.espo).add(fault, method="GET", path=r"/api/v1/Document")
    run = docsync(sandbox, state, "sync", "--no-preview")
    assert run.returncode == 3, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert "espocrm" in run.stderr.lower(), run.stderr


# -- 9. smaller hardening -----------------------------------------------------------------------------------------


def test_status_prints_no_terminal_escape_sequences_from_crm_names(sandbox: Sandbox, state: Path) -> None:
    a = account(sandbox)
    sandbox.espo.add_document("\x1b]0;pwned\x07\x1b[2J\x1b[31mRot\u202eakte", None, accounts=[a])  # no file
    docsync(sandbox, state, "sync", "--no-preview")
    status = docsync(sandbox, state, "status")
    assert status.returncode == 0, status.stderr
    assert "Rot" in status.stdout
    for bad in ("\x1b", "\x07", "\u202e"):
        assert bad not in status.stdout + status.stderr


def test_sync_id_of_an_unknown_document_exits_1_naming_it(sandbox: Sandbox, state: Path) -> None:
    a = account(sandbox)
    known = sandbox.espo.add_document("Akte", pdf("akte"), "akte.pdf", accounts=[a])
    run = docsync(sandbox, state, "sync", "--no-preview", "--id", "6b0f00000000nope1", "--id", known)
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "6b0f00000000nope1" in run.stdout + run.stderr
    assert sandbox.espo.document(known)["dateiStatus"] == "Gesynct"


def test_a_killed_runs_downloads_are_swept_and_nothing_lands_in_the_shared_tmpdir(sandbox: Sandbox, state: Path,
                                                                               tmp_path: Path) -> None:
    a = account(sandbox)
    sandbox.espo.add_document("Akte", pdf("akte"), "akte.pdf", accounts=[a])
    leftover = state / "tmp" / "run-999999999-dead" / "docsync-client-document.pdf"  # a SIGKILLed run's
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"client secrets")
    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    run = docsync(sandbox, state, "sync", "--no-preview", extra_env={"TMPDIR": str(shared)})
    assert run.returncode == 0, run.stderr
    assert not leftover.exists()
    assert list(shared.iterdir()) == []
    assert [p for p in (state / "tmp").rglob("*")] == []  # this run cleaned up after itself too


def test_status_and_check_show_the_installation_id_that_owns_the_uploads(sandbox: Sandbox, state: Path) -> None:
    a = account(sandbox)
    doc = sandbox.espo.add_document("Akte", pdf("akte"), "akte.pdf", accounts=[a])
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    ident = (state / "installation-id").read_text().strip()
    file_id = sandbox.espo.document(doc)["xaiFileId"]
    (member,) = [m for c in sandbox.xai.collection_ids() for f, m in sandbox.xai.collection_documents(c).items()
                 if f == file_id]
    assert member["fields"]["installation_id"] == ident
    assert json.loads(docsync(sandbox, state, "status", "--json").stdout)["installation_id"] == ident
    assert ident in docsync(sandbox, state, "status").stdout
    assert ident in docsync(sandbox, state, "check").stdout
    configured = docsync(sandbox, state, "status", "--json", extra_env={"DOCSYNC_SYNC__INSTALLATION_ID": "kanzlei-1"})
    assert json.loads(configured.stdout)["installation_id"] == "kanzlei-1"


# -- issue 22, item 6: no process docsync starts sees a key ------------------------------------------------


def _process_tree(root: int) -> set[int]:
    """``root``'s descendants now (from every process's parent in ``/proc/*/stat``)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for kid in parents.get(todo.pop(), []):
            if kid not in found:
                found.add(kid)
                todo.append(kid)
    return found


def test_no_process_docsync_starts_sees_a_key(sandbox: Sandbox, state: Path, tmp_path: Path) -> None:
    """Issue 22: the warm LibreOffice, its UNO bridge (``python3 … uno_bridge.py``), oosplash, soffice.bin and the
    render worker carried ESPOCRM_API_KEY and both xAI keys in their environment. During a real run with office
    previews, every descendant of docsync is read from ``/proc/PID/environ``: no key, no key's name, and not the
    contents of a ``*_FILE`` key file."""
    from docsync_cli.preview.office import find_soffice, find_uno_python
    from docsync_sandbox.seed import corpus_dir

    if find_soffice() is None or find_uno_python() is None:
        pytest.skip("LibreOffice with python3-uno is needed (scripts/setup.sh installs it)")
    sandbox.seed_firm(corpus_dir())
    key_file = tmp_path / "management.key"
    key_file.write_text(sandbox.mgmt_key + "\n")
    key_file.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= sandbox.environment(state)
    del env["XAI_MANAGEMENT_KEY"]
    env["XAI_MANAGEMENT_KEY_FILE"] = str(key_file)
    proc = subprocess.Popen([sys.executable, "-m", "docsync_cli", "sync"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen: dict[tuple[int, bytes], bytes] = {}
    own = b""
    try:
        while proc.poll() is None:
            try:
                own = own or Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            except OSError:
                continue
            for pid in _process_tree(proc.pid):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    environ = Path(f"/proc/{pid}/environ").read_bytes()
                except OSError:
                    continue  # gone meanwhile
                if cmdline == own:
                    # docsync itself between a fork and its exec (seen in a fresh chroot): a copy of docsync's own
                    # memory, keys and all, for microseconds; the program it becomes gets the allow-listed env
                    continue
                seen[(pid, cmdline)] = environ
    finally:
        _, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 1), err
    started = b"\n".join(cmdline for _, cmdline in seen)
    assert b"soffice" in started and b"uno_bridge" in started and b"worker" in started, started
    secrets = [sandbox.espo_key, sandbox.xai_key, sandbox.mgmt_key] + ([sandbox.espo_secret]
                                                                       if sandbox.espo_secret else [])
    names = ["ESPOCRM_API_KEY", "ESPOCRM_SECRET_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY", "_FILE="]
    for (_pid, cmdline), environ in seen.items():
        shown = cmdline.replace(b"\0", b" ")[:120]
        assert not [s for s in secrets if s.encode() in environ], f"a key in the environment of {shown!r}"
        assert not [n for n in names if n.encode() in environ], f"a key's name in the environment of {shown!r}"
