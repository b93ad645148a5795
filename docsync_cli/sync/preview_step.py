"""A document's preview during its reconcile: rendered in a pool of its own right after the download, so the
rendering (CPU) overlaps the upload and indexing (network), then uploaded to EspoCRM. Records in
``DocResult.preview`` what became of it; a failure never fails the document."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from docsync_cli.crm.client import EspoClient
from docsync_cli.errors import AmbiguousWriteError, PreviewError, RejectedError, TransientHttpError
from docsync_cli.model import (
    Content,
    CrmDocument,
    DocResult,
    DocumentLocks,
    LocalRecord,
    Preview,
    Previewer,
    PreviewFailure,
)

log = logging.getLogger("docsync.engine")


class Rendering:
    """Thread-safe: the pool is made on first use and shut down by :meth:`close`."""

    def __init__(self, previews: Previewer | None, espo: EspoClient, locks: DocumentLocks, workers: int) -> None:
        self.previews = previews
        self.espo = espo
        self.locks = locks
        self.workers = max(2, workers)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def start(self, doc: CrmDocument, content: Content, path: Path, local: LocalRecord | None,
              result: DocResult) -> Future[bytes] | None:
        """Start rendering ``path``. None when no preview is needed."""
        if self.previews is None:
            result.preview = Preview.OFF
            return None
        if doc.preview_id and local is not None and local.preview_sha == content.sha256:
            result.preview = Preview.UNCHANGED
            return None
        if local is not None and local.preview_failed == content.sha256:
            result.preview = Preview.KNOWN_FAILURE  # retried when the file changes, or with `docsync preview`
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="render")
        return self._pool.submit(self.previews.render, path, doc.file_name or doc.name)

    def finish(self, doc: CrmDocument, rendering: Future[bytes] | None, result: DocResult) -> str | None:
        """Wait for the rendering and upload the WebP: the attachment id, or None (no preview, or it failed)."""
        if rendering is None:
            return None
        try:
            webp = rendering.result()
            self.locks.check()
            preview_id = self.espo.upload_preview(f"{Path(doc.file_name or doc.name).stem or 'preview'}.webp", webp)
        except PreviewError as exc:
            result.preview, result.preview_failure = f"{exc.code}: {exc}", PreviewFailure.RENDER
            log.warning("%s preview failed: %s", doc.id, result.preview)
            return None
        except (RejectedError, TransientHttpError, AmbiguousWriteError) as exc:
            result.preview, result.preview_failure = f"upload_failed: {exc}", PreviewFailure.UPLOAD
            log.warning("%s preview upload failed: %s", doc.id, exc)
            return None
        result.preview = Preview.WRITTEN
        return preview_id

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None
