"""The first hour on a fresh machine (issue 22, item 1): root ran docsync once, so ``/var/lib/docsync`` (the
service user's home and state directory) is root's, mode 0700. The service user's ``sync``, ``status`` and
``check`` - without ``DOCSYNC_STATE_DIR`` - must name the directory, its owner by name and the command that fixes
it (exit 4; ``check``: its ✗ line, exit 2), never die with a PermissionError traceback.

The commands run through the real Typer app in a forked child that became ``nobody`` (as root, as in CI);
otherwise the directory is made mode 0000. Everything the commands import lazily is imported first: ``nobody``
may not be able to read this interpreter's files.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - everything the commands import lazily, imported before the child drops its privileges
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import rich.console
import rich.markup
import rich.table  # noqa: F401
from typer.testing import CliRunner

import docsync_cli.cli.app
import docsync_cli.config
import docsync_cli.preview
import docsync_cli.reports.check
import docsync_cli.reports.status
import docsync_cli.sync.engine
import docsync_cli.sync.run
from docsync_cli.config import paths as config_paths
from docsync_cli.state.directory import state_dir_problem
from docsync_cli.users import user_name
from tests.as_nobody import NOBODY, in_a_child_as_nobody

ENV = {"ESPOCRM_URL": "http://127.0.0.1:9", "XAI_API_URL": "http://127.0.0.1:9", "XAI_MANAGEMENT_URL": "http://127.0.0.1:9",
       "ESPOCRM_API_KEY": "k-espo", "XAI_API_KEY": "k-xai",
       "XAI_MANAGEMENT_KEY": "k-mgmt"}


@pytest.fixture
def left_by_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``/var/lib/docsync`` as a first root run leaves it: 0700, a state database in it."""
    base = Path(tempfile.mkdtemp(prefix="docsync-firsthour-"))
    base.chmod(0o755)
    system = base / "var-lib-docsync"
    system.mkdir(mode=0o700)
    (system / "state.sqlite3").write_bytes(b"")
    config = base / "config.toml"  # no secrets, readable by everyone (the README's root:docsync 0640 in spirit)
    config.write_text("[sync]\nconcurrency = 2\n")
    config.chmod(0o644)
    monkeypatch.setenv("DOCSYNC_TEST_CONFIG", str(config))
    monkeypatch.setattr(config_paths, "ROOT_STATE_DIR", system)
    if os.geteuid() != 0:
        system.chmod(0o000)
    try:
        yield system
    finally:
        system.chmod(0o700)
        shutil.rmtree(base)


def cli_as_nobody(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    def call() -> str:
        config = os.environ.get("DOCSYNC_TEST_CONFIG", "/nonexistent")
        for name in [name for name in os.environ if name.startswith(("DOCSYNC_", "ESPOCRM_", "XAI_", "STATE_"))]:
            del os.environ[name]
        done = CliRunner().invoke(docsync_cli.cli.app.app, args, env=env | {"DOCSYNC_CONFIG": config})
        trace = "".join(__import__("traceback").format_exception(done.exc_info[1])) if (
            done.exc_info and not isinstance(done.exc_info[1], SystemExit)) else ""
        return json.dumps([done.exit_code, done.output + trace])

    kind, message = in_a_child_as_nobody(call)
    assert kind == "returned", f"{kind}: {message}"
    code, output = json.loads(message)
    return int(code), str(output)


def expected_fix(system: Path) -> str:
    me = user_name(NOBODY if os.geteuid() == 0 else os.geteuid())
    return f"chown -R {me}:"


@pytest.mark.parametrize("command", [["sync"], ["status"], ["sync", "--dry-run"]])
def test_the_service_user_after_a_root_run_gets_the_owner_and_the_fix(left_by_root: Path,
                                                                    command: list[str]) -> None:
    code, output = cli_as_nobody(command, ENV | {"HOME": str(left_by_root)})
    assert "Traceback" not in output and "PermissionError" not in output, output
    assert code == 4, output
    assert str(left_by_root) in output and expected_fix(left_by_root) in output, output
    if os.geteuid() == 0:
        assert "owned by root" in output and "uid" not in output, output  # a name, not a uid


def test_check_after_a_root_run_shows_the_state_dir_line_with_the_fix(left_by_root: Path) -> None:
    code, output = cli_as_nobody(["check"], ENV | {"HOME": str(left_by_root),
                                                   "DOCSYNC_ESPOCRM__TIMEOUT_SECONDS": "1"})
    assert "Traceback" not in output and "PermissionError" not in output, output
    assert code != 0 and f"✗ state directory {left_by_root}" in output, output
    assert expected_fix(left_by_root) in output, output


def test_a_state_dir_behind_a_directory_the_user_cannot_enter_is_a_problem_not_a_crash() -> None:
    """``DOCSYNC_STATE_DIR`` (or the ``~/.local/state`` fallback) inside root's 0700 home: Path.exists() raises
    PermissionError there; the rule names the directory that blocks, its owner, and what to do."""
    base = Path(tempfile.mkdtemp(prefix="docsync-behind-"))
    base.chmod(0o755)
    private = base / "root-home"
    private.mkdir(mode=0o700)
    if os.geteuid() != 0:
        private.chmod(0o000)
    try:
        def call() -> str:
            problem = state_dir_problem(private / ".local" / "state" / "docsync")
            return "" if problem is None else str(problem)

        kind, message = in_a_child_as_nobody(call)
        assert kind == "returned", f"{kind}: {message}"
        assert f"cannot be reached by {user_name(NOBODY if os.geteuid() == 0 else os.geteuid())}" in message
        assert f"{private} (owned by {user_name(private.stat().st_uid)}, mode " in message, message
        assert "fix (as root): install -d -o " in message and "DOCSYNC_STATE_DIR" in message, message
    finally:
        private.chmod(0o700)
        shutil.rmtree(base)
