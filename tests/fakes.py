"""Fakes shared by the unit, e2e and reliability tests."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta


class NullLocks:
    """The engine's lock protocol (``model.DocumentLocks``) for a single in-process run at a time: no other host,
    no other run, so every document lock is granted and no lock is ever lost."""

    def document(self, doc_id: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def check(self) -> None:
        return None


class FakeClock:
    """A wall clock the test moves: the EspoCRM emulator's ``clock`` (``now()`` as an aware datetime)."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
