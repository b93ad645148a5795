"""The one format of the times docsync writes (history, locks, status), its parser, and the log line's form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from docsync_cli.timestamps import (
    espo_time,
    log_timestamp,
    parse_espo_time,
    parse_timestamp,
    timestamp_to_unix,
    unix_to_timestamp,
    utc_timestamp,
)

MOMENT = datetime(2025, 3, 1, 12, 0, 3, tzinfo=UTC)


def test_timestamps_are_utc_with_z() -> None:
    moment = datetime(2025, 3, 1, 13, 0, 3, tzinfo=timezone(timedelta(hours=1)))
    assert utc_timestamp(moment) == "2025-03-01T12:00:03Z"
    assert parse_timestamp("2025-03-01T12:00:03Z") == MOMENT
    assert utc_timestamp().endswith("Z")
    with pytest.raises(ValueError):
        utc_timestamp(datetime(2025, 3, 1))
    with pytest.raises(ValueError):
        parse_timestamp("2025-03-01T12:00:03")


def test_second_precision_drops_the_fraction() -> None:
    assert utc_timestamp(MOMENT.replace(microsecond=999_999)) == "2025-03-01T12:00:03Z"
    assert unix_to_timestamp(MOMENT.timestamp() + 0.75) == "2025-03-01T12:00:03Z"


def test_now_is_in_the_written_format() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    written = parse_timestamp(utc_timestamp())
    assert before <= written <= datetime.now(UTC)
    assert len(utc_timestamp()) == len("2025-03-01T12:00:03Z")


def test_parse_accepts_offsets_and_returns_utc() -> None:
    assert parse_timestamp("2025-03-01T13:00:03+01:00") == MOMENT
    assert parse_timestamp("2025-03-01T12:00:03+00:00").tzinfo == UTC
    with pytest.raises(ValueError):
        parse_timestamp("yesterday")


def test_unix_round_trip() -> None:
    assert unix_to_timestamp(MOMENT.timestamp()) == "2025-03-01T12:00:03Z"
    assert timestamp_to_unix("2025-03-01T12:00:03Z") == MOMENT.timestamp()
    assert timestamp_to_unix(unix_to_timestamp(1_700_000_000)) == 1_700_000_000


def test_log_lines_keep_their_offset_form() -> None:
    assert log_timestamp(MOMENT.timestamp() + 0.5) == "2025-03-01T12:00:03+00:00"


def test_espocrms_own_format_is_utc_without_a_zone() -> None:
    assert espo_time(MOMENT) == "2025-03-01 12:00:03"
    assert espo_time(MOMENT.astimezone(timezone(timedelta(hours=-5)))) == "2025-03-01 12:00:03"
    assert parse_espo_time("2025-03-01 12:00:03") == MOMENT
    with pytest.raises(ValueError):
        espo_time(datetime(2025, 3, 1, 12, 0, 3))  # naive: its zone would be a guess
    with pytest.raises(ValueError):
        parse_espo_time("2025-03-01T12:00:03Z")  # ISO 8601 is docsync's format, not EspoCRM's
