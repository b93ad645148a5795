"""config/messages.py: pydantic's validation errors as sentences (pure; the loader's tests show them end to end)."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from docsync_cli.config.messages import field_at, model_of, range_text, render, sentence, show, suggest


class Inner(BaseModel, extra="forbid"):
    between: Annotated[int, Field(ge=1, le=32)] = 1
    above: Annotated[float, Field(gt=0)] = 1.0
    below: Annotated[float, Field(lt=10)] = 1.0
    plain: str = "x"


class Root(BaseModel, extra="forbid"):
    inner: Inner = Inner()
    items: list[Inner] = []
    flag: bool = False
    required: str


def errors(data: dict[str, Any]) -> list[Any]:
    with pytest.raises(ValidationError) as caught:
        Root.model_validate(data)
    return caught.value.errors(include_url=False)


def say(error: Any, *, source: str | None = "test.toml", secret: bool = False) -> str:
    return sentence(error, Root, source=source, file="/etc/docsync/config.toml", missing_hint="; set X",
                    secret=secret)


def test_locations_are_written_as_the_user_writes_them() -> None:
    assert render(("collections", "links", 0, "field")) == "collections.links[0].field"
    assert render(("state_dir",)) == "state_dir"


def test_fields_are_found_through_nested_and_listed_models() -> None:
    assert model_of(Inner | None) is Inner and model_of(list[Inner]) is Inner and model_of(int) is None
    found = field_at(Root, ("items", 3, "between"))
    assert found is not None and range_text(found) == "must be between 1 and 32"
    assert field_at(Root, ("inner", "nope")) is None
    assert field_at(Root, ("flag", "deeper")) is None


def test_bounds_as_words() -> None:
    assert range_text(Inner.model_fields["above"]) == "must be greater than 0"
    assert range_text(Inner.model_fields["below"]) == "must be less than 10"
    assert range_text(Inner.model_fields["plain"]) is None
    assert range_text(None) is None


def test_values_are_shown_short_and_suggestions_only_when_close() -> None:
    assert show("x" * 200).endswith("...'") and len(show("x" * 200)) <= 80
    assert show("short") == "'short'"
    assert suggest("concurency", {"concurrency": "concurrency"}) == "; did you mean 'concurrency'?"
    assert suggest("zzz", {"concurrency": "concurrency"}) == ""


def test_sentences_name_the_setting_and_its_source() -> None:
    (bad_range,) = errors({"required": "r", "inner": {"between": 99}})
    assert say(bad_range) == "inner.between (from test.toml): must be between 1 and 32"
    (bad_bool,) = errors({"required": "r", "flag": "maybe"})
    assert say(bad_bool) == "flag (from test.toml): must be true or false, got 'maybe'"
    assert say(bad_bool, source=None) == "flag: must be true or false, got 'maybe'"
    (missing,) = errors({})
    assert say(missing) == "required: missing; set X"


def test_a_secret_value_is_never_put_into_a_sentence() -> None:
    (bad,) = errors({"required": "r", "inner": {"between": "hunter2"}})
    assert "hunter2" not in say(bad, secret=True)
    assert say(bad, secret=True) == "inner.between (from test.toml): must be a whole number"


def test_unknown_settings_name_the_file_and_suggest_the_known_one() -> None:
    (extra,) = errors({"required": "r", "inner": {"betwen": 2}})
    assert say(extra) == "unknown setting 'inner.betwen' in test.toml; did you mean 'between'?"
    (top,) = errors({"required": "r", "flagg": True})
    assert say(top, source=None) == "unknown setting 'flagg' in /etc/docsync/config.toml; did you mean 'flag'?"
