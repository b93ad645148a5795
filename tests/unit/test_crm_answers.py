"""``docsync_cli.crm.answers``: EspoCRM's answers read leniently into frozen values (EspoCRM contract §10.2
in ``docs/contracts.md``)."""

from __future__ import annotations

from typing import Any

import pytest

from docsync_cli.crm.answers import (
    FieldDefinition,
    list_of,
    parse_field_definition,
    parse_field_definitions,
    parse_link_entity,
)
from docsync_cli.errors import RejectedError


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
