"""Content decides the renderer, the name does not."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from docsync_cli.preview import sniff_kind
from docsync_cli.preview.sniff import sniff
from tests.corpus import Corpus


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("minimal-document.pdf", "pdf"),
        ("cmyk-image.pdf", "pdf"),
        ("python-docx-test.docx", "office"),
        ("having-images.docx", "office"),
        ("libreoffice-source.odt", "office"),
        ("exif-Landscape_6.jpg", "image"),
        ("python.bmp", "image"),
        ("smile.tiff", "image"),
        ("SOURCES.md", "text"),
    ],
)
def test_corpus_kinds(corpus: Corpus, name: str, kind: str) -> None:
    assert sniff_kind(corpus / name, name) == kind


@pytest.mark.parametrize("wrong_name", ["report.docx", "scan.jpg", "noext", "x.txt"])
def test_pdf_is_pdf_whatever_the_name(corpus: Corpus, tmp_path: Path, wrong_name: str) -> None:
    target = tmp_path / wrong_name
    shutil.copy(corpus / "minimal-document.pdf", target)
    assert sniff_kind(target, wrong_name) == "pdf"


def test_office_extension_comes_from_the_content(corpus: Corpus, tmp_path: Path) -> None:
    target = tmp_path / "upload.bin"
    shutil.copy(corpus / "libreoffice-source.odt", target)
    assert sniff(target, "upload.bin").ext == "odt"
    shutil.copy(corpus / "python-docx-test.docx", target)
    assert sniff(target, "upload.pdf").ext == "docx"


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "TIFF", "BMP", "WEBP", "JPEG"])
def test_images_by_magic(tmp_path: Path, fmt: str) -> None:
    target = tmp_path / "picture.jpg"
    Image.new("RGB", (20, 10), "red").save(target, format=fmt)
    assert sniff_kind(target, "picture.jpg") == "image"


def test_text_and_other(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("name,amount\nMüller,12\n", encoding="utf-8")
    assert sniff_kind(tmp_path / "a", "a.csv") == "text"
    (tmp_path / "b").write_bytes("Grüße\n".encode("utf-16"))
    assert sniff_kind(tmp_path / "b", "b.txt") == "text"
    (tmp_path / "c").write_bytes(os.urandom(4096))
    assert sniff_kind(tmp_path / "c", "c.docx") == "other"
    (tmp_path / "d").write_bytes(b"")
    assert sniff_kind(tmp_path / "d", "d.pdf") == "other"


def test_zip_of_garbage_is_not_office(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", os.urandom(200))
    (tmp_path / "z.docx").write_bytes(buf.getvalue())
    assert sniff_kind(tmp_path / "z.docx", "z.docx") == "other"


def test_rtf_and_ole2_are_office(tmp_path: Path) -> None:
    (tmp_path / "r").write_bytes(b"{\\rtf1\\ansi Hello}")
    assert sniff(tmp_path / "r", "letter.doc").ext == "rtf"
    (tmp_path / "o").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600))
    assert sniff(tmp_path / "o", "sheet.xls") == sniff(tmp_path / "o", "sheet.xls")
    assert sniff(tmp_path / "o", "sheet.xls").ext == "xls"
    assert sniff_kind(tmp_path / "o", "whatever") == "office"
