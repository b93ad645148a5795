"""``docsync check`` (``reports/check.py``, ``reports/check_services.py``): it loads its settings the way every
other command does, so the log redaction is installed for it too; and its judgement of what it reads."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SECRET = "plain-espo-secret-4711"  # no echoed-key shape: only the configured-key redaction can hide it


class _EchoKey(http.server.BaseHTTPRequestHandler):
    """Every request fails with 503 and a body that echoes the caller's API key (servers do echo keys)."""

    def do_GET(self) -> None:
        body = f"overloaded; your key {self.headers.get('X-Api-Key') or SECRET} is fine".encode()
        self.send_response(503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoKey)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_secret_in_a_check_error_or_log_line_is_redacted(echo_server: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("# everything from the environment\n")
    config.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    env |= {"DOCSYNC_CONFIG": str(config), "DOCSYNC_STATE_DIR": str(tmp_path / "state"),
            "ESPOCRM_URL": echo_server, "ESPOCRM_API_KEY": SECRET,
            "XAI_API_URL": echo_server, "XAI_MANAGEMENT_URL": echo_server,
            "XAI_API_KEY": "xai-files-key-0815", "XAI_MANAGEMENT_KEY": "xai-mgmt-key-0815",
            "DOCSYNC_PREVIEW__ENABLED": "false"}
    done = subprocess.run([sys.executable, "-m", "docsync_cli", "check"], env=env, text=True, capture_output=True,
                          timeout=120, check=False)
    assert "retry scheduled: espocrm GET" in done.stderr  # the log line that carries the echoed key is there
    assert "your key *** is fine" in done.stderr
    assert SECRET not in done.stderr
    assert SECRET not in done.stdout
    assert "✗ EspoCRM at" in done.stdout
    assert done.returncode != 0


def test_check_loads_its_settings_through_the_command_context(echo_server: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The same path as every other command (``cli.Context.settings``), which installs the log redaction."""
    import typer

    from docsync_cli import cli, logs

    config = tmp_path / "config.toml"
    config.write_text("# everything from the environment\n")
    config.chmod(0o600)
    for key in [k for k in os.environ if k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))]:
        monkeypatch.delenv(key)
    for key, value in {"DOCSYNC_STATE_DIR": str(tmp_path / "state"), "ESPOCRM_URL": echo_server,
                       "ESPOCRM_API_KEY": SECRET, "XAI_API_URL": echo_server, "XAI_MANAGEMENT_URL": echo_server,
                       "XAI_API_KEY": "xai-files-key-0815", "XAI_MANAGEMENT_KEY": "xai-mgmt-key-0815",
                       "DOCSYNC_PREVIEW__ENABLED": "false"}.items():
        monkeypatch.setenv(key, value)
    context = cli.Context(config, 0, "text")
    monkeypatch.setattr(logs.REDACTOR, "settings", None)

    class Ctx:
        obj = context

    with pytest.raises(typer.Exit):
        cli.check(Ctx())  # type: ignore[arg-type]
    assert logs.REDACTOR.settings is not None
    assert logs.REDACTOR.settings is context.settings()  # loaded once, by the context
    assert logs.REDACTOR.settings.espocrm.url.rstrip("/") == echo_server
