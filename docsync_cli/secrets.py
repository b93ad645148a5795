"""The one secret scrubber: every text docsync writes (error messages, CRM fields, run history, status and
explain output, log lines, third-party loggers through docsync's log handler) passes :func:`scrub` first.

It masks

* the configured secrets (the four keys and a Redis password), raw and percent-encoded, once
  :func:`register` was told them (``config.load_settings`` does that), plus any ``extra`` values a caller knows;
* anything that looks like a key a server echoed back: ``xai-…`` tokens, ``Bearer …``/``Basic …`` credentials,
  ``api_key=…``/``"secret": "…"``-style pairs. xAI's own masked form (``xa***yz``) is left as it is.

Also :func:`printable`: untrusted names (CRM document names, file names) without control characters, bidi
overrides or absurd lengths, for printing and for names docsync writes.
"""

from __future__ import annotations

import re
import threading
import unicodedata
import urllib.parse
from collections.abc import Iterable

REDACTED = "***"

_lock = threading.Lock()
_known: list[str] = []  # registered secrets and their variants, longest first

# Shapes of echoed keys. Each keeps a short, harmless prefix so the message stays readable.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\b(xai-)[A-Za-z0-9]{20,}"), r"\1" + REDACTED),  # xAI keys: "xai-" + ~80 alphanumerics
    (re.compile(r"(?i)\b(bearer)(\s+)(?!\*\*\*)[A-Za-z0-9._~+/=\-]{6,}"), r"\1\2" + REDACTED),
    (re.compile(r"(?i)\b((?:x-)?api[_-]?key|secret[_-]?key|management[_-]?key|password|passwd|secret|authorization)"
                r"(\"?'?\s*[:=]\s*\"?'?)(?=[^\s\"',;&]*\d)[^\s\"',;&*]{8,}"), r"\1\2" + REDACTED),
)


def variants(values: Iterable[str]) -> list[str]:
    """The values and their percent-encoded forms, longest first, without duplicates or empties."""
    out: set[str] = set()
    for value in values:
        if value:
            out.add(value)
            out.add(urllib.parse.quote(value, safe=""))
    return sorted(out, key=lambda v: (-len(v), v))


_MIN_REGISTERED = 8  # shorter values would mask ordinary words everywhere; callers pass those as ``extra``


def register(values: Iterable[str]) -> None:
    """Add secrets every later :func:`scrub` masks (idempotent; secrets are never forgotten in a process).
    Values shorter than 8 characters are not registered globally (``config.redact`` still masks them)."""
    with _lock:
        merged = variants([*_known, *(v for v in values if len(v) >= _MIN_REGISTERED)])
        _known[:] = merged


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every registered secret, every ``extra`` value and every echoed-key shape masked."""
    if not text:
        return text
    with _lock:
        known = list(_known)
    for value in variants(extra) + known:
        if value in text:
            text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_CONTROL_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str | None, limit: int = 255) -> str:
    """One line of ``text`` safe to print or to use as a name: control characters, NUL, bidi overrides
    (U+202E …) and other format characters dropped, whitespace runs collapsed, at most ``limit`` characters."""
    if not text:
        return ""
    kept = "".join(" " if ch in "\t\r\n\v\f" else ch for ch in text
                   if ch in "\t\r\n\v\f" or unicodedata.category(ch) not in _CONTROL_CATEGORIES)
    cleaned = " ".join(kept.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
