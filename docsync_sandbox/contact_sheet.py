"""One PNG showing every preview the demo made: a grid of thumbnails, each document's name under its picture,
and for a document without a preview a grey card with the reason instead."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


@lru_cache(maxsize=8)
def load_font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu (Debian's fonts-dejavu-core) when present, else Pillow's built-in font."""
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            try:
                return ImageFont.truetype(str(folder / name), size)
            except OSError:
                break
    return ImageFont.load_default(size)


CELL_W, CELL_H = 220, 300  # thumbnail box
LABEL_H, PAD, COLUMNS = 54, 14, 5


@dataclass(frozen=True)
class Tile:
    name: str
    webp: bytes | None  # the preview, or None
    reason: str = ""  # why there is no preview


def render_contact_sheet(tiles: list[Tile], out: Path, title: str = "docsync demo: the previews") -> Path:
    columns = max(1, min(COLUMNS, len(tiles)))
    rows = max(1, -(-len(tiles) // columns))
    head = 44
    width = PAD + columns * (CELL_W + PAD)
    height = head + rows * (CELL_H + LABEL_H + PAD) + PAD
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((PAD, 12), title, fill="black", font=load_font("DejaVuSans-Bold.ttf", 18))
    name_font, reason_font = load_font("DejaVuSans.ttf", 12), load_font("DejaVuSans.ttf", 13)
    for index, tile in enumerate(tiles):
        x = PAD + (index % columns) * (CELL_W + PAD)
        y = head + (index // columns) * (CELL_H + LABEL_H + PAD)
        picture = _decode(tile.webp)
        if picture is not None:
            picture.thumbnail((CELL_W, CELL_H))
            sheet.paste(picture, (x + (CELL_W - picture.width) // 2, y + (CELL_H - picture.height) // 2))
            draw.rectangle((x, y, x + CELL_W - 1, y + CELL_H - 1), outline=(200, 200, 200))
        else:
            draw.rectangle((x, y, x + CELL_W - 1, y + CELL_H - 1), fill=(236, 236, 236), outline=(170, 170, 170))
            draw.text((x + 10, y + 10), "no preview", fill=(150, 30, 30), font=load_font("DejaVuSans-Bold.ttf", 14))
            lines = textwrap.wrap(tile.reason or "unknown reason", width=28)[:12]
            draw.multiline_text((x + 10, y + 34), "\n".join(lines), fill=(60, 60, 60), font=reason_font, spacing=3)
        label = textwrap.wrap(tile.name, width=30)[:3]
        draw.multiline_text((x, y + CELL_H + 4), "\n".join(label), fill="black", font=name_font, spacing=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, "PNG", optimize=True)
    return out


def _decode(webp: bytes | None) -> Image.Image | None:
    if not webp:
        return None
    try:
        with Image.open(io.BytesIO(webp)) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, ValueError):
        return None
