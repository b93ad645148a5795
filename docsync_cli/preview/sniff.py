"""Content-type detection by magic bytes. The file name is only a hint for what the content claims.

``sniff_kind`` answers one of ``"pdf" | "office" | "image" | "text" | "other"``. A random blob or a
zip of garbage is ``"other"`` whatever its name says; the service then refuses it as ``corrupt`` when
the name claims a format we would otherwise render (a ``.docx`` that is no document).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

HEAD_BYTES = 8192

PDF_EXTS = frozenset({"pdf"})
OFFICE_EXTS = frozenset({"docx", "doc", "odt", "rtf", "xlsx", "xls", "ods", "pptx", "ppt", "odp"})
IMAGE_EXTS = frozenset({"jpg", "jpeg", "jpe", "png", "gif", "tif", "tiff", "bmp", "webp"})
#: Names that promise content we render: if the bytes say otherwise the file is corrupt.
CLAIMED_EXTS = PDF_EXTS | OFFICE_EXTS | IMAGE_EXTS

_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",  # TIFF little endian
    b"MM\x00*",  # TIFF big endian
    b"BM",  # BMP
)
_ODF_EXT = {
    "application/vnd.oasis.opendocument.text": "odt",
    "application/vnd.oasis.opendocument.spreadsheet": "ods",
    "application/vnd.oasis.opendocument.presentation": "odp",
    "application/vnd.oasis.opendocument.graphics": "odg",
    "application/vnd.oasis.opendocument.text-template": "ott",
    "application/vnd.oasis.opendocument.spreadsheet-template": "ots",
    "application/vnd.oasis.opendocument.presentation-template": "otp",
}
_OOXML_EXT = (("word/", "docx"), ("xl/", "xlsx"), ("ppt/", "pptx"))


@dataclass(frozen=True)
class Sniffed:
    kind: str  # "pdf" | "office" | "image" | "text" | "other"
    ext: str  # the extension that matches the content ("docx", "png", ...) or the name's, lower case
    empty: bool = False
    encrypted: bool = False  # a password-protected office file (OOXML in OLE2, ODF with encryption)


def extension(filename: str) -> str:
    name = filename.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def sniff_kind(path: Path, filename: str) -> str:
    """``"pdf" | "office" | "image" | "text" | "other"``, decided by the file's bytes."""
    return sniff(path, filename).kind


def sniff(path: Path, filename: str) -> Sniffed:
    name_ext = extension(filename)
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
    if not head:
        return Sniffed("other", name_ext, empty=True)
    if b"%PDF-" in head[:1024]:
        return Sniffed("pdf", "pdf")
    if head.startswith(_IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return Sniffed("image", name_ext if name_ext in IMAGE_EXTS else "img")
    if head.startswith(_OLE2):
        ext = name_ext if name_ext in {"doc", "xls", "ppt"} else "doc"
        return Sniffed("office", ext, encrypted=_ole_encrypted_package(path))
    if head.startswith(b"{\\rtf"):
        return Sniffed("office", "rtf")
    if head.startswith(b"PK\x03\x04"):
        office_ext, encrypted = _zip_office(path)
        return Sniffed("office", office_ext, encrypted=encrypted) if office_ext else Sniffed("other", name_ext)
    if _looks_like_text(head):
        return Sniffed("text", name_ext)
    return Sniffed("other", name_ext)


_ENCRYPTED_OOXML = "EncryptedPackage".encode("utf-16-le")
_OLE_SCAN_BYTES = 32 * 1024 * 1024


def _ole_encrypted_package(path: Path) -> bool:
    """An encrypted OOXML file is an OLE2 container with an ``EncryptedPackage`` stream."""
    with path.open("rb") as fh:
        return _ENCRYPTED_OOXML in fh.read(_OLE_SCAN_BYTES)


def _zip_office(path: Path) -> tuple[str | None, bool]:
    """(``docx``/``xlsx``/``pptx``/``odt``/..., encrypted) for an OOXML or ODF package, else (None, False)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "mimetype" in names:
                if zf.getinfo("mimetype").file_size > 200:
                    return None, False
                mime = zf.read("mimetype").decode("ascii", "replace").strip()
                encrypted = False
                if "META-INF/manifest.xml" in names and zf.getinfo("META-INF/manifest.xml").file_size < 1 << 20:
                    encrypted = b"encryption-data" in zf.read("META-INF/manifest.xml")
                return _ODF_EXT.get(mime), encrypted
            if "[Content_Types].xml" in names:
                for prefix, ext in _OOXML_EXT:
                    if any(n.startswith(prefix) for n in names):
                        return ext, False
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, RuntimeError):
        return None, False
    return None, False


def _looks_like_text(head: bytes) -> bool:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True  # UTF-16 with BOM
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as err:
        if err.start >= len(head) - 4:  # a multi-byte character cut by HEAD_BYTES
            return True
    allowed = sum(1 for b in head if b >= 0x20 or b in b"\t\r\n\f")
    return allowed / len(head) > 0.97 and sum(1 for b in head if b >= 0x80) / len(head) < 0.3
