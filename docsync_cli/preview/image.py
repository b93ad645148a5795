"""Raster images: decoded at reduced size where the codec can (JPEG ``draft``), turned upright from
the EXIF orientation, flattened onto white, then resized to fit. Pillow's bomb warning is an error."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from docsync_cli.errors import PreviewError
from docsync_cli.preview.limits import PreviewLimits, fit_size

_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


def render_image(path: Path, limits: PreviewLimits) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = limits.max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                return _render_open(img, limits)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise PreviewError(f"image too large: {err}", "too_large") from err
        except UnidentifiedImageError as err:
            raise PreviewError("not an image Pillow can read", "corrupt") from err
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as err:
            raise PreviewError(f"cannot decode the image: {err}", "corrupt") from err


def _render_open(img: Image.Image, limits: PreviewLimits) -> Image.Image:
    orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    width, height = img.size
    if orientation in _SWAPPING_ORIENTATIONS:
        upright_w, upright_h = height, width
    else:
        upright_w, upright_h = width, height
    target = fit_size(upright_w, upright_h, limits, upscale=False)
    if img.format == "JPEG":
        # Ask the decoder for the smallest DCT scale that is still at least the target size.
        draft_size = (target[1], target[0]) if orientation in _SWAPPING_ORIENTATIONS else target
        img.draft("RGB" if img.mode not in ("L", "CMYK") else img.mode, draft_size)
    img.seek(0)
    img.load()
    upright = ImageOps.exif_transpose(img)
    flat = _flatten(upright)
    if flat.size != target:
        flat = flat.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return flat


def _flatten(img: Image.Image) -> Image.Image:
    """RGB on white, whatever the mode (P with transparency, LA, RGBA, CMYK, 16-bit grey, float)."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        extrema = img.getextrema()
        lo, hi = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
        span = (hi - lo) or 1.0
        img = img.convert("F").point(lambda v: (v - lo) * 255.0 / span).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    return img.convert("RGB")
