"""Default places: the config file and the state directory, from the environment and the file system.

Imports only the standard library and the kernel's ``users``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from docsync_cli.users import home_of, present

DEFAULT_CONFIG_PATH = Path("/etc/docsync/config.toml")
ROOT_STATE_DIR = Path("/var/lib/docsync")


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_CONFIG``, else ``/etc/docsync/config.toml``."""
    named = env.get("DOCSYNC_CONFIG")
    return Path(named) if named else DEFAULT_CONFIG_PATH


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_STATE_DIR``; else systemd's ``$STATE_DIRECTORY`` (``StateDirectory=``); else ``/var/lib/docsync``
    for root, for the user whose home it is (the service user of the README's ``useradd``) and for everyone once
    it exists (a system install); else ``$XDG_STATE_HOME/docsync`` or ``~/.local/state/docsync``.

    The fallback never hides the real state directory: a user who may not use ``/var/lib/docsync`` (a root run
    created it, or it is the service user's) is told so by the state directory check (owner and fix, exit 4),
    instead of silently starting a second installation in a private directory, or crashing on a home it cannot
    enter."""
    named = env.get("DOCSYNC_STATE_DIR")
    if named:
        return expand_home(named, env)
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd and Path(systemd).is_absolute():
        return Path(systemd)
    if os.geteuid() == 0 or present(ROOT_STATE_DIR) or home_of(os.geteuid()) == ROOT_STATE_DIR:
        return ROOT_STATE_DIR
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "docsync"
    return _home(env) / ".local" / "state" / "docsync"


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def expand_home(value: str, env: Mapping[str, str]) -> Path:
    """``value`` with a leading ``~`` or ``~/`` replaced by ``$HOME`` (the user's home without it)."""
    if value == "~" or value.startswith("~/"):
        return _home(env) / value[2:]
    return Path(value)
