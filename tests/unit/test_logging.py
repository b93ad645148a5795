"""Every log line, docsync's and third-party libraries', goes through docsync's one handler: format and redaction."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import stamina.instrumentation
from pytest_httpx import HTTPXMock

from docsync_cli.cli import logs
from docsync_cli.config import Settings, load_settings
from docsync_cli.transport.http import RetryPolicy, ServiceClient

CANARY = "xai-CANARY-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(None, env={"ESPOCRM_URL": "http://crm.example", "ESPOCRM_API_KEY": "espo-key-1",
                                    "XAI_API_KEY": CANARY, "XAI_MANAGEMENT_KEY": "mgmt-key-1",
                                    "DOCSYNC_STATE_DIR": str(tmp_path)})


@pytest.fixture
def json_logging(settings: Settings, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """``--log-format json`` (to the captured stderr) with the secrets known; afterwards the setup as it was."""
    root, ours = logging.getLogger(), logging.getLogger("docsync")
    saved = (root.handlers[:], root.level, ours.handlers[:], ours.level, ours.propagate)
    hooks = stamina.instrumentation.get_on_retry_hooks()
    logs.setup(verbose=1, log_format="json")
    logs.install_redaction(settings)
    try:
        yield
    finally:
        logs.REDACTOR.settings = None
        root.handlers[:], root.level = saved[0], saved[1]
        ours.handlers[:], ours.level, ours.propagate = saved[2], saved[3], saved[4]
        stamina.instrumentation.set_on_retry_hooks(hooks)


def json_lines(err: str) -> list[dict[str, str]]:
    lines = [line for line in err.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # a line that is not JSON fails here


def test_a_third_party_logger_is_formatted_and_redacted(json_logging: None,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("stamina").warning("stamina.retry_scheduled caused by %s", CANARY)
    logging.getLogger("redis.connection").error("connection to redis://:%s@host lost", CANARY)
    err = capsys.readouterr().err
    assert CANARY not in err
    records = json_lines(err)
    assert [r["logger"] for r in records] == ["stamina", "redis.connection"]
    assert records[0]["message"] == "stamina.retry_scheduled caused by ***"


def test_the_lock_module_logs_under_docsync(json_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    from docsync_cli.locks import common as locks

    assert locks.logger.name.startswith("docsync.")
    locks.logger.info("lock lost: key %s", CANARY)  # INFO: only the docsync hierarchy is this verbose
    records = json_lines(capsys.readouterr().err)
    assert records == [{"time": records[0]["time"], "level": "info", "logger": locks.logger.name,
                        "message": "lock lost: key ***"}]


def test_a_traceback_is_redacted_too(json_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        raise RuntimeError(f"boom with {CANARY}")
    except RuntimeError:
        logging.getLogger("docsync.engine").exception("unexpected")
    err = capsys.readouterr().err
    assert CANARY not in err
    (record,) = json_lines(err)
    assert "RuntimeError: boom with ***" in record["exception"]


def test_a_retry_line_names_the_request_the_attempt_and_the_wait(
        json_logging: None, httpx_mock: HTTPXMock, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    httpx_mock.add_response(url="https://svc.example/v1/things/42", status_code=503, text="busy")
    httpx_mock.add_response(url="https://svc.example/v1/things/42", json={"ok": True})
    http = httpx.Client(base_url="https://svc.example", headers={"Authorization": f"Bearer {CANARY}"})
    service = ServiceClient("svc", http, deadline_seconds=30,
                            retry=RetryPolicy(attempts=3, wait_initial=0.25, wait_max=0.25))
    assert service.json("GET", "/v1/things/42") == {"ok": True}
    err = capsys.readouterr().err
    assert CANARY not in err
    (record,) = [r for r in json_lines(err) if "retry" in r["message"]]
    assert record["logger"] == "docsync.http" and record["level"] == "warning"
    message = record["message"]
    assert "svc GET /v1/things/42" in message and "503" in message
    assert "attempt 2" in message
    assert " in 0.2 s" in message or " in 0.3 s" in message  # 0.25 s plus stamina's jitter (< 1 s)
