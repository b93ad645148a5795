"""What a narrower API-user role means for a run, through the CLI over the emulators (EspoCRM contract §11.2,
§11.3; the same two cases run against the real EspoCRM in ``tests/real/test_access.py``).

* A role that reads only some linked records (Account read "own"): EspoCRM hides the others' accounts from
  ``Document/{id}/accounts`` with HTTP 200, so every document linked to them would look unlinked and leave its
  collections. ``sync`` refuses to start (exit 2), as ``check`` does, and nothing moves on xAI.
* ``sync --id`` of a document the role may not read: EspoCRM answers 403 ``No 'read' access.``; the run names
  the document and the reason (exit 1), it is not a listing refusal of the whole setup (exit 2).
"""

from __future__ import annotations

from pathlib import Path

from docsync_sandbox.seed import Sandbox
from tests.e2e.test_sync_cli import docsync, sandbox, state  # noqa: F401  (fixtures)


def members(box: Sandbox, collection: str) -> dict[str, str]:
    return {doc["fields"]["crm_document_id"]: file_id
            for file_id, doc in box.xai.collection_documents(collection).items()
            if "crm_document_id" in doc["fields"]}


def test_a_role_that_reads_only_its_own_accounts_stops_the_run_before_anything_moves(
        sandbox: Sandbox, state: Path) -> None:  # noqa: F811
    collection = sandbox.xai.create_collection("Mandant")
    account = sandbox.espo.add_account("Mandant", collection)  # assigned to nobody: not the API user's own
    doc = sandbox.espo.add_document("Akte", b"Inhalt.\n", "akte.txt", accounts=[account])
    first = docsync(sandbox, state, "sync", "--no-preview")
    assert first.returncode == 0, first.stdout + first.stderr
    before = members(sandbox, collection)
    assert set(before) == {doc}
    sandbox.espo.account_read = "own"  # the role is narrowed: the account and its link vanish from the API user
    for args in (("sync", "--no-preview"), ("sync", "--no-preview", "--full"), ("sync", "--dry-run")):
        done = docsync(sandbox, state, *args)
        assert done.returncode == 2, (args, done.stdout + done.stderr)
        assert "Account read 'own'" in done.stdout + done.stderr, done.stdout + done.stderr
        assert members(sandbox, collection) == before
    assert sandbox.espo.document(doc)["dateiStatus"] == "Gesynct"
    sandbox.espo.account_read = "all"
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    assert members(sandbox, collection) == before


def test_sync_id_of_a_document_the_role_may_not_read_names_it_and_the_reason(
        sandbox: Sandbox, state: Path) -> None:  # noqa: F811
    shown = sandbox.espo.add_document("Sichtbar", b"Sichtbar.\n", "sichtbar.txt")
    hidden = sandbox.espo.add_document("Verborgen", b"Verborgen.\n", "verborgen.txt")
    sandbox.espo.hide_document(hidden)
    done = docsync(sandbox, state, "sync", "--no-preview", "--id", hidden, "--id", shown)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "may not read" in output and hidden in output and "page cap" not in output
    assert sandbox.espo.document(shown)["dateiStatus"] == "Gesynct"
    assert sandbox.espo.records["Document"][hidden]["dateiStatus"] == "Neu"
