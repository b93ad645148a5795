"""The one secret scrubber: every text docsync writes (error messages, CRM fields, run history, status and
explain output, log lines, third-party loggers through docsync's log handler) passes :func:`scrub` first.

It masks

* the configured secrets (the four keys and a Redis password), raw and percent-encoded, once
  :func:`register` was told them (``config.load_settings`` does that), plus any ``extra`` values a caller knows;
* anything that looks like a key a server echoed back: ``xai-…`` tokens, ``Bearer …``/``Basic …`` credentials,
  ``api_key=…``/``"secret": "…"``-style pairs. xAI's own masked form (``xa***yz``) is left as it is.

:func:`mask_url` is the printable form of a configured URL (its userinfo and ``?password=`` masked) and
:func:`url_secrets` the parts it hides, for scrubbing texts that quote the URL.

Also :func:`printable`: untrusted names (CRM document names, file names) without control characters, bidi
overrides or absurd lengths, for printing and for names docsync writes.
"""

from __future__ import annotations

import contextlib
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


_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^@/?#]*)@")
_PASSWORD_QUERY = re.compile(r"(?i)([?&]password=)[^&#]*")


def mask_url(url: str) -> str:
    """``redis://user:secret@host:6379/0`` → ``redis://user:***@host:6379/0`` (also ``?password=``), for showing a
    configured URL (a lone user part is masked too: people put passwords there)."""

    def userinfo(match: re.Match[str]) -> str:
        user, sep, _password = match.group("userinfo").partition(":")
        # without a colon redis-py reads the part as a user name, but people put passwords there: hide it too
        return f"{match.group('scheme')}{user}:{REDACTED}@" if sep else f"{match.group('scheme')}{REDACTED}@"

    return _PASSWORD_QUERY.sub(r"\1" + REDACTED, _USERINFO.sub(userinfo, url, count=1))


def url_secrets(url: str) -> list[str]:
    """The secret parts of ``url`` that :func:`mask_url` hides (password, lone user part, ``?password=``), raw and
    percent-decoded, longest first: the ``extra`` to :func:`scrub` texts that may quote them (a library's error)."""
    found: list[str] = []
    with contextlib.suppress(ValueError):
        parts = urllib.parse.urlsplit(url)
        for value in (parts.password, parts.username if parts.password is None else None):
            if value:
                found += [value, urllib.parse.unquote(value)]
        for match in re.finditer(r"(?i)[?&]password=([^&#]*)", url):
            if match.group(1):
                found += [match.group(1), urllib.parse.unquote(match.group(1))]
    return sorted({s for s in found if s}, key=len, reverse=True)


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
