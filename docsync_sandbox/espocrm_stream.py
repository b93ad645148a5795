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

* Access (§11.2): only notes of parents the role may read **and** stream are shown, with HTTP 200; the server
  gives up after 50 rounds of filtering and answers a short page with ``total: -2`` (see :meth:`StreamNotes.query`).

Decisions where the contract is silent: the 403 has no ``X-Status-Reason``; answers carry ``total`` -1 (more)
or -2 (no more), as streams are not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
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
              scope: WhereScope, parent_types: Collection[str] = ("Account",),
              access: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """Newest first; raises :class:`WhereError` for a bad where clause.

        As ``Tools/Stream/GlobalRecordService.php`` (9.2.7) does it: only notes whose ``parentType`` is one of
        ``parent_types`` (the types the role may read and stream) are queried; each round fetches ``maxSize + 1``
        notes below the last one seen, skipping parents already refused, and ``access`` filters them (a refused
        parent is not asked again, an allowed one is not re-checked); the loop ends when ``maxSize + 1`` notes
        passed, the notes run out, or after :data:`ITERATION_LIMIT` rounds. Then ``total`` is -1 when more
        than ``maxSize`` passed (the extra one is dropped), else -2, so an early end is a short page with -2.
        """
        predicate = compile_where(where, scope)
        candidates = (note for note in reversed(self.notes)
                      if (before_number is None or note["number"] < before_number)
                      and (after is None or str(note["createdAt"]) > after)
                      and note["parentType"] in parent_types and predicate(note))
        ignore: set[tuple[str, str]] = set()
        allow: set[tuple[str, str]] = set()
        passed: list[dict[str, Any]] = []
        for _round in range(ITERATION_LIMIT):
            batch: list[dict[str, Any]] = []
            for note in candidates:
                if (note["parentType"], note["parentId"]) not in ignore:
                    batch.append(note)
                    if len(batch) == max_size + 1:
                        break
            if not batch:
                break
            for note in batch:
                parent = (note["parentType"], note["parentId"])
                if parent in ignore:
                    continue
                if parent not in allow and access is not None and not access(note):
                    ignore.add(parent)
                    continue
                allow.add(parent)
                passed.append(dict(note))
            if len(passed) >= max_size + 1:
                break
        more = len(passed) > max_size
        return {"total": -1 if more else -2, "list": passed[:max_size]}


ITERATION_LIMIT = 50  # GlobalRecordService::ITERATION_LIMIT


__all__ = ["NOTE_ATTRIBUTES", "StreamNotes", "WhereError"]
