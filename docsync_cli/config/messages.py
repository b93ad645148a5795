"""Validation errors as sentences: pydantic's error dicts become ``<setting> (<where from>): <what is wrong>``.

pydantic is an implementation detail of the settings: its errors are translated here and never shown raw (they
would echo input values, which may be secrets; a secret setting's value is never put into a sentence).

Pure: no I/O. Imports only the standard library and pydantic (never the settings models themselves: the root
model is passed in, so :mod:`docsync_cli.config.model` can use :func:`show` in its validators).
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

Loc = tuple[str | int, ...]


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: how a (non-secret) input value appears in a sentence."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def render(loc: Loc) -> str:
    """A setting's location as the user writes it: ``("collections", "links", 0, "field")`` →
    ``collections.links[0].field``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field typed ``Model``, ``Model | None`` or ``list[Model]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def field_at(root: type[BaseModel], loc: Loc) -> FieldInfo | None:
    """The field of ``root`` at ``loc`` (list indexes skipped), or None if there is none."""
    model: type[BaseModel] | None = root
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = model_of(info.annotation)
    return info


def suggest(word: str, choices: Mapping[str, str]) -> str:
    """``; did you mean 'x'?`` for the closest of ``choices`` (keys compared, values shown), or ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {choices[match[0]]!r}?" if match else ""


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def range_text(info: FieldInfo | None) -> str | None:
    """``must be between 1 and 32`` / ``must be at least 0`` / ... from a field's bounds, or None without any."""
    if info is None:
        return None
    low = high = None
    for item in info.metadata:
        if getattr(item, "ge", None) is not None:
            low = ("ge", item.ge)
        elif getattr(item, "gt", None) is not None:
            low = ("gt", item.gt)
        elif getattr(item, "le", None) is not None:
            high = ("le", item.le)
        elif getattr(item, "lt", None) is not None:
            high = ("lt", item.lt)
    if low and high and low[0] == "ge" and high[0] == "le":
        return f"must be between {_num(low[1])} and {_num(high[1])}"
    parts = []
    if low:
        parts.append(("at least " if low[0] == "ge" else "greater than ") + _num(low[1]))
    if high:
        parts.append(("at most " if high[0] == "le" else "less than ") + _num(high[1]))
    return "must be " + " and ".join(parts) if parts else None


def sentence(error: Mapping[str, Any], root: type[BaseModel], *, source: str | None, file: str,
             missing_hint: str, secret: bool) -> str:
    """One pydantic error of validating ``root`` as a sentence.

    ``source`` is where the value came from (``"/etc/docsync/config.toml"``, ``"XAI_API_URL"``) or None;
    ``file`` the config file named for unknown settings whose source is unknown; ``missing_hint`` what to append
    to ``missing`` (e.g. ``"; set XAI_API_KEY, ..."``); ``secret`` means the value must not be shown.
    """
    loc: Loc = tuple(error["loc"])
    kind: str = error["type"]
    name = render(loc)
    if kind == "extra_forbidden":
        parent = field_at(root, loc[:-1]) if len(loc) > 1 else None
        model = model_of(parent.annotation) if parent else root
        hint = suggest(str(loc[-1]), {f: f for f in model.model_fields} if model else {})
        where = source or file
        return f"unknown setting {name!r} in {where}{hint}"
    if kind == "missing":
        return f"{name}: missing{missing_hint}"
    prefix = f"{name} (from {source})" if source else name
    return f"{prefix}: {_message(root, loc, kind, error, secret)}"


def _message(root: type[BaseModel], loc: Loc, kind: str, error: Mapping[str, Any], secret: bool) -> str:
    value = "" if secret else f", got {show(error.get('input'))}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return range_text(field_at(root, loc)) or str(error["msg"]).lower()
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number{value}"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number{value}"
    if kind == "finite_number":
        return "must be a finite number"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false{value}"
    if kind == "string_type":
        return f"must be text (a quoted string){value}"
    if kind == "literal_error":
        return f"must be {error.get('ctx', {}).get('expected', 'one of the allowed values')}{value}"
    if kind == "list_type":
        return f"must be a list{value}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"must be a table (a [section] in TOML){value}"
    if kind in ("path_type", "path_parsing"):
        return f"must be a file system path{value}"
    if kind == "value_error":
        return str(error["msg"]).removeprefix("Value error, ")
    return str(error["msg"])
