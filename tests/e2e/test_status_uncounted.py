"""``docsync status`` when EspoCRM does not count Documents ("Disable record count", contract §11.2: every
``total`` is -1 or -2): it says so and shows no count rather than -1/-2 or sums made of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from docsync_sandbox.seed import Sandbox
from tests.e2e.test_sync_cli import docsync, sandbox, state  # noqa: F401  (fixtures)


def test_status_without_record_counts_says_so_and_guesses_no_number(sandbox: Sandbox, state: Path) -> None:  # noqa: F811
    collection = sandbox.xai.create_collection("Mandant")
    account = sandbox.espo.add_account("Mandant", collection)
    docs = [sandbox.espo.add_document(f"Akte {n}", f"Inhalt {n}.\n".encode(), f"a{n}.txt", accounts=[account])
            for n in range(3)]
    sandbox.espo.count_disabled = True
    assert docsync(sandbox, state, "sync", "--no-preview").returncode == 0
    sandbox.espo.user_update(docs[0], dateiStatus="Fehler")
    text = docsync(sandbox, state, "status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "not counted" in text.stdout and "Disable record count" in text.stdout
    assert re.search(r"(?<![\w-])-[12]\b", text.stdout) is None, text.stdout  # no -1/-2 shown as a count
    assert "Fehler (not counted, showing 1)" in text.stdout and docs[0] in text.stdout
    data = json.loads(docsync(sandbox, state, "status", "--json").stdout)
    assert data["documents"]["total"] is None and set(data["documents"]["dateiStatus"].values()) == {None}
    assert data["failed"]["total"] is None and [d["id"] for d in data["failed"]["documents"]] == [docs[0]]
    assert data["waiting"]["next_run"] is None and data["previews"]["missing"] is None
    assert data["feeds"]["deletions"] == "listing"
    sandbox.espo.count_disabled = False
    counted = json.loads(docsync(sandbox, state, "status", "--json").stdout)
    assert counted["documents"]["total"] == 3 and counted["failed"]["total"] == 1
