"""The report commands' views, part of the CLI layer (with ``cli.py`` and ``ui.py`` the only modules importing
rich): ``docsync status`` as tables, the ``search`` and ``verify`` lines. They render the plain values the
``reports`` modules return; every string passes the secret scrubber (``ui.Scrubbed``), every line of search and
verify also ``config.redact`` (``ui.LinePrinter``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docsync_cli.cli.views import LinePrinter, Scrubbed
from docsync_cli.model import Field

if TYPE_CHECKING:
    from rich.text import Text

    from docsync_cli.config import Settings
    from docsync_cli.reports.search import SearchResult
    from docsync_cli.reports.status import Previews, RunRow, StatusReport, Waiting
    from docsync_cli.reports.verify import VerifyReport


# ---------------------------------------------------------------------------------------------- status

HIDDEN_SHOWN = 20  # hidden documents listed by name in the text report


def render_status(data: StatusReport, console: Scrubbed) -> None:
    """Print ``reports.status.collect_status``'s data as rich tables (status names exactly as in the CRM)."""
    from rich.table import Table

    from docsync_cli.reports.status_feeds import feeds_explained

    console.print(f"Installation: {data.get('installation_id') or '(not yet made; the first sync makes it)'}",
                  markup=False, soft_wrap=True)
    espocrm = data["espocrm"]
    if not espocrm["reachable"]:
        console.print(f"EspoCRM could not be reached: {espocrm['error']}\n"
                      "Showing what this host knows locally.", markup=False, soft_wrap=True, style="bold red")
    documents = data["documents"]
    if documents["total"] is not None:
        table = Table(title=f"Documents ({documents['total']})", title_justify="left")
        table.add_column(Field.DATEI_STATUS)
        table.add_column("count", justify="right")
        for name, count in documents["dateiStatus"].items():
            table.add_row(_cell(name), str(count))
        if documents["other_dateiStatus"]:
            table.add_row("(other)", str(documents["other_dateiStatus"]))
        console.print(table)
        table = Table(title="xAI sync", title_justify="left")
        table.add_column(Field.XAI_SYNC_STATUS)
        table.add_column("count", justify="right")
        for name, count in documents["xaiSyncStatus"].items():
            table.add_row(_cell(name), str(count))
        console.print(table)
        _render_waiting(data["waiting"], console)
    elif espocrm["reachable"]:  # reached, yet no total: EspoCRM answered -1/-2
        console.print("Documents: not counted — EspoCRM does not count Documents (\"Disable record count\" is on for "
                      "Document), so no count per status is shown, and none is guessed. To see them: "
                      "Administration > Entity Manager > Document > Edit: untick \"Disable record count\".",
                      markup=False, soft_wrap=True)
    failed = data["failed"]
    if failed["documents"]:
        shown = len(failed["documents"])
        if failed["total"] is None:
            title = f"Fehler (not counted, showing {shown}{' or more' if failed['truncated'] else ''})"
        else:
            title = f"Fehler ({failed['total']}{f', showing {shown}' if failed['truncated'] else ''})"
        table = Table(title=title, title_justify="left")
        for column in ("id", "name", "error"):
            table.add_column(column, overflow="fold")
        for doc in failed["documents"]:
            table.add_row(_cell(doc["id"]), _cell(doc["name"]), _cell(doc["error"] or ""))
        console.print(table)
    _render_previews(data["previews"], console)
    if data["adopt_waiting"]:
        console.print(f"{data['adopt_waiting']} documents name an xAI file docsync did not make (an earlier sync "
                      "system's): they wait for `docsync adopt`", markup=False, soft_wrap=True)
    hidden = data.get("hidden") or []
    if hidden:
        console.print(f"Hidden from docsync ({len(hidden)}): these documents exist in EspoCRM but the API user may "
                      "not read them (a role or team change); their xAI files are kept. Fix: Administration > "
                      "Roles > the API user's role: Document read 'all', or add the API user to their teams.",
                      markup=False, soft_wrap=True, style="bold")
        for row in hidden[:HIDDEN_SHOWN]:
            console.print(f"  {row['id']}  {row['reason']} (since {row['since']})", markup=False, soft_wrap=True)
        if len(hidden) > HIDDEN_SHOWN:
            console.print(f"  … and {len(hidden) - HIDDEN_SHOWN} more (`docsync status --json`)", markup=False)
    console.print("Change feeds", style="italic")
    for line in feeds_explained(data["feeds"]):
        console.print("  " + line, markup=False, soft_wrap=True)
    _render_runs(data["runs"], console)
    lock = data["lock"]
    if lock["error"]:
        console.print(f"Lock ({lock['backend']}): cannot tell: {lock['error']}", markup=False, soft_wrap=True)
    else:
        console.print(f"Lock ({lock['backend']}): " + (f"held by {lock['holder']}" if lock["holder"] else "free"),
                      markup=False, soft_wrap=True)


def _cell(text: str) -> Text:
    """A table cell shown literally (CRM names and error texts may contain ``[...]``, which rich reads as markup)."""
    from rich.text import Text

    from docsync_cli.secrets import printable, scrub

    return Text(scrub(printable(str(text), 2000)))  # no terminal escapes, no secrets


def _render_waiting(waiting: Waiting, console: Scrubbed) -> None:
    about = "about " if waiting["approximate"] else "at least "
    parts = [f"{waiting['new']} Neu", f"{waiting['changed']} Geändert"]
    if waiting["no_status"]:
        parts.append(f"{waiting['no_status']} without dateiStatus")
    if waiting["unfinished"]:
        parts.append(f"{waiting['unfinished']} unfinished")
    if waiting["failed_retry"]:
        parts.append(f"{waiting['failed_retry']} Fehler to retry")
    if waiting["next_run"] == 0:
        line = "Waiting: no document is marked for the next run (drift is found only by a run)"
    else:
        line = f"Waiting: the next run would work on {about}{waiting['next_run']} documents ({', '.join(parts)})"
    if waiting["failed_held_back"]:
        line += (f"; {waiting['failed_held_back']} Fehler held back until they change (`docsync sync --id ID` or "
                 "`docsync sync --retry-failed` retries them now)")
    console.print(line, markup=False, soft_wrap=True)


def _render_previews(previews: Previews, console: Scrubbed) -> None:
    from rich.table import Table

    if previews["missing"] is not None:
        console.print(f"Previews missing: {previews['missing']} Gesynct documents have no preview", markup=False,
                      soft_wrap=True)
    if previews["errors"]:
        table = Table(title="Preview errors", title_justify="left")
        table.add_column("document")
        table.add_column("id")
        table.add_column("reason", overflow="fold")
        for item in previews["errors"]:
            table.add_row(_cell(item.get("name") or "?"), _cell(item["id"]), _cell(item["reason"]))
        console.print(table)


def _render_runs(runs: list[RunRow], console: Scrubbed) -> None:
    from rich.table import Table

    if not runs:
        console.print("No runs recorded on this host yet.", markup=False, soft_wrap=True)
        return
    table = Table(title="Last runs", title_justify="left")
    for column in ("started", "duration", "command", "exit", "counts"):
        table.add_column(column, justify="right" if column in ("duration", "exit") else "left")
    for run in runs:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(run["counts"].items()) if n)
        if run["error"]:
            counts = (counts + "; " if counts else "") + str(run["error"])
        table.add_row(run["started_at"], f"{run['duration_seconds']:.1f} s", _cell(run["command"]),
                      str(run["exit_code"]), _cell(counts))
    console.print(table)


# ---------------------------------------------------------------------------------------------- search, verify


def render_search(result: SearchResult, console: Scrubbed, settings: Settings) -> None:
    from docsync_cli.reports.search import describe

    out = LinePrinter(console, settings)
    out.line(f"{len(result.hits)} hit(s) in {result.scope} ({len(result.collections)} collection(s))", "bold")
    if result.unknown:
        out.line(f"  xAI does not know {len(result.unknown)} of them (skipped): {', '.join(result.unknown)}", "red")
    for h in result.hits:
        out.line(f"{h.rank:>3}. {describe(h.owner, h.hit.file_id)}")
        where = ", ".join(h.hit.collection_ids) or "?"
        page = f", page {h.hit.page_number}" if h.hit.page_number else ""
        out.line(f"     score {h.hit.score:.3f}{page}, file {h.hit.file_id}, collection {where}")
        if h.owner.note and h.owner.doc_id is not None:
            out.line(f"     note: {h.owner.note}")
        if h.snippet:
            out.line(f"     “{h.snippet}”")


def render_verify(report: VerifyReport, console: Scrubbed, settings: Settings) -> None:
    from docsync_cli.reports.probe import verdict
    from docsync_cli.reports.search import describe

    out = LinePrinter(console, settings)
    probed = report.probed
    share = report.share
    if share is None:
        out.line(f"docsync verify: nothing to probe ({report.candidates} Gesynct document(s) with an xAI file, "
                 f"none with text to search for)", "bold")
    else:
        out.line(f"docsync verify: {len(probed) - len(report.misses)} of {len(probed)} probed documents found in "
                 f"the top {report.top} ({share * 100:.1f} %); threshold {report.threshold:.1f} %"
                 + ("" if report.passed else " — BELOW THRESHOLD"), "bold" if report.passed else "bold red")
    for miss in report.misses:
        out.line(f"  miss  {miss.doc.id}  {miss.doc.name!r}")
        instead = report.instead.get(miss.doc.id, {})
        for c in miss.collections:
            if c.found:
                continue
            out.line(f"        {c.collection_id}: {verdict(c, report.top)}")
            others = instead.get(c.collection_id, [])
            if others:
                out.line("          came back instead: " + "; ".join(describe(o, h.file_id) for h, o in others))
    if report.skipped:
        reasons: dict[str, int] = {}
        for skipped in report.skipped:
            reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
        out.line(f"  skipped {len(report.skipped)} without a phrase to probe with (--json lists them): "
                 + "; ".join(f"{n} × {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])))
    if report.misses:
        out.line("  `docsync explain --id ID` shows one miss in detail, `docsync search QUERY --id ID` tries other "
                 "words.")
