"""Font lookup: DejaVu (Debian's fonts-dejavu-core) when present, else Pillow's built-in font."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))

FontT = ImageFont.FreeTypeFont | ImageFont.ImageFont


def font_path(name: str) -> Path | None:
    for folder in FONT_DIRS:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=16)
def load_font(name: str, size: int) -> FontT:
    path = font_path(name)
    if path is not None:
        try:
            return ImageFont.truetype(str(path), size)
        except OSError:
            pass
    return ImageFont.load_default(size)
