"""Plain text, Markdown and CSV: the first lines drawn on a white page with the box's aspect ratio."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from docsync_cli.preview.fonts import load_font
from docsync_cli.preview.limits import PreviewLimits

MAX_LINES = 40
READ_BYTES = 64 * 1024
_MARGIN = 24
_FONT = "DejaVuSansMono.ttf"


def decode_text(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", "replace")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        if err.start >= len(raw) - 4:
            return raw[: err.start].decode("utf-8-sig")
    return raw.decode("cp1252", "replace")


def render_text(path: Path, limits: PreviewLimits) -> Image.Image:
    with path.open("rb") as fh:
        raw = fh.read(READ_BYTES)
    lines = decode_text(raw).expandtabs(4).splitlines()[:MAX_LINES]
    width, height = limits.max_width, limits.max_height
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    line_height = max(8, (height - 2 * _MARGIN) // MAX_LINES)
    font = load_font(_FONT, max(6, int(line_height * 0.8)))
    usable = width - 2 * _MARGIN
    y = _MARGIN
    for line in lines:
        text = "".join(ch if ch.isprintable() else " " for ch in line.rstrip())
        while text and draw.textlength(text, font=font) > usable:
            text = text[: max(1, int(len(text) * usable / draw.textlength(text, font=font))) - 1]
        if text:
            draw.text((_MARGIN, y), text, fill=(30, 30, 30), font=font)
        y += line_height
    draw.rectangle((0, 0, width - 1, height - 1), outline=(200, 200, 200))
    return page
