"""PDF: the first page only, through PDFium (pypdfium2), at a scale that fits the preview box.

PDFium honours ``/Rotate`` (``get_size`` is already the rotated size) and decodes CMYK, CCITT fax,
JBIG2 and JPX images itself. The scale is computed from the page size, so a 200x200 inch page is
drawn straight into a 600 px bitmap and never rasterised at full size.
"""

from __future__ import annotations

from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image

from docsync_cli.errors import PreviewError
from docsync_cli.preview.limits import PreviewLimits, fit_size

_FPDF_ERR_PASSWORD = 4
_FPDF_ERR_SECURITY = 6
_MAX_PAGE_POINTS = 14400.0 * 100  # even with /UserUnit nobody means a page wider than 500 m


def render_pdf(path: Path, limits: PreviewLimits) -> Image.Image:
    try:
        doc = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as err:
        code = getattr(err, "err_code", None)
        if code in (_FPDF_ERR_PASSWORD, _FPDF_ERR_SECURITY):
            raise PreviewError("the PDF is password-protected", "encrypted") from err
        raise PreviewError(f"PDFium cannot open the file: {err}", "corrupt") from err
    try:
        if len(doc) < 1:
            raise PreviewError("the PDF has no pages", "corrupt")
        try:
            page = doc[0]
        except pdfium.PdfiumError as err:
            raise PreviewError(f"PDFium cannot load page 1: {err}", "corrupt") from err
        try:
            width, height = page.get_size()
            if not (0 < width <= _MAX_PAGE_POINTS and 0 < height <= _MAX_PAGE_POINTS):
                raise PreviewError(f"page 1 has an absurd size {width:.0f}x{height:.0f} pt", "too_large")
            target_w, target_h = fit_size(width, height, limits)
            scale = min(target_w / width, target_h / height)
            bitmap = page.render(scale=scale, may_draw_forms=True, fill_color=(255, 255, 255, 255))
            try:
                image: Image.Image = bitmap.to_pil().convert("RGB")
            finally:
                bitmap.close()
        finally:
            page.close()
    finally:
        doc.close()
    if image.size != (target_w, target_h):
        # PDFium rounds the bitmap size itself: a pixel or two off, bring it to the exact box size.
        image = image.resize((target_w, target_h), Image.Resampling.BILINEAR)
    return image
