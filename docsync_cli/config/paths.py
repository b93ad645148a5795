"""Default places: the config file and the state directory, from the environment and the file system.

Imports only the standard library.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_CONFIG_PATH = Path("/etc/docsync/config.toml")
ROOT_STATE_DIR = Path("/var/lib/docsync")


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_CONFIG``, else ``/etc/docsync/config.toml``."""
    named = env.get("DOCSYNC_CONFIG")
    return Path(named) if named else DEFAULT_CONFIG_PATH


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_STATE_DIR``; else systemd's ``$STATE_DIRECTORY`` (``StateDirectory=``); else
    ``/var/lib/docsync`` for root and for the user owning it (the service user of a system install); else
    ``$XDG_STATE_HOME/docsync`` or ``~/.local/state/docsync``."""
    named = env.get("DOCSYNC_STATE_DIR")
    if named:
        return expand_home(named, env)
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd and Path(systemd).is_absolute():
        return Path(systemd)
    if os.geteuid() == 0 or _owned_by_me(ROOT_STATE_DIR):
        return ROOT_STATE_DIR
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "docsync"
    return _home(env) / ".local" / "state" / "docsync"


def _owned_by_me(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def expand_home(value: str, env: Mapping[str, str]) -> Path:
    """``value`` with a leading ``~`` or ``~/`` replaced by ``$HOME`` (the user's home without it)."""
    if value == "~" or value.startswith("~/"):
        return _home(env) / value[2:]
    return Path(value)
