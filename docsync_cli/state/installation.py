"""This installation's id: ``installation-id`` in the state dir, generated once (``sync.installation_id``
overrides it so several hosts of one installation share it); docsync writes it into each collection document's
``fields``. Also how state files are made private (``0600``, never through a symlink).
"""

from __future__ import annotations

import os
import re
import stat
import uuid
from pathlib import Path

from docsync_cli.state.directory import state_file_exists

INSTALLATION_FILE = "installation-id"
INSTALLATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{3,63}")


def private_file(path: Path) -> None:
    """Create ``path`` as ``0600`` (or tighten it) without following a symlink planted in its place."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path} is not a regular file")
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def peek_installation_id(state_dir: Path, configured: str | None = None) -> str | None:
    """The installation id without creating one (None: no run made it yet)."""
    if configured:
        return configured
    if not state_file_exists(state_dir / INSTALLATION_FILE):  # owner and fix, not a PermissionError
        return None
    try:
        return installation_id(state_dir)
    except OSError:
        return None


def installation_id(state_dir: Path, configured: str | None = None) -> str:
    """This installation's id: ``configured`` if given, else the one stored in the state dir (made once)."""
    if configured:
        return configured
    path = state_dir / INSTALLATION_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = -1
    if fd >= 0:
        with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
            value = handle.read(200).strip()
        if INSTALLATION_ID.fullmatch(value):
            return value
        raise OSError(f"{path} does not hold an installation id (got {value[:40]!r}); restore it or remove it")
    value = uuid.uuid4().hex
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def remember_installation_id(state_dir: Path, value: str) -> None:
    """Store ``value`` as this state dir's installation id (atomically; never through a symlink)."""
    staging = state_dir / f".{INSTALLATION_FILE}.{os.getpid()}"
    fd = os.open(staging, os.O_CREAT | os.O_TRUNC | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.replace(staging, state_dir / INSTALLATION_FILE)
