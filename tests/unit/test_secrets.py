"""secrets.py's URL masking: the printable form of a configured URL and the parts of it that are secret.

(The scrubber itself is exercised in tests/unit/test_safety.py and test_log_redaction.py.)
"""

from __future__ import annotations

import pytest

from docsync_cli.secrets import mask_url, scrub, url_secrets


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
    ("redis://user:secret@host/1", "redis://user:***@host/1"),
    ("rediss://secret@host", "rediss://***@host"),
    ("redis://host:6379/0?password=secret&db=1", "redis://host:6379/0?password=***&db=1"),
    ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
    ("unix://:secret@/run/redis.sock", "unix://:***@/run/redis.sock"),
    ("http://:pw@h", "http://:***@h"),
    ("https://crm.example.com/api/v1", "https://crm.example.com/api/v1"),
])
def test_mask_url(url: str, expected: str) -> None:
    assert mask_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://:s%40cret@host", ["s%40cret", "s@cret"]),
    ("redis://user:pw-123456@host", ["pw-123456"]),
    ("rediss://lonely-user-part@host", ["lonely-user-part"]),
    ("redis://host/0?password=q%2Fpw&db=1", ["q%2Fpw", "q/pw"]),
    ("redis://host:6379/0", []),
    ("redis://[bad", []),
])
def test_url_secrets_are_what_mask_url_hides(url: str, expected: list[str]) -> None:
    assert url_secrets(url) == expected


def test_a_library_error_quoting_the_url_is_scrubbed_with_its_secrets() -> None:
    url = "redis://:hunter2-pw@127.0.0.1:1/0"
    text = f"Error connecting to {url}: password hunter2-pw rejected"
    assert "hunter2-pw" not in scrub(text, url_secrets(url))
