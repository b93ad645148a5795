"""What EspoCRM answers, as frozen values, and their lenient parsers (no I/O): GlobalStream notes
(:class:`StreamNote`, contract §10.7), field definitions (:class:`FieldDefinition`), a link's entity, and the list
answers every list request returns. ``crm/client.py`` makes the requests and hands the answers over; nothing outside
``crm/`` reads EspoCRM's JSON. "Contract §n" is EspoCRM contract §n in ``docs/contracts.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docsync_cli.errors import RejectedError


@dataclass(frozen=True)
class StreamNote:
    """One ``GET GlobalStream`` note: its id, its ``number`` (the feed's cursor; None when not an integer) and the
    record it relates to (``relatedType``/``relatedId``; None when not text)."""

    id: str
    number: int | None = None
    related_type: str | None = None
    related_id: str | None = None

    @property
    def document_id(self) -> str | None:
        """The Document the note relates to (linked or unlinked), None when it relates to none."""
        return self.related_id if self.related_type == "Document" else None


def parse_stream_note(record: Mapping[str, Any]) -> StreamNote:
    """A note of a list answer (it has a text ``id``, :func:`list_of` made sure), leniently."""
    number, related_type, related_id = record.get("number"), record.get("relatedType"), record.get("relatedId")
    return StreamNote(id=str(record["id"]),
                      number=number if isinstance(number, int) and not isinstance(number, bool) else None,
                      related_type=related_type if isinstance(related_type, str) else None,
                      related_id=related_id if isinstance(related_id, str) else None)


@dataclass(frozen=True)
class FieldDefinition:
    """One field as ``entityDefs.<Entity>.fields`` defines it: its ``type`` (None when not text) and the whole
    definition as EspoCRM gave it (``definition``), which ``crm.fields.check_fields`` judges."""

    type: str | None = None
    definition: Mapping[str, Any] = field(default_factory=dict)


def parse_field_definition(answer: Any) -> FieldDefinition | None:
    """A field's definition; None when the answer is not one (the field does not exist)."""
    if not isinstance(answer, dict):
        return None
    kind = answer.get("type")
    return FieldDefinition(type=kind if isinstance(kind, str) else None, definition=dict(answer))


def parse_field_definitions(answer: Any) -> dict[str, FieldDefinition]:
    """``entityDefs.<Entity>.fields``: name -> definition, leaving out what is not a definition."""
    if not isinstance(answer, dict):
        return {}
    parsed = {str(name): parse_field_definition(value) for name, value in answer.items()}
    return {name: value for name, value in parsed.items() if value is not None}


def parse_link_entity(answer: Any) -> str | None:
    """``entityDefs.Document.links.<link>``: the entity the link leads to; None when there is no such link."""
    entity = answer.get("entity") if isinstance(answer, dict) else None
    return entity if isinstance(entity, str) else None


def list_of(page: Any, what: str) -> list[dict[str, Any]]:
    """The records of a list answer (``{"list": [...]}``), each with a text ``id``; anything else is rejected."""
    if not isinstance(page, dict) or not isinstance(page.get("list"), list):
        raise RejectedError("espocrm", "GET", what, 200, "answer has no 'list'")
    records = page["list"]
    if not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
        raise RejectedError("espocrm", "GET", what, 200, "a list item without an id")
    return list(records)


__all__ = ["FieldDefinition", "StreamNote", "list_of", "page_ends", "parse_field_definition", "parse_field_definitions",
           "parse_link_entity", "parse_stream_note"]


def page_ends(records: Sequence[Any], total: Any, page_size: int) -> bool:
    """Whether a keyset page (offset 0) is the last one (contract §2.3, §11.2): ``-2`` or an empty page ends;
    ``-1`` means more exist even when the page is shorter than asked; a counted total ends once the page holds
    it; without a total, a short page ends."""
    if not records or total == -2:
        return True
    if total == -1:
        return False
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return len(records) >= total
    return len(records) < page_size
