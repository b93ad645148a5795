"""Users and groups by name: what docsync's advice says instead of a uid (``chown docsync:docsync``, not
``chown 990``), and the safe look-ups of a path that may lie behind a directory this user cannot enter.

Imports only the standard library.
"""

from __future__ import annotations

import grp
import os
import pwd
from pathlib import Path


def user_name(uid: int) -> str:
    """The user's name; ``uid N`` for a uid without an account (a copied file system, a removed user)."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def me() -> str:
    """The name of the user this process runs as."""
    return user_name(os.geteuid())


def my_group() -> str:
    return group_name(os.getegid())


def home_of(uid: int) -> Path | None:
    """The home directory in the user database (``useradd --home-dir``), not ``$HOME``."""
    try:
        return Path(pwd.getpwuid(uid).pw_dir)
    except KeyError:
        return None


def owner_and_mode(path: Path) -> str:
    """``owned by root:docsync, mode 0640`` for a path, or ``""`` when it cannot be looked at."""
    try:
        info = path.stat()
    except OSError:
        return ""
    return f"owned by {user_name(info.st_uid)}:{group_name(info.st_gid)}, mode {info.st_mode & 0o777:04o}"


def present(path: Path) -> bool:
    """Whether something is at ``path``. Unlike ``Path.exists()`` it never raises: a path behind a directory this
    user may not enter counts as present (it may well be there; the caller says why it cannot be used)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return True


def blocking_ancestor(path: Path) -> Path | None:
    """The outermost directory above ``path`` that this user may not enter (no search permission), if any."""
    for ancestor in reversed(path.parents):
        if present(ancestor) and not os.access(ancestor, os.X_OK):
            return ancestor
    return None
