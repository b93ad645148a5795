"""EspoCRM's two clocks as one run sees them (EspoCRM contract §11.1: ``Date`` is the time, ``X-App-Timestamp`` is
not): the HTTP ``Date`` of its answers, and the ``modifiedAt`` stamps its saves write. They may come from different
machines (a proxy, a container, NTP drift), so the offset between them is measured on every answer that carries both:
docsync's own write-backs (a ``PUT`` answers with the saved record and its ``Date``).

:attr:`ServerClock.started_at` is the ``Date`` of the first answer of the run (the change feeds' watermark: every
record saved later carries a ``modifiedAt`` at or after it, less the offset); :attr:`ServerClock.latest` the newest.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from docsync_cli.timestamps import espo_time, parse_espo_time


def answer_date(headers: Any) -> datetime | None:
    """The HTTP ``Date`` of an answer as an aware UTC datetime; None when absent or unreadable."""
    text = headers.get("date") if headers is not None else None
    if not text:
        return None
    with contextlib.suppress(TypeError, ValueError):
        return parsedate_to_datetime(text).astimezone(UTC)
    return None


class ServerClock:
    """What one client learned of EspoCRM's clocks during a run (thread-safe: write-backs run in workers)."""

    def __init__(self) -> None:
        self.started_at: str | None = None  # the Date of the first answer with one, EspoCRM's format (UTC)
        self.latest: str | None = None  # the Date of the newest answer with one
        self._skews: list[float] = []
        self._lock = threading.Lock()

    def note(self, headers: Any) -> datetime | None:
        """Remember an answer's ``Date``; returns it."""
        moment = answer_date(headers)
        if moment is not None:
            text = espo_time(moment)
            with self._lock:
                self.latest = text
                if self.started_at is None:
                    self.started_at = text
        return moment

    def note_write(self, headers: Any, record: Any) -> None:
        """A save's answer: its ``Date`` against the ``modifiedAt`` the save wrote (seconds the ``Date`` clock is
        ahead; negative: behind). A record without a readable ``modifiedAt`` measures nothing."""
        moment = self.note(headers)
        stamp = record.get("modifiedAt") if isinstance(record, dict) else None
        if moment is None or not isinstance(stamp, str):
            return
        try:
            saved = parse_espo_time(stamp)
        except ValueError:
            return
        with self._lock:
            self._skews.append((moment - saved).total_seconds())

    @property
    def skew(self) -> float | None:
        """The largest offset measured in this run (the one that could hide a save from the feed); None: none."""
        with self._lock:
            return max(self._skews) if self._skews else None


__all__ = ["ServerClock", "answer_date"]
