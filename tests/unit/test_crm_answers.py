"""``docsync_cli.crm.answers``: EspoCRM's answers read leniently into frozen values (EspoCRM contract §10.2,
§10.7 in ``docs/contracts.md``)."""

from __future__ import annotations

from typing import Any

import pytest

from docsync_cli.crm.answers import (
    FieldDefinition,
    StreamNote,
    list_of,
    parse_field_definition,
    parse_field_definitions,
    parse_link_entity,
    parse_stream_note,
)
from docsync_cli.errors import RejectedError


def test_a_stream_note_keeps_only_well_typed_values() -> None:
    assert parse_stream_note({"id": "n1", "number": 4, "relatedType": "Document", "relatedId": "d1"}) == \
        StreamNote("n1", 4, "Document", "d1")
    odd = parse_stream_note({"id": "n2", "number": True, "relatedType": 3, "relatedId": ["d1"]})
    assert odd == StreamNote("n2") and odd.document_id is None


def test_a_note_names_a_document_only_when_it_relates_to_one() -> None:
    assert StreamNote("n", 1, "Document", "d1").document_id == "d1"
    assert StreamNote("n", 1, "Account", "a1").document_id is None


@pytest.mark.parametrize(("answer", "entity"), [({"entity": "Account"}, "Account"), ({"entity": 3}, None),
                                                 (None, None), ([], None), ({"entity": ""}, "")])
def test_a_links_entity(answer: Any, entity: str | None) -> None:
    assert parse_link_entity(answer) == entity


def test_field_definitions_leave_out_what_is_not_a_definition() -> None:
    assert parse_field_definition([]) is None
    assert parse_field_definition({"type": 5}) == FieldDefinition(None, {"type": 5})
    assert parse_field_definitions({"a": {"type": "varchar"}, "b": None}) == {
        "a": FieldDefinition("varchar", {"type": "varchar"})}
    assert parse_field_definitions(None) == {}


def test_a_list_answer_needs_a_list_of_records_with_ids() -> None:
    assert list_of({"list": [{"id": "x"}]}, "Document list") == [{"id": "x"}]
    with pytest.raises(RejectedError):
        list_of({"total": 0}, "Document list")
    with pytest.raises(RejectedError):
        list_of({"list": [{"name": "no id"}]}, "Document list")
