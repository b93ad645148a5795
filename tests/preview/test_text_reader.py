"""``PreviewService.text``: the findability probe's text, read in the sandboxed render worker."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from docsync_cli.errors import PreviewError
from docsync_cli.preview import PreviewService
from tests.corpus import Corpus


def test_pdf_first_page_only(service: PreviewService, corpus: Corpus) -> None:
    text = service.text(corpus / "google-doc-document.pdf", "x.pdf")
    assert text.startswith("Example document") and "Beautiful is better than ugly." in text


def test_docx_and_odt_text_without_libreoffice(corpus: Corpus) -> None:
    with PreviewService(office=False, workers=1) as plain:  # no converter: the XML is read directly
        assert "python-docx was here!" in plain.text(corpus / "python-docx-test.docx", "brief.docx")
        assert "consetetur sadipscing" in plain.text(corpus / "libreoffice-source.odt", "notiz.odt")


def test_text_files_give_their_first_lines(service: PreviewService, tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_text("".join(f"Zeile {i}\n" for i in range(500)), encoding="utf-8")
    text = service.text(path, "note.txt")
    assert text.splitlines()[0] == "Zeile 0" and len(text.splitlines()) == 60


def test_images_have_no_text_and_encrypted_pdfs_say_so(service: PreviewService, corpus: Corpus) -> None:
    assert service.text(corpus / "exif-Portrait_5.jpg", "foto.jpg") == ""
    assert service.text(corpus / "cmyk-image.pdf", "scan.pdf").strip() == ""
    with pytest.raises(PreviewError) as err:
        service.text(corpus / "encrypted-password.pdf", "x.pdf")
    assert err.value.code == "encrypted"


def test_an_office_zip_bomb_is_refused(service: PreviewService, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"<d>" + b" " * (40 * 1024 * 1024) + b"</d>")
    path = tmp_path / "bomb.docx"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(PreviewError) as err:
        service.text(path, "bomb.docx")
    assert err.value.code == "too_large"


@pytest.mark.needs_soffice
def test_other_office_formats_are_read_through_the_warm_libreoffice(service: PreviewService, tmp_path: Path) -> None:
    path = tmp_path / "brief.rtf"
    path.write_text(r"{\rtf1\ansi{\fonttbl\f0\fswiss Helvetica;}\f0\pard Mietminderung Schimmelbefall "
                    r"Wohnzimmer\par}", encoding="ascii")
    assert "Mietminderung Schimmelbefall" in service.text(path, "brief.rtf")
