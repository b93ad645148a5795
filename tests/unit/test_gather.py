"""``docsync_cli.sync.gather``' pure pieces: which records say they need work, and the ids of one id range. The
feeds themselves (requests against a CRM) are tested against the emulator (tests/sandbox/test_change_feed_*.py,
tests/e2e/test_change_feeds.py); the decisions they ask (feed window, listing due, link drift) in
test_plan_feeds.py."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from docsync_cli.crm.answers import StreamNote
from docsync_cli.crm.schema import ApiUser
from docsync_cli.errors import AuthError, DocsyncError, HttpError
from docsync_cli.state import StreamFeed
from docsync_cli.sync.deletions import in_range
from docsync_cli.sync.gather import ChangeFeed, Changes

IDS = ["a", "b", "c", "d"]


@pytest.mark.parametrize(("low", "high", "expected"), [
    (None, None, IDS), ("b", None, ["b", "c", "d"]), (None, "c", ["a", "b"]), ("b", "d", ["b", "c"]),
    ("bb", "cc", ["c"]), ("e", None, []), ("c", "c", []),
])
def test_an_id_range_includes_its_low_end_and_excludes_its_high_end(low: str | None, high: str | None,
                                                                    expected: list[str]) -> None:
    assert in_range(IDS, low, high) == expected


# -- what the stream feed stores (docsync status reads it back: tests/unit/test_reports_status.py) ---------------


class StreamOnly:
    """Just enough of EspoClient and StateStore for ChangeFeed._stream: the ACL and one stream answer."""

    def __init__(self, answer: list[StreamNote] | Exception, api_user: ApiUser | None = None) -> None:
        self.answer = answer
        self.api_user = api_user

    def stream_page(self, cursor: int | None, types: Any, parents: Any, **bounds: Any) -> tuple[list[StreamNote], int]:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer, -2

    def meta(self, key: str) -> str | None:
        return None


def stored_stream(fake: StreamOnly) -> str:
    feed = ChangeFeed(fake, None, fake, SimpleNamespace(links=()), lambda: 0.0)  # type: ignore[arg-type]
    changes = Changes()
    feed._stream(changes, listing=True)
    return str(json.loads(json.dumps(changes.feeds))["stream"])  # as the feeds meta value stores it


@pytest.mark.parametrize(("fake", "stored"), [
    (StreamOnly([]), StreamFeed.ACTIVE),
    (StreamOnly([], ApiUser(acl_known=True, disabled_scopes=frozenset({"GlobalStream"}))), StreamFeed.NO_ACCESS),
    (StreamOnly(AuthError("EspoCRM", 403)), StreamFeed.NO_ACCESS),
    (StreamOnly(HttpError("EspoCRM", "GET", "GlobalStream", 403)), StreamFeed.NO_ACCESS),
    (StreamOnly(HttpError("EspoCRM", "GET", "GlobalStream", 500)), "unavailable (500)"),
    (StreamOnly(DocsyncError("EspoCRM timed out")), "unavailable (EspoCRM timed out)"),
])
def test_the_stream_state_is_stored_as_its_stream_feed_value(fake: StreamOnly, stored: str) -> None:
    assert stored_stream(fake) == stored


def test_the_stored_stream_values_stay_those_older_state_files_hold() -> None:
    assert [state.value for state in StreamFeed] == ["active", "no access", "unavailable"]
    assert StreamFeed.UNAVAILABLE.because(502) == "unavailable (502)"
