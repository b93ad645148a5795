"""``PreviewService``: the warm, thread-safe entry point (see the package docstring)."""

from __future__ import annotations

import os
import queue
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import PIL
import pypdfium2 as pdfium

from docsync_cli.errors import PreviewError
from docsync_cli.preview.child import RenderWorker
from docsync_cli.preview.fonts import font_path
from docsync_cli.preview.limits import PreviewLimits
from docsync_cli.preview.office import OfficeConverter
from docsync_cli.preview.sniff import CLAIMED_EXTS, sniff
from docsync_cli.preview.textual import ZIP_OFFICE_EXTS
from docsync_cli.preview.tools import ToolStatus

_DEFAULT_LIMITS = PreviewLimits()


class PreviewService:
    """Renders previews in sandboxed children that stay warm for the life of the service.

    ``render`` may be called from several threads: each call borrows one of ``workers`` render
    children (default: up to 2), office conversions share one LibreOffice one at a time.
    """

    def __init__(self, limits: PreviewLimits = _DEFAULT_LIMITS, *, office: bool = True,
                 workers: int | None = None, private_root: Path | None = None) -> None:
        self.limits = limits
        count = workers if workers is not None else min(2, os.cpu_count() or 1)
        self._pool: queue.LifoQueue[RenderWorker] = queue.LifoQueue()
        self._workers = [RenderWorker() for _ in range(max(1, count))]
        for worker in self._workers:
            self._pool.put(worker)
        self._office = OfficeConverter(limits.memory_bytes, private_root) if office else None
        self._closed = False

    def __enter__(self) -> PreviewService:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Stop every child (render workers, LibreOffice) and reap them. Idempotent."""
        self._closed = True
        for worker in self._workers:
            worker.stop()
        if self._office is not None:
            self._office.close()

    def child_pids(self) -> list[int]:
        """Pids of the children alive right now (for diagnostics and the benchmark)."""
        pids = [w.pid for w in self._workers if w.pid is not None]
        return pids + (self._office.pids if self._office is not None else [])

    def tools_status(self) -> tuple[ToolStatus, ...]:
        """The tools previews need, in a fixed order: pdfium, pillow, fonts, libreoffice."""
        fonts = (ToolStatus("fonts", True, "DejaVu", required=False) if font_path("DejaVuSans.ttf") else
                 ToolStatus("fonts", False, "fallback: install fonts-dejavu-core", required=False))
        office = self._office.status() if self._office is not None else ToolStatus("libreoffice", False, "disabled")
        return (ToolStatus("pdfium", True, f"pypdfium2 {pdfium.PYPDFIUM_INFO}, pdfium {pdfium.PDFIUM_INFO}"),
                ToolStatus("pillow", True, PIL.__version__), fonts, office)

    def render(self, source: Path, filename: str) -> bytes:
        """The WebP preview of ``source`` (named ``filename`` in the CRM), or ``PreviewError``."""
        if self._closed:
            raise PreviewError("the preview service is closed", "preview_failed")
        deadline = time.monotonic() + self.limits.timeout_seconds
        try:
            info = os.stat(source)
        except OSError as err:
            raise PreviewError(f"cannot read the file: {err.strerror}", "corrupt") from err
        if not stat.S_ISREG(info.st_mode):
            raise PreviewError("not a regular file", "unsupported")
        if info.st_size == 0:
            raise PreviewError("the file is empty", "corrupt")
        try:
            sniffed = sniff(source, filename)
        except OSError as err:
            raise PreviewError(f"cannot read the file: {err.strerror}", "corrupt") from err
        if sniffed.kind == "other":
            if sniffed.ext in CLAIMED_EXTS:
                raise PreviewError(f"the content is not the .{sniffed.ext} its name claims", "corrupt")
            return self._in_worker({"kind": "icon", "path": str(source), "ext": sniffed.ext}, deadline)
        if sniffed.kind != "office":
            return self._in_worker({"kind": sniffed.kind, "path": str(source), "ext": sniffed.ext}, deadline)
        if sniffed.encrypted:
            raise PreviewError("the document is password-protected", "encrypted")
        if self._office is None:
            raise PreviewError("office previews are switched off", "unsupported")
        with tempfile.TemporaryDirectory(prefix="docsync-preview-") as tmp:
            pdf = self._office.convert(source, sniffed.ext, Path(tmp), deadline)
            return self._in_worker({"kind": "pdf", "path": str(pdf), "ext": "pdf", "office": True}, deadline)

    def text(self, source: Path, filename: str) -> str:
        """The text at the start of ``source`` (:mod:`.textual`), read in a render worker; ``""`` for images
        and other content without text. Raises ``PreviewError`` (encrypted, corrupt, timeout, ...)."""
        if self._closed:
            raise PreviewError("the preview service is closed", "preview_failed")
        deadline = time.monotonic() + self.limits.timeout_seconds
        try:
            sniffed = sniff(source, filename)
        except OSError as err:
            raise PreviewError(f"cannot read the file: {err.strerror}", "corrupt") from err
        request = {"op": "text", "path": str(source), "ext": sniffed.ext}
        if sniffed.kind in ("pdf", "text"):
            return self._in_worker({**request, "kind": sniffed.kind}, deadline).decode("utf-8", "replace")
        if sniffed.kind != "office":
            return ""
        if sniffed.encrypted:
            raise PreviewError("the document is password-protected", "encrypted")
        if sniffed.ext in ZIP_OFFICE_EXTS:
            return self._in_worker({**request, "kind": "office_xml"}, deadline).decode("utf-8", "replace")
        if self._office is None:
            raise PreviewError("office text needs LibreOffice, which is switched off", "unsupported")
        with tempfile.TemporaryDirectory(prefix="docsync-text-") as tmp:
            pdf = self._office.convert(source, sniffed.ext, Path(tmp), deadline)
            return self._in_worker({**request, "kind": "pdf", "path": str(pdf)}, deadline).decode("utf-8", "replace")

    def _in_worker(self, req: dict[str, Any], deadline: float) -> bytes:
        req["limits"] = self.limits.to_dict()
        worker = self._pool.get()
        try:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PreviewError("no time left to render", "timeout")
            return worker.request(req, remaining)
        finally:
            self._pool.put(worker)
