"""Safety at the unit level: the one secret scrubber, printable names, id checks and path escaping, the
installation id, state files that are symlinks, key files others can read, the renderer children's environment."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from docsync_cli import secrets
from docsync_cli.config import load_settings
from docsync_cli.crm.auth import build_http_client as espo_http
from docsync_cli.crm.client import EspoClient
from docsync_cli.errors import ConfigError, LocalEnvironmentError, RejectedError
from docsync_cli.preview.child import child_env
from docsync_cli.state import StateStore, installation_id
from docsync_cli.state.history import History
from docsync_cli.transport.http import RetryPolicy, ServiceClient
from docsync_cli.xai.client import XaiClient, build_http_client, is_service_id, segment

KEY = "xai-" + "Ab3" * 27  # the shape of a real xAI key


# -- the scrubber ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    f"Incorrect API key provided: {KEY}",
    f"Authorization: Bearer {KEY[4:]}",
    "api_key=zz81Qp0x77LmNaaa&next=1",
    '{"secret": "s3cr3t-value-99"}',
])
def test_echoed_keys_are_masked_even_when_not_configured(text: str) -> None:
    scrubbed = secrets.scrub(text)
    assert secrets.REDACTED in scrubbed
    for token in (KEY, KEY[4:], "zz81Qp0x77LmNaaa", "s3cr3t-value-99"):
        assert token not in scrubbed


def test_registered_secrets_are_masked_raw_and_percent_encoded() -> None:
    secrets.register(["espo key/with+odd=chars"])
    assert secrets.scrub("a espo key/with+odd=chars b espo%20key%2Fwith%2Bodd%3Dchars") == "a *** b ***"


def test_ordinary_messages_and_xais_masked_form_stay_readable() -> None:
    for text in ("Incorrect API key provided: xa***yz.", "xai.api_key: must not be empty",
                 "xai-management-key is empty", "collection_3fa85f64/documents/file_1: HTTP 404"):
        assert secrets.scrub(text) == text


def test_log_lines_and_tracebacks_of_any_logger_pass_the_scrubber(caplog: pytest.LogCaptureFixture) -> None:
    from docsync_cli.cli.app import _REDACTOR

    logger = logging.getLogger("stamina")
    logger.addFilter(_REDACTOR)
    try:
        with caplog.at_level(logging.INFO, logger="stamina"):
            try:
                raise ValueError(f"server said Bearer {KEY}")
            except ValueError:
                logger.info("retrying after %s", f"token {KEY}", exc_info=True)
    finally:
        logger.removeFilter(_REDACTOR)
    (record,) = caplog.records
    assert KEY not in record.getMessage() and KEY not in (record.exc_text or "")


def test_printable_drops_control_and_bidi_characters_and_clips() -> None:
    assert secrets.printable("a\x00b\r\nc\u202ed\x1b") == "ab cd"
    assert len(secrets.printable("x" * 10_000)) == 255


def test_history_never_stores_a_key(tmp_path: Path) -> None:
    from docsync_cli.state.history import RunRecord

    history = History(tmp_path)
    history.record(RunRecord(started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:00:01Z",
                             duration_seconds=1.0, command="sync", exit_code=3, counts={}, host="h", pid=1,
                             error=f"xai rejected Bearer {KEY}"))
    history.set_preview_error("d1", f"upload_failed: {KEY}")
    history.close()
    assert KEY.encode() not in b"".join(p.read_bytes() for p in tmp_path.iterdir())


# -- ids in paths --------------------------------------------------------------------------------------------


def test_only_id_shaped_values_become_one_percent_encoded_path_segment() -> None:
    assert is_service_id("collection_3fa85f64-5717-4562-b3fc-2c963f66afa6")
    for hostile in ("c/documents/f?x=", "..", "a b", "", "x" * 200, "c%2Fd", "file_1\n"):
        assert not is_service_id(hostile)
        with pytest.raises(RejectedError):
            segment(hostile)


def test_the_xai_client_refuses_a_hostile_id_before_sending(httpx_mock: HTTPXMock) -> None:
    policy = RetryPolicy(attempts=1)
    files = ServiceClient("xai", build_http_client("https://api.x.example", "k1", 5), retry=policy)
    mgmt = ServiceClient("xai-management", build_http_client("https://mgmt.x.example", "k2", 5), retry=policy)
    with pytest.raises(RejectedError):
        XaiClient(files, mgmt).remove_document("collection_a/documents/file_b?x=", "file_c")
    assert httpx_mock.get_requests() == []


def test_preview_attachment_names_lose_control_characters(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url="https://crm.example/api/v1/Attachment", json={"id": "att1"})
    espo = EspoClient(ServiceClient("espocrm", espo_http("https://crm.example", "k", None, 5)),
                      {"preview": "preview"})
    espo.upload_preview("Akte\r\nX-Evil: 1\x00\u202egpj.webp", b"RIFF")
    request = httpx_mock.get_request()
    assert request is not None
    assert json.loads(request.content)["name"] == "Akte X-Evil: 1gpj.webp"


# -- installation id and state files ---------------------------------------------------------------------------


def test_installation_id_is_made_once_and_the_configured_one_wins(tmp_path: Path) -> None:
    first = installation_id(tmp_path)
    assert installation_id(tmp_path) == first and len(first) == 32
    assert oct((tmp_path / "installation-id").stat().st_mode & 0o777) == "0o600"
    assert StateStore(tmp_path / "s", "kanzlei-prod").installation_id == "kanzlei-prod"


@pytest.mark.parametrize("name", ["state.sqlite3", "history.sqlite3"])
def test_state_files_that_are_symlinks_are_refused_and_their_target_is_untouched(tmp_path: Path,
                                                                                 name: str) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("someone else's file")
    target.chmod(0o644)
    state = tmp_path / "state"
    state.mkdir()
    (state / name).symlink_to(target)
    with pytest.raises((LocalEnvironmentError, OSError)):
        StateStore(state) if name == "state.sqlite3" else History(state)
    assert target.stat().st_mode & 0o777 == 0o644 and target.read_text() == "someone else's file"


def test_a_key_file_readable_by_others_is_refused_like_the_toml_file(tmp_path: Path) -> None:
    key_file = tmp_path / "xai-api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o644)
    env = {"HOME": str(tmp_path), "ESPOCRM_URL": "https://crm.example.com", "ESPOCRM_API_KEY": "k-espo-1",
           "XAI_API_KEY_FILE": str(key_file), "XAI_MANAGEMENT_KEY": "k-mgmt-1", "DOCSYNC_STATE_DIR": str(tmp_path)}
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, env=env)
    assert any("readable by other users" in p and "chmod o-rwx" in p for p in excinfo.value.problems)
    assert KEY not in str(excinfo.value)
    key_file.chmod(0o640)  # docs/scheduling.md: root:docsync 0640
    assert load_settings(None, env=env).xai.api_key.get_secret_value() == KEY


# -- renderer children --------------------------------------------------------------------------------------------


def test_renderer_children_get_no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("XAI_API_KEY", "XAI_MANAGEMENT_KEY", "ESPOCRM_API_KEY", "ESPOCRM_SECRET_KEY", "DOCSYNC_LOCK__URL",
                 "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "secret-value-123")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    env = child_env()
    assert "secret-value-123" not in json.dumps(env)
    assert env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8" and "PYTHONPATH" in env
