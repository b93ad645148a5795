"""The times docsync writes: one format, one parser.

Everything docsync records or prints as a moment (the run history's ``started_at``/``finished_at``, a preview
failure's ``updated_at``, a lock holder's ``since``, the status report's ``generated_at`` and feed times) is ISO
8601 UTC with a ``Z`` at second precision, e.g. ``2025-03-01T12:00:03Z``. The JSON log line's ``time`` keeps its
own established form (``2025-03-01T12:00:03+00:00``, :func:`log_timestamp`) so log parsers see no change.

EspoCRM's own format (``2025-03-01 12:00:03``, UTC without a zone: ``modifiedAt``, the change feeds' watermark)
is here too, as :func:`espo_time` and :func:`parse_espo_time`, so the CRM client and the planner write and read it
the same way.

Imports only the standard library.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ESPO_FORMAT = "%Y-%m-%d %H:%M:%S"  # EspoCRM's datetime fields and where values: UTC, no zone


def utc_timestamp(moment: datetime | None = None) -> str:
    """``moment`` (default: now) as ISO 8601 UTC with a ``Z``, second precision: ``2025-03-01T12:00:03Z``.

    Raises ``ValueError`` for a naive datetime (its time zone would be a guess).
    """
    if moment is None:
        moment = datetime.now(UTC)
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    return moment.astimezone(UTC).strftime(FORMAT)


def unix_to_timestamp(seconds: float) -> str:
    """Seconds since the epoch as :func:`utc_timestamp` writes them: ``2025-03-01T12:00:03Z``."""
    return datetime.fromtimestamp(seconds, UTC).strftime(FORMAT)


def parse_timestamp(text: str) -> datetime:
    """The aware UTC datetime of an ISO 8601 timestamp such as ``2025-03-01T12:00:03Z``.

    Raises ``ValueError`` if ``text`` is not ISO 8601 or carries no time zone.
    """
    moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without time zone: {text!r}")
    return moment.astimezone(UTC)


def timestamp_to_unix(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 timestamp (see :func:`parse_timestamp`)."""
    return parse_timestamp(text).timestamp()


def log_timestamp(seconds: float) -> str:
    """A JSON log line's ``time``: ISO 8601 UTC with ``+00:00``, second precision: ``2025-03-01T12:00:03+00:00``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def espo_time(moment: datetime) -> str:
    """An aware ``moment`` in EspoCRM's format: ``2025-03-01 12:00:03`` (UTC, no zone)."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a time zone")
    return moment.astimezone(UTC).strftime(ESPO_FORMAT)


def parse_espo_time(text: str) -> datetime:
    """The aware UTC datetime of an EspoCRM datetime such as ``2025-03-01 12:00:03``; ``ValueError`` otherwise."""
    return datetime.strptime(text, ESPO_FORMAT).replace(tzinfo=UTC)
