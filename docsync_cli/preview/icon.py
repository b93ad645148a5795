"""The generic file-type icon: a sheet with a folded corner and the extension, so no document is
left without a picture."""

from __future__ import annotations

from PIL import Image, ImageDraw

from docsync_cli.preview.fonts import load_font
from docsync_cli.preview.limits import PreviewLimits, fit_size

_FONT = "DejaVuSans-Bold.ttf"
_INK = (90, 99, 112)
_BAND = (52, 101, 164)


def icon_label(ext: str) -> str:
    label = "".join(ch for ch in ext.upper() if ch.isalnum())[:5]
    return label or "FILE"


def render_icon(ext: str, limits: PreviewLimits) -> Image.Image:
    width, height = fit_size(3, 4, limits)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    mx, my = width // 5, height // 8
    left, top, right, bottom = mx, my, width - mx, height - my
    fold = (right - left) // 4
    outline = [(left, top), (right - fold, top), (right, top + fold), (right, bottom), (left, bottom)]
    draw.polygon(outline, fill=(245, 246, 248), outline=_INK, width=max(2, width // 120))
    draw.polygon([(right - fold, top), (right - fold, top + fold), (right, top + fold)],
                 fill=(220, 223, 228), outline=_INK, width=max(2, width // 120))
    label = icon_label(ext)
    band_h = (bottom - top) // 5
    band_top = top + (bottom - top) // 2
    draw.rectangle((left - mx // 3, band_top, right + mx // 3, band_top + band_h), fill=_BAND)
    size = band_h * 7 // 10
    font = load_font(_FONT, max(8, size))
    while size > 8 and draw.textlength(label, font=font) > (right - left):
        size -= 2
        font = load_font(_FONT, size)
    draw.text(((left + right) // 2, band_top + band_h // 2), label, fill="white", font=font, anchor="mm")
    return page
