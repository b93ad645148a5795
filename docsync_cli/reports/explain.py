"""``docsync explain``: everything docsync knows about one document, what the next run would do with it, and
(the findability probe) whether a phrase from its own text finds it.

Never writes to EspoCRM or xAI (the probe only searches) and makes no local writes. Errors are
:class:`~..errors.DocsyncError` (``cli.py`` turns them into advice and exit codes); nothing printed contains a
secret.
"""

from __future__ import annotations

from docsync_cli.config import Settings
from docsync_cli.errors import DocsyncError, NotFoundError, UsageError
from docsync_cli.model import UNKNOWN, CrmDocument, DateiStatus, Field, LocalRecord, id_key
from docsync_cli.reports.findability import CollectionProbe
from docsync_cli.reports.probe import DocumentProbe, preview_service, probe_document, verdict
from docsync_cli.reports.search import Resolver, describe
from docsync_cli.reports.shared import Lines, get_document, open_history, read_local_record, report_services
from docsync_cli.state import ReadOnlyState
from docsync_cli.sync.plan import candidate_collections, why_work
from docsync_cli.sync.services import Services
from docsync_cli.timestamps import unix_to_timestamp


def explain_document(settings: Settings, doc_id: str, out: Lines, *, probe: bool = True) -> None:
    """Write to ``out`` what docsync knows about ``doc_id`` and what the next ``docsync sync`` would do with it.

    Shows the document's docsync fields and hashes, the collections it needs and which rule gave each, what xAI
    holds (does the file exist, is it in each collection and in which processing state), this host's local
    record, the last errors (CRM field, local failure, preview), and the next run's decision (``nothing to do``
    or the reason from :func:`~..plan.why_work`). Read-only: only ``GET`` requests, no local writes. Plain lines
    (not tables), so ids are never cut and the output greps well.

    Raises :class:`~.errors.UsageError` when EspoCRM has no such document, and the usual run errors
    (:class:`~.errors.AuthError`, :class:`~.errors.ServiceUnreachable`) when EspoCRM cannot be asked. xAI
    problems are shown in the output instead (the CRM side is still worth seeing).

    With ``probe`` (the default) it also runs the findability probe (:func:`explain_probe`):
    a phrase from the document's own text is searched in each of its collections (one billed search call each).
    """
    with report_services(settings) as services:
        try:
            doc = get_document(services, doc_id)
        except UsageError:
            _print_hidden(settings, doc_id, out)
            raise
        local = read_local_record(settings.state_dir, doc.id)
        f = services.espo.attributes
        out.line(f"Document {doc.id} {doc.name!r}", style="bold")
        rows = [
            ("modifiedAt", doc.modified_at or "-"),
            ("file", f"{doc.file_name or '-'} (attachment {doc.file_id})" if doc.file_id else "no file attached"),
            (f[Field.DATEI_STATUS], doc.datei_status or "(leer)"),
            (f[Field.XAI_SYNC_STATUS], doc.xai_sync_status or "(leer)"),
            (f[Field.MD5], doc.md5 or "-"), (f[Field.SHA], doc.sha or "-"),
            (f[Field.XAI_SYNCED_HASH], doc.xai_synced_hash or "-"), (f[Field.XAI_FILE_ID], doc.xai_file_id or "-"),
            (f[Field.XAI_COLLECTIONS], ", ".join(doc.xai_collections) or "-"),
            (services.espo.preview_attr, doc.preview_id or "-"), (f[Field.XAI_SYNC_ERROR], doc.xai_sync_error or "-"),
        ]
        if doc.problems:
            rows.append(("problems", "; ".join(doc.problems)))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            out.line(f"  {name:<{width}}  {value}")
        required = _required_collections(settings, services, doc, out)
        _print_xai(services, doc, required, local, out)
        if probe:
            explain_probe(settings, services, doc, out)
    _print_local(settings, doc, local, out)
    reason = why_work(doc, local, full=False, explicit=False)
    if reason is None:
        held = doc.datei_status == DateiStatus.FEHLER
        out.line("Next run: nothing to do" + (
            f" (permanent failure: held back until the document changes; `docsync sync --id {doc.id}` retries it "
            "now)" if held else ""), style="bold")
    else:
        out.line(f"Next run: would sync it: {reason}", style="bold")


def _print_hidden(settings: Settings, doc_id: str, out: Lines) -> None:
    """What this host knows of a document EspoCRM no longer shows the API user (403: hidden, not deleted)."""
    state = ReadOnlyState(settings.state_dir)
    hidden = state.hidden() if state.exists() else {}
    found = next(((i, v) for i, v in hidden.items() if id_key(i) == id_key(doc_id)), None)
    if found is None:
        return
    local = read_local_record(settings.state_dir, found[0])
    out.line(f"Document {found[0]}: hidden from docsync since {unix_to_timestamp(found[1][1])} "
             f"(EspoCRM answers 403 {found[1][0]})", style="bold")
    out.line(f"  its xAI file {(local.xai_file_id if local else None) or '-'} is kept; docsync neither syncs nor "
             "deletes it until the API user may read the document again (or EspoCRM answers 404: deleted)")
    out.line("  Fix: Administration > Roles > the API user's role: Document read 'all', or add the API user to the "
             "document's teams")


def _required_collections(settings: Settings, services: Services, doc: CrmDocument, out: Lines
                          ) -> dict[str, str]:
    """collection id → which rule requires it (``collections.static`` or ``link <link>.<field>``); printed."""
    required: dict[str, list[str]] = {}
    for collection_id in settings.collections.static:
        required.setdefault(collection_id, []).append("collections.static")
    out.line("Required collections:")
    for rule in settings.collections.links:
        try:
            values = services.espo.related_values(doc.id, rule.link, rule.field)
        except NotFoundError as exc:
            out.line(f"  link {rule.link}: cannot follow it ({exc.detail or 'not found'}); the next run would fail "
                     "this document", style="red")
            continue
        for value in values:
            required.setdefault(value, []).append(f"link {rule.link}.{rule.field}")
    for collection_id, reasons in sorted(required.items()):
        out.line(f"  {collection_id}  ({', '.join(reasons)})")
    if not required:
        out.line("  none: no static collection, and no linked record names one")
    return {collection_id: ", ".join(reasons) for collection_id, reasons in required.items()}


def _print_xai(services: Services, doc: CrmDocument, required: dict[str, str], local: LocalRecord | None,
               out: Lines) -> None:
    out.line("xAI:")
    file_id = doc.xai_file_id
    if not file_id:
        out.line("  no xAI file recorded in the CRM")
        return
    try:
        exists = services.xai.file_exists(file_id)
    except DocsyncError as exc:
        out.line(f"  cannot ask about file {file_id}: {exc}", style="red")
        return
    out.line(f"  file {file_id} {'exists' if exists else 'does not exist'}")
    if not exists:
        return
    candidates = candidate_collections(doc, required, local)
    for collection_id in sorted(candidates):
        try:
            member = services.xai.member(collection_id, file_id)
        except NotFoundError:
            member, state = None, "the collection does not exist"
        except DocsyncError as exc:
            member, state = None, f"cannot ask: {exc}"
        else:
            state = "not a member"
        if member is not None:
            status = "status unknown" if member.status == UNKNOWN else member.status
            state = f"member, {status}" + (f": {member.error_message}" if member.error_message else "")
        need = "required" if collection_id in required else "not required (the next run would remove it)"
        out.line(f"  {collection_id}: {state}; {need}")


def _print_local(settings: Settings, doc: CrmDocument, local: LocalRecord | None, out: Lines) -> None:
    if local is None:
        out.line("Local record: none on this host (no run here has touched the document yet)")
    else:
        out.line("Local record (this host's last run on it):")
        rows = [("file", local.file_id), ("sha256", local.sha256), ("md5", local.md5), ("xAI file", local.xai_file_id),
                ("collections", ", ".join(local.collections)), ("modifiedAt after write", local.crm_modified_at),
                ("preview made from", local.preview_sha)]
        if local.failure_code:
            kind = "transient" if local.failure_transient else "permanent"
            rows.append(("last failure", f"{local.failure_code} ({kind})"))
        for name, value in rows:
            out.line(f"  {name:<22}  {value or '-'}")
    errors = []
    if doc.xai_sync_error:
        errors.append(f"CRM: {doc.xai_sync_error}")
    history = open_history(settings.state_dir)
    if history is not None:
        with history:
            preview_error = history.preview_errors().get(doc.id)
        if preview_error:
            errors.append(f"preview: {preview_error}")
    out.line("Last error: " + ("; ".join(errors) if errors else "none"))


# ---------------------------------------------------------------------------------------------- probe


def print_probe(result: DocumentProbe, resolver: Resolver, out: Lines, top: int) -> None:
    """The findability lines of ``docsync explain``."""
    out.line(f"Findability (a phrase from its own text, searched in each of its collections; top {top}):")
    if not result.probed:
        out.line(f"  not probed: {result.reason}")
        return
    out.line(f"  phrase: “{result.phrase}”")  # \w+ words joined by spaces: safe inside double quotes
    out.line(f"  repeat: docsync search --id {result.doc.id} \"{result.phrase}\"")
    for c in result.collections:
        out.line(f"  {c.collection_id}: {verdict(c, top)}", style=None if c.found else "red")
        if not c.found:
            for line in _came_back(c, resolver):
                out.line(f"      {line}")


def _came_back(c: CollectionProbe, resolver: Resolver) -> list[str]:
    if c.error:
        return []
    if not c.others:
        return ["nothing came back instead"]
    return ["came back instead:"] + [f"{i}. {describe(resolver.owner(h), h.file_id)}  score {h.score:.3f}"
                                     for i, h in enumerate(c.others, start=1)]


def explain_probe(settings: Settings, services: Services, doc: CrmDocument, out: Lines) -> None:
    """Run the findability probe for ``docsync explain`` and print it; problems become output lines."""
    top = settings.verify.top
    try:
        with preview_service(settings) as previews:
            result = probe_document(settings, services, doc, previews, top)
        print_probe(result, Resolver(settings, services), out, top)
    except DocsyncError as exc:  # explain shows problems instead of failing: the rest is still worth seeing
        out.line(f"Findability: cannot probe: {exc}", style="red")
