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

    from docsync_cli.cli import app as cli
    from docsync_cli.cli import logs

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


# -- check's judgement of what it reads ---------------------------------------------------------------------


class Collected:
    """A ``reports.shared.Lines`` that keeps what a check wrote."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None]] = []

    def line(self, text: str, style: str | None = None) -> None:
        self.lines.append((text, style))

    def text(self) -> str:
        return "\n".join(text for text, _ in self.lines)


def test_denied_rights_are_named_and_a_missing_table_is_not_judged() -> None:
    # The API user's name (ApiUser.label) is tested with its parser in test_crm_schema.py.
    from docsync_cli.crm.schema import parse_api_user
    from docsync_cli.reports.check_services import acl_missing

    table = {"Document": {"read": "all", "edit": "no"}, "Attachment": {"create": False}}
    assert acl_missing(parse_api_user({"acl": {"table": table}})) == ["Document edit", "Attachment create"]
    assert acl_missing(parse_api_user({"acl": {"table": {"Document": {"read": "own", "edit": "all"}}}})) == []
    assert acl_missing(parse_api_user({"acl": {}})) is None
    assert acl_missing(parse_api_user([])) is None


def test_a_link_field_must_hold_text() -> None:
    from docsync_cli.crm.answers import FieldDefinition, parse_field_definition
    from docsync_cli.reports.check_services import link_field_problems

    def defined(answer: dict[str, object]) -> FieldDefinition:
        definition = parse_field_definition(answer)
        assert definition is not None
        return definition

    assert link_field_problems("Contact", "collectionId", defined({"type": "varchar"})) == []
    assert link_field_problems("Contact", "collectionId", defined({"type": "url"})) == []
    assert link_field_problems("Contact", "collectionId", defined({"type": "int"})) == [
        "Contact field collectionId has type 'int'; a collection id needs a text field (varchar)"]
    assert link_field_problems("Account", "xaiCollectionId", defined({"type": "varchar", "maxLength": 100})) == []
    assert link_field_problems("Account", "xaiCollectionId", defined({"type": "int"})) != []  # the design rule


def test_preview_tools_missing_ones_fail_missing_fonts_only_warn() -> None:
    from docsync_cli.preview import ToolStatus
    from docsync_cli.reports.check import judge_preview_tools

    ok = (ToolStatus("pdfium", True, "pypdfium2 4, pdfium 6"), ToolStatus("pillow", True, "11.0"),
          ToolStatus("fonts", True, "DejaVu", required=False), ToolStatus("libreoffice", True, "LibreOffice 7.4"))
    assert judge_preview_tools(ok) == ("", "pdfium pypdfium2 4, pdfium 6, pillow 11.0, fonts DejaVu, "
                                           "libreoffice LibreOffice 7.4", None)
    missing, working, fonts = judge_preview_tools(
        (*ok[:2], ToolStatus("fonts", False, "fallback: install fonts-dejavu-core", required=False),
         ToolStatus("libreoffice", False, "not found: install libreoffice")))
    assert missing == "libreoffice: not found: install libreoffice"
    assert working == "pdfium pypdfium2 4, pdfium 6, pillow 11.0"
    assert fonts == "fallback: install fonts-dejavu-core"


def test_preview_tools_decide_by_availability_not_by_their_text() -> None:
    from docsync_cli.preview import ToolStatus
    from docsync_cli.reports.check import judge_preview_tools

    # a working tool whose detail reads like a problem, and a missing one whose detail starts with "ok"
    status = (ToolStatus("pdfium", True, "not found anywhere"), ToolStatus("libreoffice", False, "ok, or not"))
    assert judge_preview_tools(status) == ("libreoffice: ok, or not", "pdfium not found anywhere", None)
    assert judge_preview_tools((ToolStatus("pillow", True, ""),)) == ("", "pillow", None)


def test_the_state_dir_line_shows_the_problem_and_its_fix_as_root() -> None:
    from docsync_cli.reports.check import state_dir_line
    from docsync_cli.state.directory import StateDirProblem

    state_dir = Path("/var/lib/docsync")  # the line itself names the directory: "✗ state directory /var/lib/..."
    assert state_dir_line(StateDirProblem(state_dir, "is owned by root (uid 0)", "chown -R a:b /var/lib/docsync")) \
        == ("is owned by root (uid 0)", "as root: chown -R a:b /var/lib/docsync")
    assert state_dir_line(StateDirProblem(state_dir, "is not a directory; remove it")) == (
        "is not a directory; remove it", "see above")
    assert state_dir_line(StateDirProblem(state_dir, "is owned by root", "chown", state_dir / "docsync.lock")) == (
        "/var/lib/docsync/docsync.lock in the state directory is owned by root", "as root: chown")


def test_an_unloadable_configuration_fails_check_with_exit_2_and_its_problems() -> None:
    from docsync_cli.errors import ConfigError
    from docsync_cli.outcome import EXIT_USAGE
    from docsync_cli.reports.check import run_checks

    def load() -> object:
        raise ConfigError(["espocrm.url: missing (set ESPOCRM_URL)"])

    out = Collected()
    assert run_checks(load, out) == EXIT_USAGE  # type: ignore[arg-type]
    assert out.lines[0] == ("✗ configuration: 1 problem(s)", "red")
    assert out.lines[1] == ("    • espocrm.url: missing (set ESPOCRM_URL)", None)
    assert "preview tools" in out.text()  # still checked without a configuration


def test_every_check_passes_against_the_emulators(tmp_path: Path) -> None:
    from docsync_cli.config import load_settings
    from docsync_cli.outcome import EXIT_OK
    from docsync_cli.reports.check import run_checks
    from docsync_sandbox.seed import Sandbox, corpus_dir

    with Sandbox(processing_delay=0.0) as sandbox:
        sandbox.seed_firm(corpus_dir())
        env = sandbox.environment(tmp_path / "state") | {"DOCSYNC_PREVIEW__ENABLED": "false"}
        out = Collected()
        code = run_checks(lambda: load_settings(None, env=env), out)
    assert code == EXIT_OK, out.text()
    assert out.lines[-1] == ("All checks passed.", "bold green")
    assert [text for text, style in out.lines if style == "red"] == []
    assert any(text.startswith("✓ EspoCRM at ") for text, _ in out.lines)
    assert ("– preview tools: skipped (previews are off (preview.enabled = false))", "dim") in out.lines
