"""``docsync demo``: emulators up, a firm seeded, a real ``docsync sync`` run against them, results shown.

The sync runs as a separate process configured through environment variables only — the same code path and
configuration mechanism a user's timer uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .seed import Sandbox, corpus_dir


def _docsync(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=env, text=True, capture_output=True,
                          timeout=900, check=False)


def run_demo(*, keep_running: bool = False) -> int:
    console = Console(highlight=False)
    with Sandbox(processing_delay=0.3) as sandbox, tempfile.TemporaryDirectory(prefix="docsync-demo-") as tmp:
        firm = sandbox.seed_firm(corpus_dir())
        console.print(f"[bold]Sandbox[/]: EspoCRM emulator at {sandbox.espo.url}, xAI at {sandbox.xai.api_url} "
                      f"and {sandbox.xai.management_url}")
        console.print(f"Seeded {len(firm.accounts)} client accounts (one collection each) and "
                      f"{len(firm.documents)} documents (PDF, DOCX, ODT, images, text, a truncated PDF, one xAI "
                      "cannot parse, an encrypted PDF, one without a file).\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
        env |= sandbox.environment(Path(tmp) / "state")
        env["DOCSYNC_CONFIG"] = str(Path(tmp) / "config.toml")
        Path(env["DOCSYNC_CONFIG"]).write_text("# demo: everything comes from the environment\n")
        os.chmod(env["DOCSYNC_CONFIG"], 0o600)

        console.rule("docsync sync")
        started = time.monotonic()
        first = _docsync(["sync"], env)
        console.print(first.stdout.rstrip())
        _tail(console, first.stderr)
        console.print(f"exit code {first.returncode} in {time.monotonic() - started:.1f} s "
                      "(1 = some documents failed, as seeded)\n")

        console.rule("docsync sync (again: nothing changed)")
        sandbox.espo.clear_journal()
        sandbox.xai.clear_journal()
        second = _docsync(["sync"], env)
        console.print(second.stdout.rstrip())
        console.print(f"exit code {second.returncode}; write requests to the services: {sandbox.writes()}\n")

        console.rule("docsync status")
        report = _docsync(["status"], env)
        console.print(report.stdout.rstrip() or report.stderr.rstrip())

        console.rule("What landed in each collection (read from the xAI emulator)")
        names = {doc_id: name for name, doc_id in firm.documents.items()}
        for account, collection_id in firm.collections.items():
            table = Table(title=f"{account} — {collection_id}", title_justify="left")
            table.add_column("document")
            table.add_column("xAI file")
            table.add_column("status")
            for file_id, doc in sorted(sandbox.xai.collection_documents(collection_id).items(),
                                       key=lambda item: names.get(item[1]["fields"].get("crm_document_id", ""), "")):
                crm_id = doc["fields"].get("crm_document_id", "")
                table.add_row(names.get(crm_id, crm_id), file_id, doc["status"].removeprefix("DOCUMENT_STATUS_"))
            console.print(table)
        _search_step(console, env)
        if keep_running:
            console.print("\nEmulators keep running; point docsync at them with:")
            for key, value in sandbox.environment(Path(tmp) / "state").items():
                console.print(f"export {key}={value}", markup=False)
            console.print("Ctrl-C stops them.")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0 if first.returncode in (0, 1) and second.returncode in (0, 1) else first.returncode


SEARCH_PHRASE = "Berufungsbegründung Stellungnahme Gutachten"  # words from the seeded "Aktennotiz Fristen"


def _search_step(console: Console, env: dict[str, str]) -> None:
    """Is it findable? Ask xAI's search for a phrase from one of the synced documents."""
    console.rule("docsync search (a phrase from the document \"Aktennotiz Fristen\")")
    found = _docsync(["search", SEARCH_PHRASE, "--limit", "3"], env)
    console.print(f"$ docsync search {SEARCH_PHRASE!r} --limit 3", markup=False)
    console.print(found.stdout.rstrip() or found.stderr.rstrip(), markup=False)


def _tail(console: Console, text: str, lines: int = 8) -> None:
    shown = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line][-lines:]
    for line in shown:
        console.print(f"  {line}", markup=False)
