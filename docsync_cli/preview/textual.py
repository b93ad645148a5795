"""The text at the start of a document, for the findability probe (:mod:`docsync_cli.reports.findability`).

Runs inside the sandboxed render worker (:mod:`.worker`, request ``{"op": "text", ...}``), like rendering: the
file is untrusted CRM content. What is read:

* PDF: the text of the first page (PDFium);
* DOCX/XLSX/PPTX and ODT/ODS/ODP: the text of the document's XML (zip + XML, no LibreOffice), up to
  ``MAX_CHARS``; other office formats are converted to a one-page PDF by the warm LibreOffice first (the
  service does that) and read as PDF;
* text: the first ``MAX_LINES`` lines;
* images and everything else: nothing.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

import pypdfium2 as pdfium

from docsync_cli.errors import PreviewError
from docsync_cli.preview.text import READ_BYTES, decode_text

MAX_CHARS = 20_000
MAX_LINES = 60
_MAX_PART_BYTES = 16 * 1024 * 1024
_FPDF_ERR_PASSWORD = 4
_FPDF_ERR_SECURITY = 6
_PARTS = (re.compile(r"word/document\.xml"), re.compile(r"ppt/slides/slide1\.xml"),
          re.compile(r"xl/sharedStrings\.xml"), re.compile(r"content\.xml"))
_BREAKS = {"p", "h", "br", "tab", "line-break", "tr", "si"}
ZIP_OFFICE_EXTS = frozenset({"docx", "xlsx", "pptx", "odt", "ods", "odp"})


def first_text(kind: str, path: Path) -> str:
    """The text at the start of ``path`` read as ``kind`` (``pdf`` | ``office_xml`` | ``text``)."""
    if kind == "pdf":
        return pdf_first_page(path)
    if kind == "office_xml":
        return office_xml(path)
    if kind == "text":
        with path.open("rb") as handle:
            return "\n".join(decode_text(handle.read(READ_BYTES)).splitlines()[:MAX_LINES])
    raise PreviewError(f"no text reader for kind {kind!r}", "unsupported")


def pdf_first_page(path: Path) -> str:
    try:
        doc = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as err:
        if getattr(err, "err_code", None) in (_FPDF_ERR_PASSWORD, _FPDF_ERR_SECURITY):
            raise PreviewError("the PDF is password-protected", "encrypted") from err
        raise PreviewError(f"PDFium cannot open the file: {err}", "corrupt") from err
    try:
        if len(doc) < 1:
            return ""
        page = doc[0]
        try:
            textpage = page.get_textpage()
            try:
                return str(textpage.get_text_bounded())[:MAX_CHARS]
            finally:
                textpage.close()
        finally:
            page.close()
    finally:
        doc.close()


def office_xml(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if any(p.fullmatch(n) for p in _PARTS)]
            for name in names:
                if archive.getinfo(name).file_size > _MAX_PART_BYTES:
                    raise PreviewError(f"{name} is larger than {_MAX_PART_BYTES >> 20} MB", "too_large")
                with archive.open(name) as handle:
                    raw = handle.read(_MAX_PART_BYTES + 1)
                if len(raw) > _MAX_PART_BYTES:  # a lying size in the zip directory
                    raise PreviewError(f"{name} is larger than {_MAX_PART_BYTES >> 20} MB", "too_large")
                text = _xml_text(raw)
                if text.strip():
                    return text[:MAX_CHARS]
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, ValueError) as err:
        raise PreviewError(f"cannot read the office document: {err}", "corrupt") from err
    return ""


def _xml_text(raw: bytes) -> str:
    try:
        root = ElementTree.fromstring(raw)  # noqa: S314 - the stdlib parser does not fetch external entities
    except ElementTree.ParseError as err:
        raise PreviewError(f"the office document's XML is broken: {err}", "corrupt") from err
    out: list[str] = []
    for node in root.iter():
        local = node.tag.rsplit("}", 1)[-1] if isinstance(node.tag, str) else ""
        if local in _BREAKS:  # pre-order: the break goes before the paragraph's own text
            out.append("\n" if local != "tab" else " ")
        if local in ("t", "p", "h", "span") and node.text:
            out.append(node.text)
        if local in ("span", "s") and node.tail:
            out.append(node.tail)
        if sum(map(len, out)) > MAX_CHARS:
            break
    return "".join(out)
