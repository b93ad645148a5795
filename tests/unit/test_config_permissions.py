"""Config and key files the service user may not read (issue 22): the message names the users (never a uid), the
file's owner and mode, and the command that lets root and the service user read it (root:docsync 0640).

As root the loader runs in a forked child that became ``nobody``; otherwise the files are made mode 0000.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from docsync_cli.config import load_settings
from docsync_cli.errors import ConfigError
from docsync_cli.users import user_name
from tests.as_nobody import NOBODY, in_a_child_as_nobody
from tests.unit.test_config import CANARY, base_env, write_toml


def test_a_config_file_the_user_may_not_read_names_the_owner_and_the_fix(tmp_path: Path) -> None:
    """A root-owned 0600 config read by the service user: not a bare "Permission denied"."""
    base = Path(tempfile.mkdtemp(prefix="docsync-config-"))
    base.chmod(0o755)
    path = write_toml(base, "[sync]\nconcurrency = 2\n", mode=0o600 if os.geteuid() == 0 else 0o000)
    key = base / "xai-api-key"
    key.write_text(CANARY["XAI_API_KEY"])
    key.chmod(0o600 if os.geteuid() == 0 else 0o000)
    env = base_env(tmp_path, XAI_API_KEY_FILE=str(key))
    del env["XAI_API_KEY"]

    def call() -> str:
        try:
            load_settings(path, env=env)
        except ConfigError as exc:
            return "\n".join(exc.problems)
        return ""

    try:
        kind, message = in_a_child_as_nobody(call)
    finally:
        shutil.rmtree(base)
    assert kind == "returned", message
    me = user_name(NOBODY) if os.geteuid() == 0 else user_name(os.geteuid())
    config_line, key_line = message.splitlines()
    assert config_line.startswith(f"cannot read {path}: permission denied for {me} (owned by "), config_line
    assert "fix (as root): chown root:" in config_line and config_line.endswith(f"&& chmod 0640 {path}"), config_line
    assert key_line.startswith(f"xai.api_key (from XAI_API_KEY_FILE): cannot read {key}: permission denied for {me}")
    assert f"chmod 0640 {key}" in key_line and CANARY["XAI_API_KEY"] not in message
