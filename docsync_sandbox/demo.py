"""``docsync demo``: emulators up, a firm seeded, a real ``docsync sync`` run against them, results shown.

The sync runs as a separate process configured through environment variables only — the same code path and
configuration mechanism a user's timer uses. What it shows goes to a :class:`Presenter` (the CLI layer's
``ui.DemoConsole``), so this package prints through no console library of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from docsync_sandbox.seed import Sandbox, SeededFirm, corpus_dir


class Presenter(Protocol):
    """Where the demo shows its steps: text (rich markup allowed unless ``markup`` is false), a rule with a
    title between the steps, and a table."""

    def print(self, text: str, *, markup: bool = True) -> None: ...

    def rule(self, title: str) -> None: ...

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None: ...


def _docsync(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=env, text=True, capture_output=True,
                          timeout=900, check=False)


def run_demo(console: Presenter, *, keep_running: bool = False, contact_sheet: Path | None = None) -> int:
    sheet_path = contact_sheet or Path.cwd() / "docsync-demo-previews.png"
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

        console.rule("The previews")
        sheet = _contact_sheet(sandbox, firm, env, sheet_path)
        console.print(f"Contact sheet of every preview (names under the pictures, failures with their reason): "
                      f"{sheet}", markup=False)
        console.print("To look at one preview yourself: `docsync demo --keep-running`, paste the environment it "
                      "prints, then `docsync preview --id <document id> --out x.webp`.\n", markup=False)

        console.rule("What landed in each collection (read from the xAI emulator)")
        names = {doc_id: name for name, doc_id in firm.documents.items()}
        for account, collection_id in firm.collections.items():
            rows = []
            for file_id, doc in sorted(sandbox.xai.collection_documents(collection_id).items(),
                                       key=lambda item: names.get(item[1]["fields"].get("crm_document_id", ""), "")):
                crm_id = doc["fields"].get("crm_document_id", "")
                rows.append((names.get(crm_id, crm_id), file_id, doc["status"].removeprefix("DOCUMENT_STATUS_")))
            console.table(f"{account} — {collection_id}", ("document", "xAI file", "status"), rows)
        _search_step(console, env)
        if keep_running:
            stop = StopSignals()
            console.print("\nEmulators keep running; point docsync at them with:")
            for key, value in sandbox.environment(Path(tmp) / "state").items():
                console.print(f"export {key}={value}", markup=False)
            console.print(f"Ctrl-C or `kill {os.getpid()}` (SIGTERM) stops them.")
            stop.wait()
        return 0 if first.returncode in (0, 1) and second.returncode in (0, 1) else first.returncode


def _contact_sheet(sandbox: Sandbox, firm: SeededFirm, env: dict[str, str], out: Path) -> Path:
    """Every seeded document's preview as read from the EspoCRM emulator; a missing one shows its reason (the
    recorded preview error, or the sync error of a document that failed)."""
    from docsync_sandbox.contact_sheet import Tile, render_contact_sheet

    status = _docsync(["status", "--json"], env)
    try:
        errors = {e["id"]: e["reason"] for e in json.loads(status.stdout)["previews"]["errors"]}
    except (ValueError, KeyError, TypeError):
        errors = {}
    tiles = []
    for name, doc_id in firm.documents.items():
        doc = sandbox.espo.document(doc_id)
        preview_id = doc.get("previewId")
        webp = sandbox.espo.attachment_bytes(preview_id) if preview_id else None
        if webp:
            tiles.append(Tile(name, webp))
        elif doc_id in errors:
            tiles.append(Tile(name, None, errors[doc_id]))
        elif doc.get("dateiStatus") == "Fehler":
            tiles.append(Tile(name, None, f"not synced: {doc.get('xaiSyncError') or 'Fehler'}"))
        else:
            tiles.append(Tile(name, None, "no preview was made"))
    try:
        return render_contact_sheet(tiles, out)
    except OSError:  # e.g. a read-only current directory
        return render_contact_sheet(tiles, Path(tempfile.gettempdir()) / out.name)


class StopSignals:
    """From construction on, SIGINT and SIGTERM ask to stop; :meth:`wait` blocks until one came.

    Both are handled explicitly: a shell starts a background job (``docsync sandbox serve &``) with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler of its own, so Ctrl-C after ``fg`` would do
    nothing; installing the handler re-enables it. SIGTERM (``kill PID``) would otherwise end the process without
    a clean shutdown of the emulators.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._received: list[int] = []
        self._previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handler(self, signum: int, frame: object) -> None:
        self._received.append(signum)
        self._stop.set()

    def wait(self) -> signal.Signals:
        try:
            while not self._stop.wait(0.5):
                pass
        finally:
            self.restore()
        return signal.Signals(self._received[0])

    def restore(self) -> None:
        """Put the previous SIGINT/SIGTERM handlers back (also when the emulators could not start)."""
        for sig, old in self._previous.items():
            signal.signal(sig, old)


SEARCH_PHRASE = "Berufungsbegründung Stellungnahme Gutachten"  # words from the seeded "Aktennotiz Fristen"


def _search_step(console: Presenter, env: dict[str, str]) -> None:
    """Is it findable? Ask xAI's search for a phrase from one of the synced documents."""
    console.rule("docsync search (a phrase from the document \"Aktennotiz Fristen\")")
    found = _docsync(["search", SEARCH_PHRASE, "--limit", "3"], env)
    console.print(f"$ docsync search {SEARCH_PHRASE!r} --limit 3", markup=False)
    console.print(found.stdout.rstrip() or found.stderr.rstrip(), markup=False)


def _tail(console: Presenter, text: str, lines: int = 8) -> None:
    shown = [line for line in text.splitlines() if " WARNING " in line or " ERROR " in line][-lines:]
    for line in shown:
        console.print(f"  {line}", markup=False)
