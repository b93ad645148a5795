"""Fakes shared by the unit, e2e and reliability tests."""

from __future__ import annotations

import contextlib


class NullLocks:
    """The engine's lock protocol (``model.DocumentLocks``) for a single in-process run at a time: no other host,
    no other run, so every document lock is granted and no lock is ever lost."""

    def document(self, doc_id: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def check(self) -> None:
        return None
