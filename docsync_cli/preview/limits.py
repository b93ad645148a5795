"""Limits of one preview and the geometry helper every renderer shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

MIN_SIDE = 16  # px: an output side below this is not a sensible preview


@dataclass(frozen=True)
class PreviewLimits:
    max_width: int = 600
    max_height: int = 800
    quality: int = 85
    timeout_seconds: float = 20.0  # per document, wall clock (conversion + rendering)
    memory_bytes: int = 1024 * 1024 * 1024  # RLIMIT_AS of the render child
    max_pixels: int = 50_000_000  # Pillow decompression-bomb threshold (its warning is an error)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreviewLimits:
        return cls(**data)


def fit_size(width: float, height: float, limits: PreviewLimits, *, upscale: bool = True) -> tuple[int, int]:
    """The largest size within ``max_width`` x ``max_height`` with the aspect ratio of ``width:height``.

    With ``upscale=False`` (raster images) a small source keeps its size. Each side is at least
    ``MIN_SIDE`` px (only extreme strips are bent to reach it).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"invalid size {width}x{height}")
    scale = min(limits.max_width / width, limits.max_height / height)
    if not upscale:
        scale = min(scale, 1.0)
    w = max(MIN_SIDE, min(limits.max_width, round(width * scale)))
    h = max(MIN_SIDE, min(limits.max_height, round(height * scale)))
    return w, h
