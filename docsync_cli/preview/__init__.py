"""Previews: a WebP picture of each document that fits 600x800, keeping the aspect ratio.

Public API::

    PreviewService(limits=PreviewLimits(), *, office=True)   # context manager, thread-safe render()
    PreviewService.tools_status() -> (ToolStatus(name, available, detail), ...)
    render_preview(source, filename, limits)                  # one-shot convenience
    sniff_kind(path, filename) -> "pdf" | "office" | "image" | "text" | "other"

Renderer by content (:mod:`.sniff`, magic bytes; the name only decides the icon's label and whether
a non-matching blob is ``corrupt``): PDF → :mod:`.pdf` (PDFium, page 1 only, scale computed from the
page size); office (OOXML, ODF, OLE2, RTF) → :mod:`.office` (warm LibreOffice → one-page PDF) →
:mod:`.pdf`; images → :mod:`.image` (JPEG ``draft``, EXIF ``exif_transpose``, bomb warning is an
error); text → :mod:`.text`; anything else → :mod:`.icon`.

Process model
-------------
Nothing untrusted is decoded in the calling process. The parent (``PreviewService``) only sniffs the
first 8 KiB of the file. Rendering happens in long-lived **render workers**
(``python -m docsync_cli.preview.worker``, :mod:`.worker`), one per pool slot (up to 2), started on
first use and kept warm for the run. Each worker is a session leader (own process group), limits its
address space with ``RLIMIT_AS = limits.memory_bytes`` and, before each job, its CPU time with
``RLIMIT_CPU``. The parent talks to it over a pipe (JSON request line; JSON header + WebP bytes) and
bounds every read by the document's wall-clock deadline (``timeout_seconds``). On a timeout the
parent SIGKILLs the worker's whole process group and reaps it (:mod:`.sandbox`); on a crash it reaps
it; either way the next request starts a fresh worker. No zombie is left: every child is waited for,
and ``close()``/``__exit__`` ends all of them (stdin EOF, then SIGKILL to the group after a grace).

Office documents go to **one warm LibreOffice** (:mod:`.office`): a small UNO bridge script
(:mod:`.uno_bridge`) run by the Python that has ``uno`` (Debian's ``/usr/bin/python3`` +
python3-uno) starts one headless ``soffice`` (own profile, ``RLIMIT_AS`` ≥ 2 GiB) and converts on
request, first page only. Conversions are serialised; each has the document's deadline; a timeout,
crash or fatal answer kills bridge and soffice together (same process group) and the next document
starts them again.

Output checks
-------------
Every WebP is decoded again in the worker: a real WebP of 16..600 x 16..800 px. A white first page
coming from LibreOffice is ``blank_output`` (LibreOffice "succeeds" with an empty page on input it
did not understand); a white first page of a real PDF is kept, because blank PDF pages exist
(a scanned cover sheet, a form) and the picture then tells the truth.

Errors are ``PreviewError(reason, code)`` with code one of ``encrypted``, ``corrupt``, ``too_large``,
``timeout``, ``unsupported``, ``converter_missing``, ``blank_output``, ``preview_failed``. The sync
engine decides what a failure means (it never fails the sync).
"""

from __future__ import annotations

from pathlib import Path

from docsync_cli.preview.limits import PreviewLimits
from docsync_cli.preview.service import PreviewService
from docsync_cli.preview.sniff import sniff_kind
from docsync_cli.preview.tools import ToolStatus

__all__ = ["PreviewLimits", "PreviewService", "ToolStatus", "render_preview", "sniff_kind"]

_DEFAULT_LIMITS = PreviewLimits()


def render_preview(source: Path, filename: str, limits: PreviewLimits = _DEFAULT_LIMITS) -> bytes:
    """One preview with a short-lived service (starts and stops its children: prefer the service)."""
    with PreviewService(limits, workers=1) as service:
        return service.render(source, filename)
