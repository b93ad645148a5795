"""What the xAI emulator's pretend "processing" reads out of a file, for search (xAI contract §10, §4).

The real service parses PDF, office formats and "any UTF-8 text" (§4) and answers searches from chunks that carry
a ``page_number`` (§10). This module is the emulator's own, deliberately separate, reading of a file: docsync's
findability probe has its own extraction, so the two can disagree the way docsync and xAI can.

* PDF: the text of every page (PDFium), ``page_number`` 1, 2, ... [I: the contract's example shows 0; the
  emulator numbers PDF pages from 1 and uses 0 for formats without pages];
* DOCX/XLSX/PPTX and ODT/ODS/ODP: the text runs of their XML parts (zip + XML, no LibreOffice), page 0;
* text (``text/*``, JSON, or content that decodes as UTF-8 without control bytes): the text, page 0;
* images and everything else: nothing (a file may be PROCESSED and still have no text to find).

An unreadable file (an encrypted or truncated PDF, a broken zip) yields no text; the status logic in
:mod:`.xai` decides separately whether processing FAILED.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from xml.etree import ElementTree

__all__ = ["extract_pages"]

Pages = list[tuple[int, str]]

_PDFIUM = threading.Lock()  # PDFium is not thread-safe; the emulator serves requests from threads
_MAX_XML_BYTES = 32 * 1024 * 1024  # a zip bomb costs at most this much per part
_OOXML_PARTS = (re.compile(r"word/(document|header\d*|footer\d*|footnotes|endnotes)\.xml"),
                re.compile(r"ppt/slides/slide\d+\.xml"),
                re.compile(r"xl/sharedStrings\.xml"))
_PARAGRAPH_TAGS = {"p", "h", "tr", "row", "si"}  # w:p / text:p / text:h / a:p ... end a line
_TEXT_TAGS = {"t", "span", "p", "h", "s", "tab", "line-break"}
_IMAGE_TYPES = ("image/",)


def extract_pages(filename: str, content_type: str, data: bytes) -> Pages:
    """``[(page_number, text), ...]`` for a file, as described in the module docstring."""
    lower = filename.lower()
    if data.startswith(b"%PDF") or lower.endswith(".pdf"):
        return _pdf_pages(data)
    if data.startswith(b"PK\x03\x04"):
        text = _zip_xml_text(data)
        return [(0, text)] if text.strip() else []
    if content_type.startswith(_IMAGE_TYPES):
        return []
    text = _plain_text(content_type, data)
    return [(0, text)] if text and text.strip() else []


def _pdf_pages(data: bytes) -> Pages:
    import pypdfium2 as pdfium

    pages: Pages = []
    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError:
            return []
        try:
            for index in range(len(pdf)):
                page = pdf[index]
                textpage = page.get_textpage()
                text = textpage.get_text_bounded()
                textpage.close()
                page.close()
                if text.strip():
                    pages.append((index + 1, text.replace("\r\n", "\n")))
        except pdfium.PdfiumError:
            return pages
        finally:
            pdf.close()
    return pages


def _zip_xml_text(data: bytes) -> str:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError):
        return ""
    names = archive.namelist()
    if "content.xml" in names:  # ODF
        parts = ["content.xml"]
    else:
        parts = [name for name in names if any(p.fullmatch(name) for p in _OOXML_PARTS)]
    texts: list[str] = []
    for name in parts:
        try:
            with archive.open(name) as handle:
                raw = handle.read(_MAX_XML_BYTES + 1)
        except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError):  # encrypted, corrupt
            continue
        if len(raw) > _MAX_XML_BYTES:
            continue
        texts.append(_xml_text(raw))
    return "\n".join(t for t in texts if t.strip())


def _xml_text(raw: bytes) -> str:
    try:
        root = ElementTree.fromstring(raw)  # noqa: S314 - the stdlib parser refuses external entities
    except ElementTree.ParseError:
        return ""
    out: list[str] = []

    def walk(node: ElementTree.Element) -> None:
        local = node.tag.rsplit("}", 1)[-1]
        if local in ("s", "tab"):
            out.append(" ")
        elif local == "line-break":
            out.append("\n")
        elif local in _TEXT_TAGS and node.text:
            out.append(node.text)
        for child in node:
            walk(child)
            if child.tail and child.tag.rsplit("}", 1)[-1] in _TEXT_TAGS | {"s", "tab", "line-break"}:
                out.append(child.tail)
        if local in _PARAGRAPH_TAGS:
            out.append("\n")

    walk(root)
    return re.sub(r"\n{3,}", "\n\n", "".join(out))


def _plain_text(content_type: str, data: bytes) -> str:
    textual = content_type.startswith("text/") or content_type in ("application/json", "application/xml")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if not textual:
            return ""
        text = data.decode("utf-8", errors="replace")
    if not textual and re.search(r"[\x00-\x08\x0e-\x1f]", text):
        return ""  # binary content that happens to be valid UTF-8
    return text
