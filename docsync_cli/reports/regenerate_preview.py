"""``docsync preview``: render one document's preview again, and upload it (setting it on the document) or write
it to a file. Unlike the read-only reports it writes: an attachment and the document's preview field in EspoCRM,
and it forgets the document's recorded preview error in this host's run history.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from docsync_cli.config import Settings
from docsync_cli.errors import LocalEnvironmentError
from docsync_cli.reports.shared import get_document, open_history, report_services


def regenerate_preview(settings: Settings, doc_id: str, out: Path | None) -> str:
    """Render ``doc_id``'s preview again and return a one-line message for the user.

    Downloads the document's file into a private temp file (removed afterwards), renders it with
    :class:`~.preview.PreviewService` (limits from ``settings.preview``). With ``out`` the WebP is written there
    (atomically) and nothing in EspoCRM changes; without ``out`` it is uploaded as an attachment and set as the
    document's preview (``<preview>Id``), and a recorded preview error of the document is forgotten.

    Raises :class:`~.errors.PreviewError` when the document has no file, the file is too large or it cannot be
    rendered (cli prints it, exit 1); :class:`~.errors.UsageError` when EspoCRM has no such document.
    """
    from docsync_cli.preview import PreviewService
    from docsync_cli.reports.findability import downloaded

    limits = settings.preview.limits()
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
    history = open_history(settings.state_dir)
    if history is not None:
        with history:
            history.clear_preview_error(doc_id)
