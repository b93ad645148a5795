"""The AIP-160 filter subset that the xAI emulator understands (list files, collections, documents, search).

Grammar (AIP-160 precedence: ``OR`` binds tighter than ``AND``; xAI contract §9 says the same)::

    expr       := conj
    conj       := disj ( "AND" disj )*
    disj       := unary ( "OR" unary )*
    unary      := ( "NOT" | "-" ) unary | "(" expr ")" | comparison
    comparison := FIELD OP VALUE
    OP         := ":" | "=" | "!=" | ">" | ">=" | "<" | "<="
                | ":!" | ":>" | ":>=" | ":<" | ":<=" | ":="     (the forms the xAI docs show)
    VALUE      := "quoted string" | bare-word (up to whitespace or ")") | null

What a comparison means depends on the *kind* of the field, which the caller supplies via ``lookup``:

* ``text``  — ``:`` is a case-insensitive substring match ("fuzzy"/"partial" in the docs), ``=`` is exact;
* ``exact`` — ``:`` and ``=`` are both exact (ids, enums, user ``fields``);
* ``int``   — numeric comparison (``:`` behaves as ``=``);
* ``time``  — Unix seconds compared against an RFC 3339 literal.

A ``None`` value means "unset": it only matches ``= null`` (and ``!= <anything but null>``).
The lookup raises :class:`FilterError` for a field the listing does not support, which the emulator turns
into a 400. Range syntax (``field:10..20``) is not supported ([I]: an emulator decision, see ``xai.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

__all__ = [
    "And", "Comparison", "FieldValue", "FilterError", "Kind", "Node", "Not", "Or",
    "evaluate", "field_names", "parse",
]

Kind = Literal["text", "exact", "int", "time"]
FieldValue = tuple[Kind, "str | int | float | None"]


class FilterError(ValueError):
    """The filter string cannot be parsed, or names a field the listing does not support."""


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str  # one of: has, eq, ne, gt, ge, lt, le
    value: str | None  # None = the literal ``null``
    negate_has: bool = False  # ``field:!value``


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Comparison | And | Or | Not

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_OPS = [
    (":!", "has", True), (":>=", "ge", False), (":<=", "le", False), (":>", "gt", False), (":<", "lt", False),
    (":=", "eq", False), ("!=", "ne", False), (">=", "ge", False), ("<=", "le", False), (":", "has", False),
    ("=", "eq", False), (">", "gt", False), ("<", "lt", False),
]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> FilterError:
        return FilterError(f"Invalid filter {self.text!r} at offset {self.pos}: {message}")

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def keyword(self, word: str) -> bool:
        self.skip_ws()
        end = self.pos + len(word)
        if self.text[self.pos:end] == word and (end == len(self.text) or not _is_word_char(self.text[end])):
            self.pos = end
            return True
        return False

    def parse(self) -> Node:
        node = self.conj()
        self.skip_ws()
        if self.pos != len(self.text):
            raise self.fail("unexpected trailing text")
        return node

    def conj(self) -> Node:
        items = [self.disj()]
        while self.keyword("AND"):
            items.append(self.disj())
        return items[0] if len(items) == 1 else And(tuple(items))

    def disj(self) -> Node:
        items = [self.unary()]
        while self.keyword("OR"):
            items.append(self.unary())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def unary(self) -> Node:
        self.skip_ws()
        if self.keyword("NOT"):
            return Not(self.unary())
        if self.text.startswith("-", self.pos):
            self.pos += 1
            return Not(self.unary())
        if self.text.startswith("(", self.pos):
            self.pos += 1
            node = self.conj()
            self.skip_ws()
            if not self.text.startswith(")", self.pos):
                raise self.fail("missing ')'")
            self.pos += 1
            return node
        return self.comparison()

    def comparison(self) -> Comparison:
        self.skip_ws()
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a field name")
        field_name = match.group(0)
        self.pos = match.end()
        self.skip_ws()
        found = next((entry for entry in _OPS if self.text.startswith(entry[0], self.pos)), None)
        if found is None:
            raise self.fail(f"expected an operator after {field_name!r}")
        token, op, negate = found
        self.pos += len(token)
        self.skip_ws()
        return Comparison(field_name, op, self.value(), negate)

    def value(self) -> str | None:
        if self.pos >= len(self.text):
            raise self.fail("expected a value")
        if self.text[self.pos] == '"':
            out: list[str] = []
            self.pos += 1
            while self.pos < len(self.text):
                char = self.text[self.pos]
                if char == "\\" and self.pos + 1 < len(self.text):
                    out.append(self.text[self.pos + 1])
                    self.pos += 2
                    continue
                if char == '"':
                    self.pos += 1
                    return "".join(out)
                out.append(char)
                self.pos += 1
            raise self.fail("unterminated string")
        start = self.pos
        while self.pos < len(self.text) and not self.text[self.pos].isspace() and self.text[self.pos] != ")":
            self.pos += 1
        word = self.text[start:self.pos]
        if not word:
            raise self.fail("expected a value")
        return None if word == "null" else word


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def parse(text: str | None) -> Node | None:
    """Parse a filter; ``None`` or a blank string means "match everything"."""
    if text is None or not text.strip():
        return None
    return _Parser(text).parse()


def _as_number(literal: str, kind: Kind) -> float:
    if kind == "int":
        try:
            return float(int(literal))
        except ValueError:
            raise FilterError(f"Expected an integer, got {literal!r}") from None
    try:
        return datetime.fromisoformat(literal.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise FilterError(f"Expected an RFC 3339 timestamp, got {literal!r}") from None


def _compare(cmp: Comparison, kind: Kind, actual: str | int | float | None) -> bool:
    op = "eq" if cmp.op == "has" and kind != "text" else cmp.op
    if cmp.value is None or actual is None:
        if op == "eq" or (op == "has" and cmp.value is None):
            return cmp.value is None and actual is None
        if op == "ne":
            return (cmp.value is None) != (actual is None)
        if op == "has":  # substring test on an unset field
            return False
        if cmp.value is None:
            raise FilterError(f"null cannot be ordered ({cmp.field})")
        return False
    if kind in ("int", "time"):
        left = float(actual)
        right = _as_number(cmp.value, kind)
    else:
        if op == "has":
            return cmp.value.lower() in str(actual).lower()
        if op in ("eq", "ne"):
            return (str(actual) == cmp.value) == (op == "eq")
        left_s, right_s = str(actual), cmp.value
        return {"gt": left_s > right_s, "ge": left_s >= right_s, "lt": left_s < right_s,
                "le": left_s <= right_s}[op]
    return {"eq": left == right, "ne": left != right, "gt": left > right, "ge": left >= right,
            "lt": left < right, "le": left <= right}[op]


def evaluate(node: Node | None, lookup: Callable[[str], FieldValue]) -> bool:
    """Evaluate ``node`` against one item; ``lookup(field)`` returns ``(kind, value)`` or raises."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(evaluate(item, lookup) for item in node.items)
    if isinstance(node, Or):
        return any(evaluate(item, lookup) for item in node.items)
    if isinstance(node, Not):
        return not evaluate(node.item, lookup)
    kind, actual = lookup(node.field)
    result = _compare(node, kind, actual)
    return not result if node.negate_has else result


def field_names(node: Node | None) -> set[str]:
    """Every field a filter mentions (so a listing can reject unknown fields even when it is empty)."""
    if node is None:
        return set()
    if isinstance(node, And | Or):
        return set().union(*(field_names(item) for item in node.items))
    if isinstance(node, Not):
        return field_names(node.item)
    return {node.field}
