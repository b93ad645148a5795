"""Image helpers of the preview tests (a uniquely named module: the test folders are no packages)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import psutil
from PIL import Image, ImageChops, ImageStat


def decode(data: bytes) -> Image.Image:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", "not a WebP"
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.convert("RGB")


def pixel_diff(a: Image.Image, b: Image.Image, size: tuple[int, int] = (48, 48)) -> float:
    """Mean absolute difference (0..255) of two images shrunk to the same small grey picture."""
    small_a = a.convert("L").resize(size, Image.Resampling.BILINEAR)
    small_b = b.convert("L").resize(size, Image.Resampling.BILINEAR)
    return float(ImageStat.Stat(ImageChops.difference(small_a, small_b)).mean[0])


def extrema(band: Image.Image) -> tuple[float, float]:
    """(min, max) of a one-band image (Pillow types getextrema loosely: per band pairs for multi-band images)."""
    low, high = band.getextrema()
    assert isinstance(low, int | float) and isinstance(high, int | float), "not a one-band image"
    return float(low), float(high)


def is_blank(img: Image.Image) -> bool:
    return extrema(img.convert("L"))[0] >= 250


def assert_fits(img: Image.Image, source_ratio: float | None = None, *, fills: bool = True) -> None:
    """Within 600x800, touching the box on one side (``fills``), with the source's aspect ratio."""
    width, height = img.size
    assert 16 <= width <= 600 and 16 <= height <= 800, img.size
    if fills:
        assert width == 600 or height == 800, img.size
    if source_ratio is not None:
        ratio = width / height
        assert abs(ratio - source_ratio) / source_ratio <= 0.02, (ratio, source_ratio)


def poppler_page1(pdf: Path, tmp: Path) -> Image.Image | None:
    """Page 1 as rendered by poppler (pdftoppm), an independent reference; None without poppler."""
    if shutil.which("pdftoppm") is None:
        return None
    out = tmp / "ref"
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-scale-to", "300", "-png", "-singlefile", str(pdf), str(out)],
                   check=True, capture_output=True, timeout=60)
    with Image.open(out.with_suffix(".png")) as img:
        return img.convert("RGB")


def own_children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)
