"""The command line: thin Typer commands, and the one place where errors become advice (``ui.advise``) and exit
codes. What they print is rendered by ``ui.py`` and ``ui_reports.py``.

Heavy modules (httpx, pydantic, the engine, Pillow) are imported inside the commands so that ``docsync --help``
starts fast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from docsync_cli import __version__
from docsync_cli.cli import logs
from docsync_cli.cli import report_views as ui_reports
from docsync_cli.cli import views as ui
from docsync_cli.cli.sandbox import demo, sandbox_app
from docsync_cli.errors import ConfigError, DocsyncError, UsageError
from docsync_cli.outcome import (
    EXIT_CODES_HELP,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    error_code,
    run_code,
)
from docsync_cli.sync.stopping import stop_on_signals

if TYPE_CHECKING:
    from docsync_cli.config import Settings
    from docsync_cli.model import RunOptions, RunSummary


app = typer.Typer(
    help="Keep EspoCRM documents searchable in xAI Collections.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(sandbox_app, name="sandbox")
app.command()(demo)

class Context:
    def __init__(self, config: Path | None, verbose: int, log_format: str) -> None:
        self.config = config
        self.verbose = verbose
        self.log_format = log_format
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            from docsync_cli.config import load_settings

            self._settings = load_settings(self.config)
            _install_redaction(self._settings)
        return self._settings


def _version(value: bool) -> None:
    if value:
        typer.echo(f"docsync {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file (default: "
                                                "$DOCSYNC_CONFIG, else /etc/docsync/config.toml).")] = None,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: HTTP).")] = 0,
    log_format: Annotated[str, typer.Option("--log-format", help="Log lines as 'text' or 'json'.")] = "text",
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    if log_format not in ("text", "json"):
        raise typer.BadParameter("--log-format must be 'text' or 'json'")
    ctx.obj = Context(config, verbose, log_format)
    _setup_logging(verbose, log_format)


def _guard(fn: Callable[[], int]) -> None:
    """Run a command body; translate every docsync error into advice (the only place) and its exit code."""
    try:
        code = fn()
    except DocsyncError as exc:
        code = report_error(exc)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    raise typer.Exit(code)


def report_error(exc: DocsyncError) -> int:
    """Print ``exc`` as advice on stderr (``ui.advise``); return its exit code (``outcome.error_code``)."""
    ui.advise(exc)
    return error_code(exc)


# ---------------------------------------------------------------------------------------------------
# sync / prune


@app.command(epilog=ui.SYNC_EXAMPLES)
def sync(
    ctx: typer.Context,
    ids: Annotated[list[str] | None, typer.Option("--id", metavar="<id>", help="Only this document (repeatable); "
                                                  "also retries "
                                                  "documents held back after a permanent failure.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; write nothing to either service. "
                                          "Exit 1 when there is work.")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Work on at most N documents.")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, max=32,
                                                    help="Documents in flight (default: sync.concurrency).")] = None,
    wait: Annotated[float | None, typer.Option("--wait", min=0, help="Wait up to SECONDS for a running sync "
                                               "instead of exiting 75.")] = None,
    full: Annotated[bool, typer.Option("--full", help="Check every document's collections, and delete files "
                                       "whose EspoCRM document is gone.")] = False,
    force_delete: Annotated[bool, typer.Option("--force-delete", help="Allow deletions above sync.max_delete / "
                                               "sync.max_delete_percent.")] = False,
    no_preview: Annotated[bool, typer.Option("--no-preview", help="Skip previews in this run.")] = False,
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", help="Write Prometheus textfile "
                                                      "metrics here after the run.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Also retry every document marked "
                                               "\"Fehler\" that waits for a change (e.g. marked by an older "
                                               "docsync for a setup problem since fixed).")] = False,
) -> None:
    """Reconcile EspoCRM documents into xAI Collections (the job the timer runs)."""
    from docsync_cli.model import RunOptions

    options = RunOptions(ids=frozenset(ids) if ids else None, dry_run=dry_run, full=full, limit=limit,
                         force_delete=force_delete, retry_failed=retry_failed)
    command = "sync" + (" --full" if full else "") + (" --dry-run" if dry_run else "") + (
        " --retry-failed" if retry_failed else "") + (f" --id {' --id '.join(ids)}" if ids else "")
    _guard(lambda: _run(ctx.obj, options, command, concurrency, wait, not no_preview, metrics_file))


@app.command()
def prune(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be deleted.")] = False,
    force_delete: Annotated[bool, typer.Option("--force-delete", help="Allow deletions above the limits.")] = False,
    wait: Annotated[float | None, typer.Option("--wait", min=0, help="Wait up to SECONDS for a running sync "
                                               "instead of exiting 75.")] = None,
) -> None:
    """Delete xAI files whose EspoCRM document is gone (only files docsync put there itself)."""
    from docsync_cli.model import RunOptions

    options = RunOptions(full=True, dry_run=dry_run, force_delete=force_delete, prune_only=True)
    _guard(lambda: _run(ctx.obj, options, "prune" + (" --dry-run" if dry_run else ""), None, wait, False, None))


@app.command()
def adopt(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every file (its bytes included); adopt none. "
                                          "Exit 1 when there is a file to adopt.")] = False,
    wait: Annotated[float | None, typer.Option("--wait", min=0, help="Wait up to SECONDS for a running sync "
                                               "instead of exiting 75.")] = None,
) -> None:
    """Take over the xAI files the CRM names (xaiFileId) for its documents, e.g. after an earlier sync system:
    only a file exactly one document names, whose bytes hash to its xaiSyncedHash, that no other installation
    owns and that sits only in collections docsync manages. Every refusal is listed with its reason."""
    def body() -> int:
        from docsync_cli.sync.adopt import run_adopt

        report = run_adopt(ctx.obj.settings(), dry_run=dry_run, wait=wait)
        ui.print_adopt(report)
        if report.refused or (dry_run and report.adopted):
            return EXIT_PARTIAL
        return EXIT_OK

    _guard(body)


def _run(obj: Context, options: RunOptions, command: str, concurrency: int | None, wait: float | None,
         previews_on: bool, metrics_file: Path | None) -> int:
    from docsync_cli.sync.run import SyncRun

    stop = threading.Event()
    stop_on_signals(stop)
    with SyncRun(obj.settings(), options, command=command, wait=wait, concurrency=concurrency,
                 previews=previews_on, metrics_file=metrics_file) as run:
        summary: RunSummary | None = None
        error: DocsyncError | None = None
        progress = ui.SyncProgress(obj.log_format)
        try:
            with progress:
                summary = run.execute(on_result=progress.advance, on_plan=progress.planned, stop=stop)
        except DocsyncError as exc:
            error = exc
        code = _outcome(summary, error, options)
        run.record(code, summary, error)
        return code


def _outcome(summary: RunSummary | None, error: DocsyncError | None, options: RunOptions) -> int:
    """Print the run's result; its exit code is ``outcome.run_code``'s."""
    if error is not None or summary is None:
        return report_error(error) if error is not None else EXIT_PARTIAL
    ui.print_summary(summary, options.dry_run)
    if summary.fatal is not None:
        return report_error(summary.fatal)
    return run_code(summary, dry_run=options.dry_run, ids_requested=bool(options.ids))


# ---------------------------------------------------------------------------------------------------
# status, explain, search, verify, preview, check, espocrm-fields


@app.command()
def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Report: documents per status, failures, missing previews, recent runs, the lock holder."""
    def body() -> int:
        from docsync_cli.reports.status import collect_status

        settings = ctx.obj.settings()
        data = collect_status(settings)
        if as_json:
            ui.print_json(data)
        else:
            ui_reports.render_status(data, ui.stdout())
        return EXIT_OK

    _guard(body)


@app.command()
def explain(
    ctx: typer.Context,
    doc_id: Annotated[str, typer.Option("--id", help="The EspoCRM Document id.")],
    no_probe: Annotated[bool, typer.Option("--no-probe", help="Skip the findability probe (it costs one xAI "
                                           "search call per collection).")] = False,
) -> None:
    """Everything docsync knows about one document, what the next run would do with it, and whether a phrase
    from its own text finds it."""
    def body() -> int:
        from docsync_cli.reports.explain import explain_document

        settings = ctx.obj.settings()
        explain_document(settings, doc_id, ui.LinePrinter(ui.stdout(), settings), probe=not no_probe)
        return EXIT_OK

    _guard(body)


@app.command()
def search(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(metavar="QUERY", help="What to search for (never logged: it can be "
                                                                 "client data).")],
    account: Annotated[str | None, typer.Option("--account", help="Only this Account's collection.")] = None,
    collection: Annotated[str | None, typer.Option("--collection", help="Only this collection.")] = None,
    doc_id: Annotated[str | None, typer.Option("--id", help="Only the collections of this Document.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100, help="Number of hits (chunks).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (see README).")] = False,
) -> None:
    """Ask xAI's search what it returns, shown as CRM documents (default: every collection docsync manages)."""
    def body() -> int:
        from docsync_cli.reports.search import run_search, search_json

        settings = ctx.obj.settings()
        result = run_search(settings, query, account=account, collection=collection, doc_id=doc_id, limit=limit)
        if as_json:
            ui.print_json(search_json(result), settings)
        else:
            ui_reports.render_search(result, ui.stdout(), settings)
        return EXIT_OK

    _guard(body)


@app.command()
def verify(
    ctx: typer.Context,
    sample: Annotated[int | None, typer.Option("--sample", min=1, max=1000, help="Documents to probe "
                                               "(default: verify.sample).")] = None,
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", help="Write the found share as a "
                                                      "Prometheus textfile here (e.g. docsync_verify.prom).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output (see README).")] = False,
) -> None:
    """Probe a random sample of Gesynct documents: is each found by a phrase from its own text? Exit 1 below
    verify.min_found_percent. Costs one search call per collection probed; never part of sync."""
    def body() -> int:
        from docsync_cli.errors import LocalEnvironmentError
        from docsync_cli.reports.verify import run_verify, verify_json
        from docsync_cli.state.metrics import write_verify_metrics

        settings = ctx.obj.settings()
        report = run_verify(settings, sample)
        if as_json:
            ui.print_json(verify_json(report), settings)
        else:
            ui_reports.render_verify(report, ui.stdout(), settings)
        if metrics_file is not None:
            try:
                write_verify_metrics(metrics_file, report.share, len(report.probed), len(report.misses),
                                     report.finished_unixtime)
            except OSError as exc:
                raise LocalEnvironmentError(f"cannot write {metrics_file}: {exc.strerror or exc}") from None
        return EXIT_OK if report.passed else EXIT_PARTIAL

    _guard(body)


@app.command()
def preview(
    ctx: typer.Context,
    doc_id: Annotated[str, typer.Option("--id", help="The EspoCRM Document id.")],
    out: Annotated[Path | None, typer.Option("--out", help="Write the WebP here instead of uploading it.")] = None,
) -> None:
    """Regenerate one document's preview (or write it to a file to look at)."""
    def body() -> int:
        from docsync_cli.reports.regenerate_preview import regenerate_preview

        typer.echo(regenerate_preview(ctx.obj.settings(), doc_id, out))
        return EXIT_OK

    _guard(body)


@app.command()
def check(ctx: typer.Context) -> None:
    """Validate the config, reach both services read-only, verify fields, collections and preview tools."""
    def body() -> int:
        from docsync_cli.reports.check import run_checks

        return run_checks(ctx.obj.settings, ui.LinePrinter(ui.stdout()))  # 0, EXIT_USAGE, or EXIT_REMOTE (unreachable)

    _guard(body)


@app.command("espocrm-fields")
def espocrm_fields(
    ctx: typer.Context,
    language: Annotated[str, typer.Option("--language", help="Labels: de_DE or en_US.")] = "de_DE",
) -> None:
    """Print the EspoCRM entityDefs JSON that creates docsync's custom Document fields."""
    def body() -> int:
        from docsync_cli.config import FieldNames
        from docsync_cli.crm.fields import LANGUAGES

        if language not in LANGUAGES:
            raise UsageError(f"no labels for --language {language!r}; choose one of {', '.join(LANGUAGES)}")
        try:
            names = ctx.obj.settings().espocrm.fields.model_dump()
        except ConfigError:
            names = FieldNames().model_dump()
        ui.print_field_definitions(names, language)
        return EXIT_OK

    _guard(body)


# ---------------------------------------------------------------------------------------------------
# plumbing


# Logging (one handler for docsync's and third-party loggers, text or JSON, redacted) lives in logs.py.
_REDACTOR = logs.REDACTOR
_install_redaction = logs.install_redaction
_setup_logging = logs.setup


def main() -> None:
    app()


if __name__ == "__main__":
    main()
