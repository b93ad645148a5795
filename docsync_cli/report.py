"""The report commands behind ``docsync status``, ``explain``, ``preview`` and ``check``.

* :func:`collect_status` / :func:`render_status` (:mod:`.report_status`): counts per status and what waits,
  with a fixed number of ``maxSize=1`` requests however many documents there are;
* :func:`explain_document` (here): everything docsync knows about one document, what the next run would do, and
  (:func:`~.report_search.explain_probe`) whether a phrase from its own text finds it;
* :func:`regenerate_preview` (here): render one document's preview again, upload it or write it to a file;
* :func:`run_checks` (:mod:`.report_check`): validate config, keys, fields, collections, tools, state and lock.

``status``, ``explain`` and ``check`` never write to EspoCRM or xAI (explain's probe only searches). Errors are
:class:`~.errors.DocsyncError`
(``cli.py`` turns them into advice and exit codes); nothing printed here contains a secret.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import DocsyncError, LocalEnvironmentError, NotFoundError
from .model import CrmDocument, DateiStatus, LocalRecord
from .plan import why_work
from .report_check import run_checks
from .report_status import (
    LinePrinter,
    collect_status,
    get_document,
    read_local_record,
    render_status,
    report_services,
)
from .services import Services

__all__ = ["collect_status", "explain_document", "regenerate_preview", "render_status", "run_checks"]


# ---------------------------------------------------------------------------------------------- explain


def explain_document(settings: Settings, doc_id: str, console: Any, *, probe: bool = True) -> None:
    """Print what docsync knows about ``doc_id`` and what the next ``docsync sync`` would do with it.

    Shows the document's docsync fields and hashes, the collections it needs and which rule gave each, what xAI
    holds (does the file exist, is it in each collection and in which processing state), this host's local
    record, the last errors (CRM field, local failure, preview), and the next run's decision (``nothing to do``
    or the reason from :func:`~.plan.why_work`). Read-only: only ``GET`` requests, no local writes. Plain lines
    (not tables), so ids are never cut and the output greps well.

    Raises :class:`~.errors.UsageError` when EspoCRM has no such document, and the usual run errors
    (:class:`~.errors.AuthError`, :class:`~.errors.ServiceUnreachable`) when EspoCRM cannot be asked. xAI
    problems are shown in the output instead (the CRM side is still worth seeing).

    With ``probe`` (the default) it also runs the findability probe (:func:`~.report_search.explain_probe`):
    a phrase from the document's own text is searched in each of its collections (one billed search call each).
    """
    out = LinePrinter(console, settings)
    with report_services(settings) as services:
        doc = get_document(services, doc_id)
        local = read_local_record(settings.state_dir, doc.id)
        f = services.espo.attributes
        out.line(f"Document {doc.id} {doc.name!r}", style="bold")
        rows = [
            ("modifiedAt", doc.modified_at or "-"),
            ("file", f"{doc.file_name or '-'} (attachment {doc.file_id})" if doc.file_id else "no file attached"),
            (f["dateiStatus"], doc.datei_status or "(leer)"), (f["xaiSyncStatus"], doc.xai_sync_status or "(leer)"),
            (f["md5"], doc.md5 or "-"), (f["sha"], doc.sha or "-"), (f["xaiSyncedHash"], doc.xai_synced_hash or "-"),
            (f["xaiFileId"], doc.xai_file_id or "-"), (f["xaiCollections"], ", ".join(doc.xai_collections) or "-"),
            (services.espo.preview_attr, doc.preview_id or "-"), (f["xaiSyncError"], doc.xai_sync_error or "-"),
        ]
        if doc.problems:
            rows.append(("problems", "; ".join(doc.problems)))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            out.line(f"  {name:<{width}}  {value}")
        required = _required_collections(settings, services, doc, out)
        _print_xai(services, doc, required, local, out)
        if probe:
            from .report_search import explain_probe

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


def _required_collections(settings: Settings, services: Services, doc: CrmDocument, out: LinePrinter
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
               out: LinePrinter) -> None:
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
    candidates = set(required) | set(doc.xai_collections) | set(local.collections if local else ())
    for collection_id in sorted(candidates):
        try:
            member = services.xai.document(collection_id, file_id)
        except NotFoundError:
            member, state = None, "the collection does not exist"
        except DocsyncError as exc:
            member, state = None, f"cannot ask: {exc}"
        else:
            state = "not a member"
        if member is not None:
            error = str(member.get("error_message") or "")
            state = f"member, {member.get('status') or 'status unknown'}" + (f": {error}" if error else "")
        need = "required" if collection_id in required else "not required (the next run would remove it)"
        out.line(f"  {collection_id}: {state}; {need}")


def _print_local(settings: Settings, doc: CrmDocument, local: LocalRecord | None, out: LinePrinter) -> None:
    from .report_status import open_history

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


# ---------------------------------------------------------------------------------------------- preview


def regenerate_preview(settings: Settings, doc_id: str, out: Path | None) -> str:
    """Render ``doc_id``'s preview again and return a one-line message for the user.

    Downloads the document's file into a private temp file (removed afterwards), renders it with
    :class:`~.preview.PreviewService` (limits from ``settings.preview``). With ``out`` the WebP is written there
    (atomically) and nothing in EspoCRM changes; without ``out`` it is uploaded as an attachment and set as the
    document's preview (``<preview>Id``), and a recorded preview error of the document is forgotten.

    Raises :class:`~.errors.PreviewError` when the document has no file, the file is too large or it cannot be
    rendered (cli prints it, exit 1); :class:`~.errors.UsageError` when EspoCRM has no such document.
    """
    from .findability import downloaded
    from .preview import PreviewLimits, PreviewService

    limits = PreviewLimits(timeout_seconds=settings.preview.timeout_seconds,
                           memory_bytes=settings.preview.memory_mb * 1024 * 1024)
    with report_services(settings) as services:
        doc = get_document(services, doc_id)
        with downloaded(services, doc, settings.xai.max_file_bytes) as path, \
                PreviewService(limits, workers=1, private_root=settings.state_dir / "libreoffice") as service:
            webp = service.render(path, doc.file_name or doc.name)
        if out is not None:
            _write_atomically(out, webp)
            return f"preview of {doc.id} written to {out} ({len(webp)} bytes); EspoCRM unchanged"
        name = f"{Path(doc.file_name or doc.name).stem or 'preview'}.webp"
        attachment_id = services.espo.upload_preview(name, webp)
        services.espo.update(doc.id, {services.espo.preview_attr: attachment_id})
    _forget_preview_error(settings, doc.id)
    return f"preview of {doc.id} uploaded (attachment {attachment_id}) and set on the document"


def _write_atomically(out: Path, data: bytes) -> None:
    target = out.expanduser()
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise LocalEnvironmentError(f"cannot write {target}: {exc.strerror or exc}; EspoCRM unchanged") from None


def _forget_preview_error(settings: Settings, doc_id: str) -> None:
    from .report_status import open_history

    history = open_history(settings.state_dir)
    if history is not None:
        with history:
            history.clear_preview_error(doc_id)
