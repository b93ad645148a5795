"""``ToolStatus``: whether one of the preview tools works here, as ``PreviewService.tools_status()`` reports it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolStatus:
    """One preview tool: ``available`` decides; ``detail`` is only shown (its version when available, else what
    is wrong and how to fix it, e.g. ``missing: install python3-uno``). A tool that is not ``required`` has a
    fallback (the fonts: Pillow's built-in font), so previews work without it, only less well."""

    name: str
    available: bool
    detail: str
    required: bool = True
