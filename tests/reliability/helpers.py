"""Running docsync against a :class:`Sandbox` for the reliability tests: as a subprocess (the real CLI, for
kills, exit codes and stderr) or in-process (the engine, for the fast property test).

Also a small, deterministic firm to seed: two client accounts with one collection each and five documents
that, after an initial sync and :func:`mutate_firm`, cover every kind of work a run does (new upload, changed
file, unlinked from a collection, deleted in the CRM, unchanged).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.seed import Sandbox
from tests.fakes import NullLocks

RUN_TIMEOUT = 120
ENV_PREFIXES = ("ESPOCRM_", "XAI_", "DOCSYNC_")


def cli_env(sandbox: Sandbox, state_dir: Path, extra: Mapping[str, str] | None = None, *,
            crm: EspoEmulator | None = None) -> dict[str, str]:
    """``os.environ`` (minus any docsync setting of the developer's shell) + the sandbox + short retries.
    ``crm``: another CRM on the same xAI team (``Sandbox.second_crm``) instead of the main one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env |= sandbox.environment(state_dir, crm)
    env["DOCSYNC_SYNC__MAX_ATTEMPTS"] = "3"
    env["DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS"] = "10"
    env |= extra or {}
    return env


def sync_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "docsync_cli", "sync", "--no-preview", *args]


def run_sync(sandbox: Sandbox, state_dir: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``docsync sync --no-preview ARGS`` to completion."""
    return subprocess.run(
        sync_argv(*args),
        env=cli_env(sandbox, state_dir, extra_env),
        text=True,
        capture_output=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def start_sync(sandbox: Sandbox, state_dir: Path, *args: str, **extra_env: str) -> subprocess.Popen[str]:
    """``docsync sync --no-preview ARGS`` started, not waited for (the caller may kill it)."""
    return subprocess.Popen(
        sync_argv(*args),
        env=cli_env(sandbox, state_dir, extra_env),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def clear_journals(sandbox: Sandbox) -> None:
    sandbox.espo.clear_journal()
    sandbox.xai.clear_journal()


def write_summary(sandbox: Sandbox) -> list[str]:
    """Every mutating call in both journals, as ``"METHOD path"`` (for readable assertion messages)."""
    return [f"{e.method} {e.path}" for e in sandbox.espo.writes() + sandbox.xai.writes()]


def describe(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"


# ---------------------------------------------------------------------------------------------------
# In-process engine (the property test)


@dataclass
class InProcessResult:
    exit_code: int
    summary: Any  # docsync_cli.model.RunSummary, or None when the run raised before planning finished
    error: Exception | None = None


def run_engine(
    sandbox: Sandbox,
    state_dir: Path,
    *,
    full: bool = True,
    force_delete: bool = False,
    concurrency: int = 2,
    crm: EspoEmulator | None = None,
    state: Any = None,
    **extra_env: str,
) -> InProcessResult:
    """One run through the engine, built like ``cli._run`` builds it (settings from the same environment the
    CLI would see), without previews and with a no-op lock. Exceptions the CLI would turn into an exit code
    are turned into one here too. ``state``: a :class:`~docsync_cli.state.StateStore` the caller opened (and
    closes), e.g. one with a fault-injecting connection."""
    from docsync_cli.config import load_settings
    from docsync_cli.errors import DocsyncError
    from docsync_cli.model import RunOptions
    from docsync_cli.outcome import error_code, run_code
    from docsync_cli.state import StateStore
    from docsync_cli.sync.engine import Engine
    from docsync_cli.sync.services import engine_settings, open_services

    settings = load_settings(None, env=cli_env(sandbox, state_dir, extra_env, crm=crm))
    own_state = state is None
    if state is None:
        state = StateStore(settings.state_dir, settings.sync.installation_id)
    try:
        with open_services(settings) as services:
            engine = Engine(
                services.espo, services.xai, state, NullLocks(), engine_settings(settings, concurrency), previews=None
            )
            try:
                summary = engine.run(RunOptions(full=full, force_delete=force_delete))
            except DocsyncError as exc:
                return InProcessResult(error_code(exc), None, exc)
            return InProcessResult(run_code(summary), summary)
    finally:
        if own_state:
            state.close()


# ---------------------------------------------------------------------------------------------------
# A small firm


@dataclass
class Firm:
    accounts: dict[str, str] = field(default_factory=dict)  # "A"/"B" -> account id
    collections: dict[str, str] = field(default_factory=dict)  # "A"/"B" -> collection id
    docs: dict[str, str] = field(default_factory=dict)  # role -> document id


def pdf_bytes(label: str) -> bytes:
    """A tiny, distinct, valid-enough PDF (previews are off; xAI's emulator only checks the magic)."""
    return (
        b"%PDF-1.4\n% docsync reliability " + label.encode() + b"\n"
        b"1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def seed_small_firm(sandbox: Sandbox) -> Firm:
    """Accounts A and B (one collection each) and four documents, all "Neu":

    * ``changed`` (A) — its file is replaced by :func:`mutate_firm`;
    * ``unlinked`` (A, B) — unlinked from B by :func:`mutate_firm`;
    * ``deleted`` (B) — deleted in the CRM by :func:`mutate_firm`;
    * ``stable`` (A) — never touched again.
    """
    firm = Firm()
    for name in ("A", "B"):
        firm.collections[name] = sandbox.xai.create_collection(f"Mandant {name}")
        firm.accounts[name] = sandbox.espo.add_account(f"Mandant {name}", firm.collections[name])
    for role, accounts in (("changed", ("A",)), ("unlinked", ("A", "B")), ("deleted", ("B",)), ("stable", ("A",))):
        firm.docs[role] = sandbox.espo.add_document(
            f"Dokument {role}",
            pdf_bytes(role),
            f"{role}.pdf",
            datei_status="Neu",
            accounts=[firm.accounts[a] for a in accounts],
        )
    return firm


def mutate_firm(sandbox: Sandbox, firm: Firm) -> None:
    """After the initial sync: one new document (B), one file replaced, one unlinked, one deleted."""
    firm.docs["new"] = sandbox.espo.add_document(
        "Dokument new", pdf_bytes("new"), "new.pdf", datei_status="Neu", accounts=[firm.accounts["B"]]
    )
    sandbox.espo.replace_file(firm.docs["changed"], pdf_bytes("changed, second version"), "changed-v2.pdf")
    sandbox.espo.user_update(firm.docs["changed"], dateiStatus="Geändert")
    sandbox.espo.unlink(firm.docs["unlinked"], "accounts", firm.accounts["B"])
    sandbox.espo.delete_document(firm.docs["deleted"])
    pin_order(sandbox, [firm.docs[role] for role in ("stable", "unlinked", "changed", "new")])


def pin_order(sandbox: Sandbox, doc_ids: list[str]) -> None:
    """Give the documents distinct ``modifiedAt`` values in this order, so docsync (oldest first) always works
    on them in the same order, whatever second the test started in."""
    with sandbox.espo.lock:
        for n, doc_id in enumerate(doc_ids):
            sandbox.espo.records["Document"][doc_id]["modifiedAt"] = f"2024-01-01 00:00:{n:02d}"


@contextlib.contextmanager
def sandbox_running(**kwargs: Any) -> Iterator[Sandbox]:
    kwargs.setdefault("processing_delay", 0.0)
    with Sandbox(**kwargs) as sandbox:
        yield sandbox
