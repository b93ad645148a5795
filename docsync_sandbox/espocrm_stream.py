"""Stream notes of the EspoCRM emulator: ``Relate``/``Unrelate`` on audited links and ``GET GlobalStream``
(EspoCRM contract §10.7).

* Relating or unrelating a Document and an Account (from either side, by the link endpoints/helpers or by a PUT
  of ``accountsIds``) writes a Note ``parentType=Account``, ``relatedType=Document``, ``relatedId=<doc id>``.
  Silent saves and bulk relates write none (the emulator's ``silent=True`` helpers).
* ``dedupe_pairs`` reproduces 8.4.0-9.0.x: no second note of the same type for a pair that already has one
  (link → unlink → link leaves no trace). 9.1.0 removed that; the default is the 9.1+ behaviour.
* ``GET GlobalStream`` needs the role scope *GlobalStream* (403 without it); accepts ``maxSize`` (≤ the list cap),
  ``where`` (on Note attributes), ``after`` (``createdAt`` later than a UTC datetime) and ``beforeNumber``; no
  offset; newest first (``number`` descending). ``number`` is the auto-increment cursor.

Decisions where the contract is silent: the 403 has no ``X-Status-Reason``; answers carry ``total`` -1 (more)
or -2 (no more), as streams are not counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from docsync_sandbox.espocrm_where import WhereError, WhereScope, compile_where

NOTE_ATTRIBUTES = {"id": "id", "number": "int", "type": "varchar", "parentType": "varchar", "parentId": "varchar",
                   "relatedType": "varchar", "relatedId": "varchar", "createdAt": "datetime",
                   "createdById": "foreignId", "post": "text", "data": "jsonObject"}


class StreamNotes:
    def __init__(self, new_id: Callable[[], str], now: Callable[[], str]) -> None:
        self._new_id = new_id
        self._now = now
        self.notes: list[dict[str, Any]] = []  # in number order
        self.dedupe_pairs = False  # True = EspoCRM 8.4.0-9.0.x

    def clear(self) -> None:
        self.notes.clear()

    def write(self, kind: str, parent_type: str, parent_id: str, related_type: str, related_id: str,
              user_id: str) -> None:
        if self.dedupe_pairs and any(
                n["type"] == kind and n["parentId"] == parent_id and n["relatedId"] == related_id
                for n in self.notes):
            return
        number = self.notes[-1]["number"] + 1 if self.notes else 1
        self.notes.append({"id": self._new_id(), "number": number, "type": kind, "parentType": parent_type,
                           "parentId": parent_id, "relatedType": related_type, "relatedId": related_id,
                           "createdAt": self._now(), "createdById": user_id, "post": None, "data": {}})

    def query(self, where: Any, after: str | None, before_number: int | None, max_size: int,
              scope: WhereScope) -> dict[str, Any]:
        """Newest first; raises :class:`WhereError` for a bad where clause."""
        predicate = compile_where(where, scope)
        page: list[dict[str, Any]] = []
        more = False
        for note in reversed(self.notes):
            if before_number is not None and note["number"] >= before_number:
                continue
            if after is not None and not str(note["createdAt"]) > after:
                continue
            if not predicate(note):
                continue
            if len(page) == max_size:
                more = True
                break
            page.append(dict(note))
        return {"total": -1 if more else -2, "list": page}


__all__ = ["NOTE_ATTRIBUTES", "StreamNotes", "WhereError"]
