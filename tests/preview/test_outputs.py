"""Real outputs: every corpus file gets a picture that fits 600x800 with the source's aspect ratio,
upright, first page only, and looking like what an independent renderer (poppler) draws."""

from __future__ import annotations

import io
import shutil
import threading
from pathlib import Path

import PIL
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageOps

from docsync_cli.errors import PreviewError
from docsync_cli.preview import PreviewLimits, PreviewService, ToolStatus, render_preview
from tests.corpus import Corpus
from tests.preview.preview_helpers import assert_fits, decode, extrema, is_blank, pixel_diff, poppler_page1

PDFS = [
    "arabic-rotated.pdf", "cmyk-image.pdf", "google-doc-document.pdf", "imagemagick-ccittfax.pdf",
    "libreoffice-writer.pdf", "minimal-document.pdf", "pdflatex-4-pages.pdf", "pdflatex-image.pdf",
]
IMAGES = ["exif-Landscape_1.jpg", "exif-Landscape_3.jpg", "exif-Landscape_6.jpg", "exif-Landscape_8.jpg",
          "exif-Portrait_5.jpg", "python.bmp", "smile.tiff"]
LANDSCAPES = ["exif-Landscape_1.jpg", "exif-Landscape_3.jpg", "exif-Landscape_6.jpg", "exif-Landscape_8.jpg"]


def page1_ratio(pdf: Path) -> float:
    doc = pdfium.PdfDocument(pdf)
    try:
        width, height = doc[0].get_size()
    finally:
        doc.close()
    return float(width / height)


def upright_ratio(path: Path) -> float:
    with Image.open(path) as img:
        upright = ImageOps.exif_transpose(img)
        return upright.width / upright.height


@pytest.mark.parametrize("name", PDFS)
def test_pdf_fits_and_keeps_aspect(service: PreviewService, corpus: Corpus, name: str) -> None:
    img = decode(service.render(corpus / name, name))
    assert_fits(img, page1_ratio(corpus / name))
    assert not is_blank(img)


@pytest.mark.parametrize("name", PDFS)
def test_pdf_looks_like_poppler(service: PreviewService, corpus: Corpus, tmp_path: Path, name: str) -> None:
    reference = poppler_page1(corpus / name, tmp_path)
    if reference is None:
        pytest.skip("pdftoppm (poppler-utils) not installed")
    img = decode(service.render(corpus / name, name))
    assert abs(img.width / img.height - reference.width / reference.height) < 0.03
    assert pixel_diff(img, reference) < 12


def test_rotated_page_is_upright(service: PreviewService, corpus: Corpus, tmp_path: Path) -> None:
    img = decode(service.render(corpus / "arabic-rotated.pdf", "arabic-rotated.pdf"))
    doc = pdfium.PdfDocument(corpus / "arabic-rotated.pdf")
    assert doc[0].get_rotation() in (90, 270)
    doc.close()
    assert img.width > img.height  # the portrait MediaBox shown landscape, as /Rotate says
    reference = poppler_page1(corpus / "arabic-rotated.pdf", tmp_path)
    if reference is not None:
        unrotated = reference.rotate(90, expand=True)
        assert pixel_diff(img, reference) < pixel_diff(img, unrotated.resize(reference.size))


def test_only_the_first_page(service: PreviewService, corpus: Corpus) -> None:
    pdf = corpus / "pdflatex-4-pages.pdf"
    img = decode(service.render(pdf, pdf.name))
    doc = pdfium.PdfDocument(pdf)
    assert len(doc) == 4
    pages = [doc[i].render(scale=1).to_pil().convert("RGB") for i in range(2)]
    doc.close()
    assert pixel_diff(img, pages[0], (96, 128)) < pixel_diff(img, pages[1], (96, 128)) / 2


@pytest.mark.parametrize("name", ["cmyk-image.pdf", "imagemagick-ccittfax.pdf"])
def test_cmyk_and_fax_images_render(service: PreviewService, corpus: Corpus, name: str) -> None:
    img = decode(service.render(corpus / name, name))
    assert not is_blank(img)
    grey = img.convert("L")
    assert extrema(grey)[0] < 60  # real dark ink, not a grey wash


def test_cmyk_keeps_colour(service: PreviewService, corpus: Corpus) -> None:
    img = decode(service.render(corpus / "cmyk-image.pdf", "cmyk-image.pdf"))
    red, green, blue = (extrema(band) for band in img.split())
    assert max(red[1] - green[0], blue[1] - red[0]) > 60


@pytest.mark.parametrize("name", IMAGES)
def test_images_fit_and_keep_aspect(service: PreviewService, corpus: Corpus, name: str) -> None:
    img = decode(service.render(corpus / name, name))
    with Image.open(corpus / name) as src:
        small = max(src.size) <= 600
    assert_fits(img, upright_ratio(corpus / name), fills=not small)


@pytest.mark.parametrize("name", LANDSCAPES)
def test_corpus_exif_upright(service: PreviewService, corpus: Corpus, name: str) -> None:
    reference = decode(service.render(corpus / "exif-Landscape_1.jpg", "exif-Landscape_1.jpg"))
    img = decode(service.render(corpus / name, name))
    assert img.width > img.height
    assert img.size == reference.size
    assert pixel_diff(img, reference) < 10
    assert pixel_diff(img, reference.rotate(180)) > 20  # the check can tell a wrong turn


def test_corpus_portrait_upright(service: PreviewService, corpus: Corpus) -> None:
    img = decode(service.render(corpus / "exif-Portrait_5.jpg", "exif-Portrait_5.jpg"))
    assert img.height > img.width


# What Pillow's exif_transpose does for each orientation; the inverse turns an upright picture into
# the pixels a camera stores with that tag.
_STORE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_all_exif_orientations_upright(service: PreviewService, corpus: Corpus, tmp_path: Path,
                                       orientation: int, fmt: str) -> None:
    with Image.open(corpus / "exif-Landscape_1.jpg") as src:
        upright = src.convert("RGB").resize((900, 600))
    method = _STORE[orientation]
    stored = upright if method is None else upright.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    target = tmp_path / f"photo.{fmt.lower()}"
    stored.save(target, format=fmt, exif=exif.tobytes())
    img = decode(service.render(target, target.name))
    assert img.size == (600, 400)
    assert pixel_diff(img, upright) < 10


def test_jpeg_is_decoded_reduced_and_stays_sharp(service: PreviewService, tmp_path: Path) -> None:
    big = Image.radial_gradient("L").resize((6000, 4000)).convert("RGB")
    target = tmp_path / "camera.jpg"
    big.save(target, quality=80)
    img = decode(service.render(target, "camera.jpg"))
    assert img.size == (600, 400)
    assert pixel_diff(img, big) < 6


def test_cmyk_and_palette_images(service: PreviewService, tmp_path: Path) -> None:
    Image.new("CMYK", (300, 200), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    img = decode(service.render(tmp_path / "cmyk.jpg", "cmyk.jpg"))
    r, g, b = img.getpixel((10, 10))  # type: ignore[misc]
    assert r > 200 and g < 60 and b < 60  # red, not inverted
    pal = Image.new("RGBA", (200, 100), (0, 0, 0, 0))
    pal.paste((0, 0, 255, 255), (0, 0, 100, 100))
    pal.convert("P").save(tmp_path / "p.gif", transparency=0)
    img = decode(service.render(tmp_path / "p.gif", "p.gif"))
    assert img.getpixel((190, 50)) == (255, 255, 255)  # transparency on white


def test_png_named_jpg_and_pdf_named_docx(service: PreviewService, corpus: Corpus, tmp_path: Path) -> None:
    Image.new("RGB", (300, 150), "green").save(tmp_path / "logo.jpg", format="PNG")
    img = decode(service.render(tmp_path / "logo.jpg", "logo.jpg"))
    assert img.size == (300, 150)
    shutil.copy(corpus / "pdflatex-4-pages.pdf", tmp_path / "contract.docx")
    as_docx = decode(service.render(tmp_path / "contract.docx", "contract.docx"))
    as_pdf = decode(service.render(corpus / "pdflatex-4-pages.pdf", "x.pdf"))
    assert pixel_diff(as_docx, as_pdf) < 1


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", "Meeting notes\n" + "\n".join(f"line {i}" for i in range(100))),
        ("README.md", "# Title\n\n* point one\n* point two\n"),
        ("table.csv", "name;amount\nMüller;12,50\nŞahin;7\n"),
    ],
)
def test_text_page(service: PreviewService, tmp_path: Path, name: str, content: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    img = decode(service.render(tmp_path / name, name))
    assert img.size == (600, 800)
    assert not is_blank(img)


def test_text_first_lines_only(service: PreviewService, tmp_path: Path) -> None:
    short = "\n".join(f"line {i}" for i in range(40))
    (tmp_path / "a.txt").write_text(short)
    (tmp_path / "b.txt").write_text(short + "\n" + "\n".join("X" * 80 for _ in range(500)))
    a = decode(service.render(tmp_path / "a.txt", "a.txt"))
    b = decode(service.render(tmp_path / "b.txt", "b.txt"))
    assert pixel_diff(a, b, (150, 200)) < 0.5


@pytest.mark.parametrize(("name", "label"), [("archive.zip", "ZIP"), ("setup.exe", "EXE"), ("blob", "FILE")])
def test_icon_for_anything_else(service: PreviewService, tmp_path: Path, name: str, label: str) -> None:
    (tmp_path / name).write_bytes(b"PK\x05\x06" + bytes(18) if name.endswith("zip") else b"MZ\x90\x00\xff" * 50)
    img = decode(service.render(tmp_path / name, name))
    assert img.size == (600, 800)
    assert not is_blank(img)
    from docsync_cli.preview.icon import icon_label, render_icon

    assert icon_label(name.rsplit(".", 1)[-1] if "." in name else "") == label
    expected = render_icon(label.lower() if label != "FILE" else "", PreviewLimits())
    assert pixel_diff(img, expected) < 2


def test_render_preview_one_shot(corpus: Corpus) -> None:
    img = decode(render_preview(corpus / "minimal-document.pdf", "minimal-document.pdf"))
    assert_fits(img, page1_ratio(corpus / "minimal-document.pdf"))


def test_smaller_limits_are_honoured(corpus: Corpus) -> None:
    limits = PreviewLimits(max_width=200, max_height=200, quality=50)
    with PreviewService(limits, office=False, workers=1) as svc:
        img = decode(svc.render(corpus / "exif-Landscape_6.jpg", "x.jpg"))
        assert img.size == (200, 133)
        pdf = decode(svc.render(corpus / "minimal-document.pdf", "x.pdf"))
        assert max(pdf.size) == 200


def test_concurrent_renders(service: PreviewService, corpus: Corpus) -> None:
    names = ["minimal-document.pdf", "exif-Landscape_3.jpg", "cmyk-image.pdf", "python.bmp"] * 3
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def work(i: int, name: str) -> None:
        try:
            results[i] = service.render(corpus / name, name)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i, n)) for i, n in enumerate(names)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for i, name in enumerate(names):
        assert results[i] == service.render(corpus / name, name)


@pytest.mark.needs_soffice
@pytest.mark.parametrize("name", ["python-docx-test.docx", "having-images.docx", "libreoffice-source.odt"])
def test_office_documents(service: PreviewService, corpus: Corpus, name: str) -> None:
    img = decode(service.render(corpus / name, name))
    assert_fits(img)
    ratio = img.width / img.height
    a4, letter = 210 / 297, 8.5 / 11
    assert min(abs(ratio - a4) / a4, abs(ratio - letter) / letter) <= 0.02
    assert not is_blank(img)


@pytest.mark.needs_soffice
def test_office_by_content_not_name(service: PreviewService, corpus: Corpus, tmp_path: Path) -> None:
    shutil.copy(corpus / "libreoffice-source.odt", tmp_path / "upload.pdf")
    img = decode(service.render(tmp_path / "upload.pdf", "upload.pdf"))
    ref = decode(service.render(corpus / "libreoffice-source.odt", "libreoffice-source.odt"))
    assert pixel_diff(img, ref) < 1


@pytest.mark.needs_soffice
def test_rtf_document(service: PreviewService, tmp_path: Path) -> None:
    rtf = b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}}\\f0\\fs48 Dear client,\\par}"
    (tmp_path / "letter.rtf").write_bytes(rtf)
    img = decode(service.render(tmp_path / "letter.rtf", "letter.rtf"))
    assert not is_blank(img)


@pytest.mark.needs_soffice
def test_office_switched_off(corpus: Corpus) -> None:
    with PreviewService(office=False, workers=1) as svc:
        with pytest.raises(PreviewError) as info:
            svc.render(corpus / "python-docx-test.docx", "a.docx")
        assert info.value.code == "unsupported"
        assert svc.tools_status()[-1] == ToolStatus("libreoffice", False, "disabled")


def test_tools_status(service: PreviewService) -> None:
    status = {tool.name: tool for tool in service.tools_status()}
    assert list(status) == ["pdfium", "pillow", "fonts", "libreoffice"]
    assert status["pdfium"].available and status["pdfium"].detail.startswith("pypdfium2 ")
    assert status["pillow"] == ToolStatus("pillow", True, PIL.__version__)
    assert [name for name, tool in status.items() if not tool.required] == ["fonts"]
    office = status["libreoffice"]  # available: the detail is the soffice found; missing: what to install
    if office.available:
        assert Path(office.detail).name in ("soffice", "libreoffice")
    else:
        assert office.detail.startswith("missing: install ")


def test_webp_quality_default() -> None:
    assert PreviewLimits().quality == 85
    assert (PreviewLimits().max_width, PreviewLimits().max_height) == (600, 800)
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "WEBP")


def test_the_demos_right_to_left_deed_shows_its_text(service: PreviewService, corpus: Corpus) -> None:
    """Issue 22: the demo's "Arabische Urkunde" preview was nearly blank: its file (arabic-rotated.pdf) holds one
    word in a corner of the page. The demo now uses a page of Arabic text; its preview has ink across the text
    area (right-aligned lines of shaped Arabic), not a speck."""
    from docsync_sandbox.seed import FIRM_DOCUMENTS

    source = next(file for name, file, _, _ in FIRM_DOCUMENTS if name == "Arabische Urkunde")
    img = decode(service.render(corpus / source, source)).convert("L")
    width, height = img.size
    text_area = img.crop((0, 0, width, height // 2))  # the deed's text fills the upper half of its page
    ink = sum(text_area.histogram()[:128])  # dark pixels
    assert ink > 0.02 * text_area.width * text_area.height, "the text area is nearly blank"
    box = text_area.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert box is not None and box[2] - box[0] > 0.6 * width  # lines across the page
    right_margin, left_margin = width - box[2], box[0]
    assert right_margin <= left_margin  # right to left: the lines start at the right
