"""EspoCRM list-query evaluation for the emulator: PHP bracket query parsing and ``where`` items.

Follows EspoCRM contract §2.4 (``docs/contracts.md``). Items are validated eagerly (so a bad item fails even when no
record would be visited) and compiled into a predicate over a record's value map.

Emulator decisions ([I]) where the contract and the public source leave the behaviour open:

* SQL ``NULL`` semantics: a comparison with a ``NULL`` attribute is false (``notEquals``, ``notIn``, ``notLike``,
  ``notContains`` do not match ``NULL`` rows); ``not``/``subQueryNotIn`` are row complements (``id NOT IN``), and
  ``arrayNoneOf`` matches empty arrays.
* String comparisons follow MariaDB's ``utf8mb4_unicode_ci`` (:mod:`.espocrm_collation`): case, accents and
  trailing spaces are ignored, punctuation sorts before digits and letters (§11.2).
* A date-only value compared with a datetime attribute means midnight (``YYYY-MM-DD 00:00:00``).
* ``linkedWith`` & co. on a name that is not a relation → 400 ``Not existing relation 'x' in where.``;
  array types on a non-array attribute → 400 ``Bad where item 'x'.``.
* Date helpers (``today``, ``lastXDays``, ``currentMonth``...) use the emulator clock in UTC; fiscal periods equal
  calendar periods (fiscal year starting in January).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from docsync_sandbox.espocrm_collation import collation_key

__all__ = ["Predicate", "WhereError", "WhereScope", "compile_where", "parse_php_query"]

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

ITEM_KEYS = frozenset({"type", "attribute", "field", "value", "dateTime", "timeZone"})
GROUP_TYPES = frozenset({"or", "and", "not", "subQueryIn", "subQueryNotIn"})
NO_ATTRIBUTE_TYPES = GROUP_TYPES | {"any", "none"}
RELATION_TYPES = frozenset({"linkedWith", "notLinkedWith", "linkedWithAll", "isLinked", "isNotLinked"})
ARRAY_TYPES = frozenset({"arrayAnyOf", "arrayNoneOf", "arrayAllOf", "arrayIsEmpty", "arrayIsNotEmpty"})
COMPARE_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "greaterThan": lambda a, b: a > b,
    "after": lambda a, b: a > b,
    "lessThan": lambda a, b: a < b,
    "before": lambda a, b: a < b,
    "greaterThanOrEquals": lambda a, b: a >= b,
    "lessThanOrEquals": lambda a, b: a <= b,
}
LIKE_TYPES: dict[str, tuple[str, str, bool]] = {  # type -> (prefix, suffix, negated)
    "like": ("", "", False),
    "notLike": ("", "", True),
    "contains": ("%", "%", False),
    "notContains": ("%", "%", True),
    "startsWith": ("", "%", False),
    "endsWith": ("%", "", False),
}
DATE_HELPERS = frozenset({
    "today", "past", "future", "lastSevenDays", "lastXDays", "nextXDays", "olderThanXDays", "afterXDays",
    "currentMonth", "lastMonth", "nextMonth", "currentQuarter", "lastQuarter", "currentYear", "lastYear",
    "currentFiscalYear", "lastFiscalYear", "currentFiscalQuarter", "lastFiscalQuarter",
})
NUMBER_TYPES = frozenset({"int", "float", "currency"})
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class WhereError(Exception):
    """A bad list query; the message becomes ``X-Status-Reason`` of a 400."""


@dataclass(frozen=True)
class WhereScope:
    """What the evaluator needs to know about one entity type."""

    attribute_types: Mapping[str, str]  # attribute -> field type (varchar, enum, int, bool, datetime, array...)
    relations: Collection[str]
    linked_ids: Callable[[Record, str], set[str]]
    now: datetime  # UTC


# ---------------------------------------------------------------------------------------------------
# PHP query-string parsing

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def parse_php_query(query: Mapping[str, list[str]]) -> dict[str, Any]:
    """Turn ``where[0][value][]=a`` style keys into nested values, like PHP's ``$_GET``."""
    root: dict[str, Any] = {}
    for key, values in query.items():
        match = _KEY.match(key)
        if match is None:
            continue
        path = [match.group(1), *_SEGMENT.findall(match.group(2))]
        for value in values:
            _assign(root, path, value)
    return {k: _listify(v) for k, v in root.items()}


def _assign(node: dict[str, Any], path: list[str], value: str) -> None:
    for depth, segment in enumerate(path):
        last = depth == len(path) - 1
        key = segment if segment != "" else str(_next_index(node))
        if last:
            node[key] = value
            return
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child


def _next_index(node: dict[str, Any]) -> int:
    numbers = [int(k) for k in node if k.isdigit()]
    return max(numbers) + 1 if numbers else 0


def _listify(value: Any) -> Any:
    """PHP arrays whose keys are all integers become lists (in insertion order), recursively."""
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return list(converted.values())
    return converted


# ---------------------------------------------------------------------------------------------------
# Compilation


def compile_where(raw: Any, scope: WhereScope) -> Predicate:
    """Compile a top-level ``where`` value (items are AND-ed). A non-array value means no filter."""
    if isinstance(raw, dict):
        raw = list(raw.values())
    if not isinstance(raw, list):
        return lambda record: True
    return _all_of([_compile_item(item, scope) for item in raw])


def _all_of(predicates: list[Predicate]) -> Predicate:
    return lambda record: all(p(record) for p in predicates)


def _compile_item(item: Any, scope: WhereScope) -> Predicate:
    if not isinstance(item, dict):
        raise WhereError("Bad where item.")
    for key in item:
        if key not in ITEM_KEYS:
            raise WhereError(f"Unknown parameter '{key}'.")
    kind = item.get("type")
    if not kind or not isinstance(kind, str):
        raise WhereError("No 'type' in where item.")
    attribute = item.get("attribute", item.get("field"))
    value = item.get("value")
    if kind in NO_ATTRIBUTE_TYPES:
        return _compile_group(kind, value, scope)
    if not attribute or not isinstance(attribute, str):
        raise WhereError("No 'attribute' in where item.")
    if kind in RELATION_TYPES:
        return _compile_relation(kind, attribute, value, scope)
    if kind == "inCategory":
        return _compile_relation("linkedWith", attribute, value, scope)
    if not _known_type(kind):
        raise WhereError(f"Unknown where item type '{kind}'.")
    if attribute not in scope.attribute_types:
        raise WhereError(f"Not existing attribute '{attribute}' in where.")
    if _truthy(item.get("dateTime")) and scope.attribute_types[attribute] == "datetime":
        kind, value = _to_utc_item(kind, value, item.get("timeZone"))
    return _compile_attribute(kind, attribute, value, scope)


def _known_type(kind: str) -> bool:
    simple = {"equals", "notEquals", "on", "notOn", "in", "notIn", "isNull", "isNotNull", "ever", "isTrue",
              "isFalse", "between"}
    return kind in simple or kind in COMPARE_OPS or kind in LIKE_TYPES or kind in ARRAY_TYPES or kind in DATE_HELPERS


def _compile_group(kind: str, value: Any, scope: WhereScope) -> Predicate:
    if kind == "any":
        return lambda record: True
    if kind == "none":
        return lambda record: False
    if isinstance(value, dict):
        value = list(value.values()) if all(str(k).isdigit() for k in value) else None
    if not isinstance(value, list):
        raise WhereError(f"Bad where item '{kind}'.")
    children = [_compile_item(child, scope) for child in value]
    if kind == "or":
        return lambda record: any(p(record) for p in children)
    inner = _all_of(children)
    if kind in ("not", "subQueryNotIn"):
        return lambda record: not inner(record)
    return inner


def _compile_relation(kind: str, link: str, value: Any, scope: WhereScope) -> Predicate:
    if link not in scope.relations:
        raise WhereError(f"Not existing relation '{link}' in where.")
    ids = {str(v) for v in _as_list(value)}
    linked = scope.linked_ids
    if kind == "isLinked":
        return lambda record: bool(linked(record, link))
    if kind == "isNotLinked":
        return lambda record: not linked(record, link)
    if kind == "linkedWith":
        return lambda record: bool(linked(record, link) & ids)
    if kind == "notLinkedWith":
        return lambda record: not linked(record, link) & ids
    return lambda record: bool(ids) and ids <= linked(record, link)


def _compile_attribute(kind: str, attribute: str, value: Any, scope: WhereScope) -> Predicate:
    field_type = scope.attribute_types[attribute]
    if kind in ARRAY_TYPES:
        return _compile_array(kind, attribute, value, field_type)
    if kind in LIKE_TYPES:
        return _compile_like(kind, attribute, value)
    if kind in DATE_HELPERS:
        return _compile_date_helper(kind, attribute, value, scope)
    if kind in ("isNull", "isNotNull", "ever"):
        wanted_null = kind == "isNull"
        return lambda record: (record.get(attribute) is None) == wanted_null
    if kind in ("isTrue", "isFalse"):
        wanted = kind == "isTrue"
        return lambda record: record.get(attribute) is not None and bool(record.get(attribute)) == wanted
    if kind in ("in", "notIn"):
        return _compile_in(kind, attribute, value, field_type)
    if kind == "between":
        return _compile_between(attribute, value, field_type)
    if kind in ("equals", "on", "notEquals", "notOn"):
        return _compile_equals(kind in ("equals", "on"), attribute, value, field_type)
    op = COMPARE_OPS[kind]
    bound = _key(_coerce(value, field_type))
    return lambda record: _compare(record.get(attribute), bound, op)


def _compile_equals(positive: bool, attribute: str, value: Any, field_type: str) -> Predicate:
    if value is None:
        return lambda record: (record.get(attribute) is None) == positive
    bound = _key(_coerce(value, field_type))

    def check(record: Record) -> bool:
        current = record.get(attribute)
        if current is None:
            return False
        return bool(_key(current) == bound) == positive

    return check


def _compile_in(kind: str, attribute: str, value: Any, field_type: str) -> Predicate:
    if not isinstance(value, list):
        raise WhereError(f"Bad where item '{kind}'.")
    members = {_key(_coerce(v, field_type)) for v in value}
    positive = kind == "in"

    def check(record: Record) -> bool:
        current = record.get(attribute)
        if current is None:
            return False
        return (_key(current) in members) == positive

    return check


def _compile_between(attribute: str, value: Any, field_type: str) -> Predicate:
    if not isinstance(value, list) or len(value) < 2:
        raise WhereError("Bad where item 'between'.")
    low, high = _key(_coerce(value[0], field_type)), _key(_coerce(value[1], field_type))
    return lambda record: (_compare(record.get(attribute), low, COMPARE_OPS["greaterThanOrEquals"])
                           and _compare(record.get(attribute), high, COMPARE_OPS["lessThanOrEquals"]))


def _compile_like(kind: str, attribute: str, value: Any) -> Predicate:
    prefix, suffix, negated = LIKE_TYPES[kind]
    pattern = _like_regex(f"{prefix}{'' if value is None else value}{suffix}")

    def check(record: Record) -> bool:
        current = record.get(attribute)
        if current is None:
            return False
        return (pattern.fullmatch(str(current)) is not None) != negated

    return check


def _like_regex(pattern: str) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _compile_array(kind: str, attribute: str, value: Any, field_type: str) -> Predicate:
    if field_type not in ("array", "multiEnum", "checklist"):
        raise WhereError(f"Bad where item '{kind}'.")
    wanted = {_key(str(v)) for v in _as_list(value)}

    def items(record: Record) -> set[Any]:
        current = record.get(attribute)
        return {_key(str(v)) for v in current} if isinstance(current, list) else set()

    if kind == "arrayIsEmpty":
        return lambda record: not items(record)
    if kind == "arrayIsNotEmpty":
        return lambda record: bool(items(record))
    if kind == "arrayAnyOf":
        return lambda record: bool(items(record) & wanted)
    if kind == "arrayNoneOf":
        return lambda record: not items(record) & wanted
    return lambda record: bool(wanted) and wanted <= items(record)


# ---------------------------------------------------------------------------------------------------
# Dates


def _compile_date_helper(kind: str, attribute: str, value: Any, scope: WhereScope) -> Predicate:
    if kind in ("past", "future"):
        now = scope.now.strftime(DATETIME_FORMAT)
        is_datetime = scope.attribute_types[attribute] == "datetime"
        today = scope.now.date().isoformat()

        def check(record: Record) -> bool:
            current = record.get(attribute)
            if current is None:
                return False
            mark = now if is_datetime else today
            return str(current) < mark if kind == "past" else str(current) > mark

        return check
    start, end = _date_range(kind, value, scope.now.date())

    def in_range(record: Record) -> bool:
        current = record.get(attribute)
        if current is None:
            return False
        day = str(current)[:10]
        return (start is None or day >= start.isoformat()) and (end is None or day <= end.isoformat())

    return in_range


def _date_range(kind: str, value: Any, today: date) -> tuple[date | None, date | None]:
    days = _int(value)
    day = timedelta(days=1)
    relative: dict[str, tuple[date | None, date | None]] = {
        "today": (today, today),
        "lastSevenDays": (today - 7 * day, today),
        "lastXDays": (today - days * day, today),
        "nextXDays": (today, today + days * day),
        "olderThanXDays": (None, today - (days + 1) * day),
        "afterXDays": (today + (days + 1) * day, None),
    }
    if kind in relative:
        return relative[kind]
    return _period_range(kind, today)


def _period_range(kind: str, today: date) -> tuple[date, date]:
    kind = kind.replace("Fiscal", "")
    if kind.endswith("Year"):
        year = today.year - (1 if kind.startswith("last") else 0)
        return date(year, 1, 1), date(year, 12, 31)
    months = 3 if kind.endswith("Quarter") else 1
    first_month = (today.month - 1) // months * months  # 0-based
    shift = {"current": 0, "last": -months, "next": months}[re.sub(r"(Month|Quarter)$", "", kind)]
    index = today.year * 12 + first_month + shift
    start = date(index // 12, index % 12 + 1, 1)
    end_index = index + months
    end = date(end_index // 12, end_index % 12 + 1, 1) - timedelta(days=1)
    return start, end


def _to_utc_item(kind: str, value: Any, time_zone: Any) -> tuple[str, Any]:
    """``dateTime: true``: interpret values in ``timeZone`` and widen date-only values to whole days."""
    try:
        zone = ZoneInfo(str(time_zone)) if time_zone else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise WhereError(f"Bad time zone '{time_zone}'.") from exc

    def convert(raw: Any, end_of_day: bool) -> str:
        text = str(raw)
        if len(text) <= 10:
            text += " 23:59:59" if end_of_day else " 00:00:00"
        try:
            local = datetime.strptime(text[:19], DATETIME_FORMAT).replace(tzinfo=zone)
        except ValueError as exc:
            raise WhereError("Bad datetime value.") from exc
        return local.astimezone(ZoneInfo("UTC")).strftime(DATETIME_FORMAT)

    short = value is not None and len(str(value)) <= 10
    if kind in ("equals", "on") and short:
        return "between", [convert(value, False), convert(value, True)]
    if kind == "between" and isinstance(value, list) and len(value) >= 2:
        return kind, [convert(value[0], False), convert(value[1], True)]
    if kind in ("after", "greaterThan", "lessThanOrEquals") and value is not None:
        return kind, convert(value, True)
    if kind in COMPARE_OPS and value is not None:
        return kind, convert(value, False)
    return kind, value


# ---------------------------------------------------------------------------------------------------
# Values


def _coerce(value: Any, field_type: str) -> Any:
    """Cast a where value (query strings arrive as strings) to the attribute's type."""
    if value is None or isinstance(value, (list, dict)):
        return value
    if field_type in NUMBER_TYPES:
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)
    if field_type == "bool":
        return _truthy(value)
    text = str(int(value)) if isinstance(value, bool) else str(value)
    if field_type == "datetime" and len(text) == 10:
        text += " 00:00:00"
    return text


def _key(value: Any) -> Any:
    """Comparison key: strings by the ``utf8mb4_unicode_ci`` collation, numbers as floats."""
    if isinstance(value, str):
        return collation_key(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def _compare(current: Any, bound: Any, op: Callable[[Any, Any], bool]) -> bool:
    if current is None or bound is None:
        return False
    left = _key(current)
    try:
        return bool(op(left, bound))
    except TypeError:
        return bool(op(str(left), str(bound)))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
