"""``docsync adopt``: a firm moving from an earlier sync system. Its files sit in the clients' collections and the
CRM names them (``xaiFileId``, ``xaiSyncedHash``), with none of docsync's ownership fields.

Until adopted, ``sync`` leaves them alone and adds no second copy of the same content, and ``status`` counts them.
``adopt`` takes over only what is provably the document's (exactly one document names it, its bytes hash to
``xaiSyncedHash``, no other installation owns it, it sits only in managed collections) and lists every refusal.
Afterwards a plain ``sync`` writes nothing for documents that were in step, and a changed document's old file is
retired like any of docsync's own. Checked from the emulators' state and journals.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from docsync_sandbox.seed import Sandbox

from .helpers import clear_journals, cli_env, describe, pdf_bytes, run_engine, run_sync, sandbox_running
from .invariants import required_collections

UPLOAD = r"/v1/files"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Migrated:
    """The firm as the earlier sync system left it."""

    collections: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)
    docs: dict[str, str] = field(default_factory=dict)  # role -> document id
    files: dict[str, str] = field(default_factory=dict)  # role -> the earlier system's file id


def earlier_sync(sandbox: Sandbox, doc_id: str, content: bytes, collections: list[str], *,
                 stored: bytes | None = None, file_id: str | None = None) -> str:
    """What the earlier system did: upload ``stored`` (default: the content), put it into ``collections`` without
    docsync's fields, and fill the CRM's fields as docsync would."""
    if file_id is None:
        file_id = sandbox.xai.add_file(f"legacy-{doc_id}.pdf", stored if stored is not None else content)
        for collection_id in collections:
            sandbox.xai.add_member(collection_id, file_id)
    sandbox.espo.user_update(doc_id, dateiStatus="Gesynct", xaiSyncStatus="synced", xaiFileId=file_id,
                             xaiSyncedHash=sha256(content), sha=sha256(content),
                             md5=hashlib.md5(content).hexdigest(), xaiCollections=sorted(collections))
    return file_id


def migrate(sandbox: Sandbox) -> Migrated:
    firm = Migrated()
    for name in ("A", "B"):
        firm.collections[name] = sandbox.xai.create_collection(f"Mandant {name}")
        firm.accounts[name] = sandbox.espo.add_account(f"Mandant {name}", firm.collections[name])
    handbook = sandbox.xai.create_collection("Handbuch (von Hand)")
    roles = {"in_step": ("A",), "two_clients": ("A", "B"), "changed": ("B",), "mismatch": ("A",),
             "twin_1": ("A",), "twin_2": ("A",), "outside": ("A",)}
    for role, accounts in roles.items():
        content = pdf_bytes(role if not role.startswith("twin") else "twin")
        doc_id = sandbox.espo.add_document(f"Dokument {role}", content, f"{role}.pdf", datei_status="Neu",
                                           accounts=[firm.accounts[a] for a in accounts])
        firm.docs[role] = doc_id
        collections = [firm.collections[a] for a in accounts]
        if role == "mismatch":  # the file at xAI is not the bytes the CRM says it holds
            firm.files[role] = earlier_sync(sandbox, doc_id, content, collections, stored=pdf_bytes("other"))
        elif role == "twin_2":  # two records name one file (a copy of a record)
            firm.files[role] = earlier_sync(sandbox, doc_id, content, collections, file_id=firm.files["twin_1"])
        else:
            firm.files[role] = earlier_sync(sandbox, doc_id, content, collections)
        if role == "outside":  # also in a collection docsync does not manage
            sandbox.xai.add_member(handbook, firm.files[role])
    return firm


@pytest.fixture
def firm(tmp_path: Path) -> Iterator[tuple[Sandbox, Migrated, Path]]:
    with sandbox_running() as sandbox:
        yield sandbox, migrate(sandbox), tmp_path / "state"


def _cli(sandbox: Sandbox, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=cli_env(sandbox, state_dir),
                          text=True, capture_output=True, timeout=120, check=False)


def test_sync_leaves_an_earlier_systems_files_alone_until_adopt_takes_over_what_is_provably_theirs(
        firm: tuple[Sandbox, Migrated, Path]) -> None:
    sandbox, migrated, state_dir = firm
    files_before = set(sandbox.xai.files())
    clear_journals(sandbox)

    # Until adopted: no second copy of the same content, the files untouched, and status counts them.
    for _ in range(2):
        waiting = run_sync(sandbox, state_dir)
        assert waiting.returncode == 0, describe(waiting)
    assert sandbox.xai.requests("POST", UPLOAD) == [], "a second copy of the same content was uploaded"
    assert sandbox.xai.writes() == [] and set(sandbox.xai.files()) == files_before
    status = _cli(sandbox, state_dir, "status", "--json")
    assert status.returncode == 0, describe(status)
    assert json.loads(status.stdout)["adopt_waiting"] == len(migrated.docs)
    assert "wait for `docsync adopt`" in _cli(sandbox, state_dir, "status").stdout

    # --dry-run checks everything and writes nothing.
    clear_journals(sandbox)
    dry = _cli(sandbox, state_dir, "adopt", "--dry-run")
    assert dry.returncode == 1, describe(dry)
    assert sandbox.xai.writes() == [] and sandbox.espo.writes() == []
    assert "would adopt" in dry.stdout

    adopted = _cli(sandbox, state_dir, "adopt")
    assert adopted.returncode == 1, describe(adopted)  # refusals listed: exit 1
    out = adopted.stdout
    for role in ("in_step", "two_clients", "changed"):
        assert f"adopted  {migrated.files[role]}  for {migrated.docs[role]}" in out, out
    assert f"refused  {migrated.files['mismatch']}" in out and "do not hash" in out, out
    assert f"refused  {migrated.files['twin_1']}" in out and "named by 2 CRM documents" in out, out
    assert f"refused  {migrated.files['outside']}" in out and "does not manage" in out, out
    assert "3 adopted, 3 refused" in out, out
    for role in ("in_step", "two_clients", "changed"):
        doc = sandbox.espo.document(migrated.docs[role])
        for collection_id in required_collections(sandbox, doc):
            fields = sandbox.xai.document(collection_id, migrated.files[role])["fields"]
            assert fields["crm_document_id"] == migrated.docs[role] and fields["installation_id"], fields

    # After adopting, a plain sync writes nothing for documents that were in step (refused ones still wait).
    clear_journals(sandbox)
    after = run_sync(sandbox, state_dir, "--full")
    assert after.returncode == 0, describe(after)
    assert sandbox.xai.writes() == [] and sandbox.espo.writes() == [], "an adopted, in-step document was written"
    assert set(sandbox.xai.files()) == files_before

    # A changed document's adopted file is retired like any of docsync's own, and no other file is touched.
    changed = migrated.docs["changed"]
    sandbox.espo.replace_file(changed, pdf_bytes("changed, second version"), "changed-v2.pdf")
    sandbox.espo.user_update(changed, dateiStatus="Geändert")
    again = run_sync(sandbox, state_dir)
    assert again.returncode == 0, describe(again)
    files = set(sandbox.xai.files())
    assert migrated.files["changed"] not in files, "the adopted file of a changed document was not retired"
    assert files_before - {migrated.files["changed"]} <= files, "a file adopt refused was touched"
    now = sandbox.espo.document(changed)
    assert now["dateiStatus"] == "Gesynct" and now["xaiFileId"] in files
    assert len(sandbox.xai.requests("POST", UPLOAD)) == 1


def test_adopt_refuses_a_file_another_installation_owns(tmp_path: Path) -> None:
    with sandbox_running() as sandbox:
        collection = sandbox.xai.create_collection("Mandant A")
        account = sandbox.espo.add_account("Mandant A", collection)
        content = pdf_bytes("owned elsewhere")
        doc_id = sandbox.espo.add_document("Dokument", content, "d.pdf", accounts=[account])
        file_id = sandbox.xai.add_file("d.pdf", content)
        sandbox.xai.add_member(collection, file_id, {"crm_document_id": doc_id, "content_sha256": sha256(content),
                                                     "managed_by": "docsync", "installation_id": "another-one"})
        earlier_sync(sandbox, doc_id, content, [collection], file_id=file_id)
        clear_journals(sandbox)
        proc = _cli(sandbox, tmp_path / "state", "adopt")
        assert proc.returncode == 1, describe(proc)
        assert f"refused  {file_id}" in proc.stdout and "another docsync installation (another-one)" in proc.stdout
        assert sandbox.xai.writes() == []
        assert run_engine(sandbox, tmp_path / "state", full=False).exit_code == 2  # and sync says why
