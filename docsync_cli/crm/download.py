"""Streamed download into a private temp file, hashing MD5 and SHA-256 in the same pass."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from docsync_cli.errors import NotFoundError, PermanentDocumentError
from docsync_cli.model import Content

if TYPE_CHECKING:
    from docsync_cli.crm.client import EspoClient


class HashingWriter:
    """A write-only file wrapper that feeds every byte to MD5 and SHA-256 and counts them.

    ``truncate``/``seek(0)`` start over (the transport rewinds the sink before a retried download)."""

    def __init__(self, raw: IO[bytes], max_bytes: int | None = None) -> None:
        self.raw = raw
        self.max_bytes = max_bytes
        self._reset()

    def _reset(self) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise FileTooLarge(self.size, self.max_bytes)
        self.md5.update(data)
        self.sha256.update(data)
        return self.raw.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def truncate(self, size: int | None = None) -> int:
        self._reset()
        return self.raw.truncate(size)

    def content(self) -> Content:
        return Content(sha256=self.sha256.hexdigest(), md5=self.md5.hexdigest(), size=self.size)


class FileTooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"file exceeds {limit} bytes")


def private_temp_file(directory: Path | None = None, suffix: str = "") -> tuple[Path, IO[bytes]]:
    """A new ``0600`` temp file (mkstemp) in ``directory``; the caller deletes it."""
    fd, name = tempfile.mkstemp(prefix="docsync-", suffix=suffix, dir=directory)
    os.fchmod(fd, 0o600)
    return Path(name), os.fdopen(fd, "w+b")


def download(espo: EspoClient, file_id: str, handle: IO[bytes], max_bytes: int) -> Content:
    """Download an EspoCRM attachment into ``handle``, hashed on the way. A missing, over-size (stopped early) or
    empty file is the document's permanent failure."""
    writer = HashingWriter(handle, max_bytes=max_bytes)
    try:
        espo.download(file_id, writer)  # type: ignore[arg-type]
    except NotFoundError as exc:
        raise PermanentDocumentError(f"the attachment {file_id} does not exist in EspoCRM (404)",
                                     "file_missing") from exc
    except FileTooLarge as exc:
        raise PermanentDocumentError(
            f"the file is larger than xAI's upload limit of {exc.limit:,} bytes; not uploaded", "too_large") from exc
    content = writer.content()
    if content.size == 0:
        raise PermanentDocumentError("the file is empty (0 bytes)", "empty_file")
    return content
