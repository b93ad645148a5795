"""Presentation, the CLI layer's other half: the consoles (every printed string passes the one secret scrubber),
error advice, the sync progress bar and run summary, the report renderers (status tables, explain/check lines,
search and verify), and the demo's console. With ``cli.py`` the only module that imports rich (or typer); the
modules below it hand over plain values and lines.

rich is imported inside the functions that print, so ``docsync --help`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from docsync_cli.errors import (
    AuthError,
    ConfigError,
    DocsyncError,
    ForeignInstallation,
    LocalStateError,
    LockHeld,
    NotFoundError,
    RateLimited,
    RunFatal,
    ServiceUnreachable,
    SetupError,
    UnsafePlan,
    UsageError,
)
from docsync_cli.model import Outcome, Reason
from docsync_cli.state.guard import state_fix

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from docsync_cli.config import Settings
    from docsync_cli.model import DocResult, RunPlan, RunSummary
    from docsync_cli.sync.adopt import AdoptReport


# ---------------------------------------------------------------------------------------------- consoles


class Scrubbed:
    """A rich console whose every printed string passes the one secret scrubber first (the output boundary)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        from docsync_cli.secrets import scrub

        self.console.print(*(scrub(o) if isinstance(o, str) else o for o in objects), **kwargs)


def stdout() -> Scrubbed:
    from rich.console import Console

    return Scrubbed(Console(highlight=False, soft_wrap=True))


def stderr() -> Scrubbed:
    from rich.console import Console

    # soft_wrap: one message stays one line in journald and cron mail, whatever the terminal width
    return Scrubbed(Console(stderr=True, highlight=False, soft_wrap=True))


class LinePrinter:
    """Prints literal (no markup), unwrapped, secret-free lines: the output of the report commands (it is their
    ``reports.shared.Lines``). With ``settings`` every line also passes ``config.redact`` (the configured keys)."""

    def __init__(self, console: Scrubbed, settings: Settings | None = None) -> None:
        self.console = console
        self.settings = settings

    def line(self, text: str, style: str | None = None) -> None:
        if self.settings is not None:
            from docsync_cli.config import redact

            text = redact(text, self.settings)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True, style=style)


def print_json(data: object, settings: Settings | None = None) -> None:
    """``--json`` output on stdout: indented, UTF-8, secret-free (``config.redact`` with ``settings``)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if settings is None:
        from docsync_cli.secrets import scrub

        typer.echo(scrub(text))
    else:
        from docsync_cli.config import redact

        typer.echo(redact(text, settings))


# ---------------------------------------------------------------------------------------------- errors


_URL_SETTINGS = {"espocrm": "ESPOCRM_URL (espocrm.url): the EspoCRM site URL, without /api/v1",
                 "xai": "XAI_API_URL (xai.api_url)", "xai-management": "XAI_MANAGEMENT_URL (xai.management_url)"}


def advise(exc: DocsyncError) -> None:
    """Print ``exc`` as advice on stderr (what went wrong and the fix)."""
    err = stderr()
    if isinstance(exc, ConfigError):
        err.print("[bold red]configuration problems:[/]")
        for problem in exc.problems:
            err.print(f"  • {problem}", markup=False, highlight=False)
        err.print("See `docsync --help` and the README's Configure section.")
    elif isinstance(exc, UsageError):
        err.print(f"usage error: {exc}", markup=False, highlight=False)
    elif isinstance(exc, LockHeld):
        err.print(f"docsync: skipped, {exc}; try again later or pass --wait SECONDS", markup=False,
                  highlight=False)
    elif isinstance(exc, AuthError):
        which = "ESPOCRM_API_KEY (and ESPOCRM_SECRET_KEY for HMAC)" if exc.service == "espocrm" else (
            "XAI_API_KEY" if exc.service == "xai" else "XAI_MANAGEMENT_KEY")
        hint = ("check " + which + "; for 403 also the API user's role (EspoCRM) or the key's permissions "
                "(xAI console)")
        err.print(f"docsync: run aborted: {exc}\n  fix: {hint}. Documents not reached keep their status.",
                  markup=False, highlight=False)
    elif isinstance(exc, ServiceUnreachable):
        setting = _URL_SETTINGS.get(exc.service, "the URL").split(" (")[0]
        err.print(f"docsync: run aborted: {exc}\n  fix: check {setting} and the network; the next run retries.",
                  markup=False, highlight=False)
    elif isinstance(exc, SetupError):
        err.print(f"docsync: refused: {exc}", markup=False, highlight=False)
        if exc.advice:
            err.print(f"  fix: {exc.advice}", markup=False, highlight=False)
    elif isinstance(exc, UnsafePlan):
        err.print(f"docsync: refused: {exc}", markup=False, highlight=False)
    elif isinstance(exc, LocalStateError):
        err.print(f"docsync: run aborted: {exc}\n  fix: {state_fix(exc)}\n  No document was marked \"Fehler\" for "
                  "this; the next run after the fix finishes the documents in hand.", markup=False, highlight=False)
    elif isinstance(exc, RateLimited):
        err.print(f"docsync: run stopped: {exc}\n  The run cannot wait that long; no document was marked "
                  f"\"Fehler\". The next run after {exc.until} goes on (the timer's next run, or run it then).",
                  markup=False, highlight=False)
    elif isinstance(exc, ForeignInstallation):
        err.print(f"docsync: refused: {exc}\n  fix: two docsync installations sync one CRM into one xAI team. "
                  "Either make them one installation: the same sync.installation_id (DOCSYNC_SYNC__INSTALLATION_ID) "
                  "on every host and lock.backend = \"redis\" with one lock.url, so runs take turns; or split the "
                  "work so each document is synced by one of them only (different CRMs, or different xAI teams). "
                  "See the README, \"Several hosts\".", markup=False, highlight=False)
    elif isinstance(exc, RunFatal):
        err.print(f"docsync: run aborted: {exc}", markup=False, highlight=False)
    elif isinstance(exc, NotFoundError):
        # A 404 no caller expected (missing records are handled where they are asked for): the URL does not
        # lead to the service's API, e.g. ESPOCRM_URL naming another server. A configuration error, like check.
        setting = _URL_SETTINGS.get(exc.service, "the service URLs")
        err.print(f"docsync: {exc}\n  fix: check {setting}; `docsync check` tests it", markup=False,
                  highlight=False)
    else:
        err.print(f"docsync: {exc}", markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------- sync


SYNC_EXAMPLES = """Examples:

\b
  docsync sync               the scheduled job: everything that needs work
  docsync sync --dry-run     show the plan, write nothing (exit 1 when there is work)
  docsync sync --id ID       one document now (also one held back after a failure)
  docsync sync --full        also check every document's collections; prune deleted ones
  docsync sync --retry-failed  also retry documents held back as permanent failures
"""
"""``docsync sync --help``'s examples (``\\b`` keeps click from rewrapping them)."""


def print_adopt(report: AdoptReport) -> None:
    """``docsync adopt``'s result: each adopted file, each refusal with its reason, then one summary line."""
    out = stdout()
    verb = "would adopt" if report.dry_run else "adopted"
    for file_id, doc_id in report.adopted:
        out.print(f"  {verb}  {file_id}  for {doc_id}", markup=False, highlight=False)
    for refusal in report.refused:
        out.print(f"  refused  {refusal.file_id}  ({', '.join(refusal.doc_ids)}): {refusal.reason}", markup=False,
                  highlight=False)
    out.print(f"docsync adopt: {len(report.adopted)} {verb}, {len(report.refused)} refused, {report.already} "
              "already docsync's", markup=False, highlight=False)


class SyncProgress:
    """A rich progress bar on a terminal with text logs; otherwise nothing (the engine logs one line per
    document)."""

    def __init__(self, log_format: str) -> None:
        self.enabled = sys.stderr.isatty() and log_format == "text"
        self._progress: Progress | None = None  # imported only when it shows
        self._task: TaskID | None = None

    def __enter__(self) -> SyncProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("sync"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=stderr().console, transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task("sync", total=None)
        return self

    def planned(self, plan: RunPlan) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=len(plan.work))

    def advance(self, result: DocResult) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


def print_summary(summary: RunSummary, dry_run: bool) -> None:
    """The run's result on stdout: the plan (``--dry-run``), or one line of counts and a line per problem."""
    out = stdout()
    plan = summary.plan
    if plan is None:
        return
    if dry_run:
        if not plan.work and not plan.deletions:  # counted alike by plain and --full runs
            held = f", {plan.held_back_count} held back" if plan.held_back_count else ""
            out.print(f"Nothing to do ({plan.unchanged} documents in step{held}).")
        for item in plan.work:
            out.print(f"would sync  {item.doc.id}  {item.doc.name!r}: {item.reason}", markup=False, highlight=False)
        for deletion in plan.deletions:
            m = deletion.member
            out.print(f"would delete  {m.file_id} from {m.collection_id} (document {m.crm_document_id}): "
                      f"{deletion.reason}", markup=False, highlight=False)
        for item in plan.held_back:
            out.print(f"held back  {item.doc.id}  {item.doc.name!r}: {item.reason}", markup=False, highlight=False)
        for doc_id in plan.held_back_unread:  # not read by this plain run: the id only
            out.print(f"held back  {doc_id}: {Reason.HELD_BACK}", markup=False, highlight=False)
        return
    counts = summary.counts()
    shown = (Outcome.SYNCED, Outcome.PENDING, Outcome.FAILED, Outcome.DEFERRED, Outcome.SKIPPED)
    parts = [f"{counts.get(k, 0)} {k}" for k in shown if counts.get(k)]
    parts.append(f"{counts.get('unchanged', 0)} unchanged")  # the planned and the verified-unchanged ones
    if summary.deleted:
        parts.append(f"{len(summary.deleted)} deleted")
    if counts.get("preview_failed"):
        parts.append(f"{counts['preview_failed']} previews failed")
    out.print("docsync: " + ", ".join(parts), markup=False, highlight=False)
    for result in summary.results:
        if result.outcome in (Outcome.FAILED, Outcome.SKIPPED, Outcome.DEFERRED):
            out.print(f"  {result.outcome}  {result.doc_id}  {result.name!r}: {result.detail}", markup=False,
                      highlight=False)
    for note in summary.notes:
        out.print(f"  note: {note}", markup=False, highlight=False)
    if summary.stopped:
        not_started = len(plan.work) - len(summary.results)
        out.print(f"  stopped by a signal: {not_started} planned documents not started; the next run does them",
                  markup=False, highlight=False)


# ---------------------------------------------------------------------------------------------- setup, sandbox


def print_field_definitions(names: dict[str, str], language: str) -> None:
    """``docsync espocrm-fields``: the entityDefs and i18n JSON for docsync's custom Document fields."""
    from docsync_cli.crm.fields import entity_defs, i18n_labels, with_accounts_override

    typer.echo("// custom/Espo/Custom/Resources/metadata/entityDefs/Document.json")
    typer.echo(json.dumps(with_accounts_override(entity_defs(names)), indent=4, ensure_ascii=False))
    typer.echo("// \"accounts\": {\"noLoad\": false} is optional and changes a standard field: EspoCRM then lists")
    typer.echo("// each document's accountsIds (one extra SQL query per row), so docsync's hourly listing pass")
    typer.echo("// sees link changes without one request per account. Leave it out if you do not want that.")
    typer.echo(f"// custom/Espo/Custom/Resources/i18n/{language}/Document.json")
    typer.echo(json.dumps(i18n_labels(names, language), indent=4, ensure_ascii=False))
    typer.echo("// then: Administration > Rebuild (or `php command.php rebuild`)")


def print_sandbox_environment(environment: dict[str, str], state_dir: Path) -> None:
    """``docsync sandbox serve``: the environment block that points docsync at the running emulators."""
    typer.echo("# Emulators running; paste this into your shell, then run `docsync sync`:")
    for key, value in environment.items():
        typer.echo(f"export {key}={value}")
    typer.echo(f"# The emulators keep their data in memory; docsync's state goes to {state_dir}, made by the first "
               "docsync run with this block and owned by whoever runs it (root or the service user: keep to one).")
    typer.echo(f"# Ctrl-C or `kill {os.getpid()}` (SIGTERM) stops the emulators.")


class DemoConsole:
    """``docsync demo``'s :class:`~.sandbox.demo.Presenter`: a rich console (markup on, no highlighting), rules
    between the steps, left-titled tables."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(highlight=False)

    def print(self, text: str, *, markup: bool = True) -> None:
        self.console.print(text, markup=markup)

    def rule(self, title: str) -> None:
        self.console.rule(title)

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        self.console.print(table)
