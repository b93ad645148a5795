"""Is the state directory usable by the user running docsync? If not: who owns it, and the command that fixes it.

The classic first-week failure: a root run (``docsync check``, ``sync --dry-run``) creates ``/var/lib/docsync`` (or
a file in it) owned by root before the service user exists, and every scheduled run then fails. docsync names the
owner and prints the ``chown`` instead of a bare "not writable".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from docsync_cli.errors import LocalEnvironmentError
from docsync_cli.users import blocking_ancestor, group_name, home_of, user_name

__all__ = ["STATE_ENTRIES", "StateDirProblem", "foreign_owner_warning", "group_name", "state_dir_problem",
           "state_file_exists", "user_name"]

# What docsync keeps in the state directory (a file owned by someone else breaks runs just like the directory).
STATE_ENTRIES = ("state.sqlite3", "history.sqlite3", "docsync.lock", "docsync.lock.json", "locks", "libreoffice")


@dataclass(frozen=True)
class StateDirProblem:
    """Why this process cannot use the state directory, in parts: ``str()`` is the one message (``<subject>
    <problem>; fix (as root): <fix>``) a run fails with; ``docsync check`` shows the parts on their own."""

    state_dir: Path
    problem: str  # what is wrong, said after the subject, e.g. "is not a directory; remove it or ..."
    fix: str | None = None  # the command that fixes it, run as root
    entry: Path | None = None  # the file in the state directory it is about; None: the directory itself

    @property
    def subject(self) -> str:
        return f"{self.entry} in the state directory" if self.entry is not None else \
            f"the state directory {self.state_dir}"

    def __str__(self) -> str:
        text = f"{self.subject} {self.problem}"
        return f"{text}; fix (as root): {self.fix}" if self.fix is not None else text


def state_dir_problem(state_dir: Path) -> StateDirProblem | None:
    """``None`` if this process can use ``state_dir`` (or create it), else what is wrong and the fix. Never raises:
    a directory behind one this user may not enter is a problem with a fix, not a PermissionError."""
    uid = os.geteuid()
    name, group = user_name(uid), group_name(os.getegid())
    mine = f"chown -R {name}:{group} {state_dir} && chmod 0700 {state_dir}"
    blocked = blocking_ancestor(state_dir)
    if blocked is not None:
        return _unreachable(state_dir, blocked, name, group)
    try:
        info = state_dir.stat()
    except (FileNotFoundError, NotADirectoryError):
        parent = next((p for p in state_dir.parents if p.is_dir()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return None
        return StateDirProblem(state_dir, f"does not exist and {name} cannot create it",
                               f"install -d -o {name} -g {group} -m 0700 {state_dir}")
    except OSError as exc:
        return StateDirProblem(state_dir, f"cannot be looked at by {name}: {exc.strerror or exc}")
    if not state_dir.is_dir():
        return StateDirProblem(state_dir, "is not a directory; remove it or set DOCSYNC_STATE_DIR elsewhere")
    if not os.access(state_dir, os.W_OK | os.X_OK):
        owner = user_name(info.st_uid)
        if info.st_uid == uid:
            return StateDirProblem(state_dir, f"is not writable (mode {info.st_mode & 0o777:04o})", mine)
        if info.st_uid != 0 and home_of(uid) != state_dir:
            # Another user's (the service user's) directory: running as that user is the fix, not taking it over.
            return StateDirProblem(state_dir, f"belongs to {owner}, not to {name} who runs docsync; run docsync as "
                                   f"{owner}, or set DOCSYNC_STATE_DIR to a directory of {name}'s own",
                                   f"runuser -u {owner} -- docsync ...")
        return StateDirProblem(state_dir, f"is owned by {owner}, not by {name} who runs docsync", mine)
    for entry_name in STATE_ENTRIES:
        entry = state_dir / entry_name
        try:
            entry_info = entry.lstat()
        except OSError:
            continue
        if not os.access(entry, os.W_OK):
            return StateDirProblem(state_dir, f"is owned by {user_name(entry_info.st_uid)} and not writable for "
                                   f"{name}", mine, entry)
    return None


def _unreachable(state_dir: Path, blocked: Path, name: str, group: str) -> StateDirProblem:
    """``state_dir`` lies behind ``blocked``, a directory this user may not enter (root's home, or a state
    directory a root run created 0700 with the user's fallback directory inside it)."""
    try:
        info = blocked.stat()
        whose = f"{blocked} (owned by {user_name(info.st_uid)}, mode {info.st_mode & 0o777:04o})"
    except OSError:
        whose = str(blocked)
    if home_of(os.geteuid()) == blocked or blocked.name == "docsync":
        # The user's own home / the docsync state directory itself, taken by a root run: give it back.
        return StateDirProblem(state_dir, f"cannot be reached by {name}: {whose} does not let {name} in",
                               f"chown -R {name}:{group} {blocked} && chmod 0700 {blocked}")
    return StateDirProblem(state_dir, f"cannot be reached by {name}: {whose} does not let {name} in; set "
                           f"DOCSYNC_STATE_DIR to a directory {name} can reach, e.g. /var/lib/docsync",
                           f"install -d -o {name} -g {group} -m 0700 /var/lib/docsync")


def foreign_owner_warning(state_dir: Path) -> str | None:
    """A warning when this process (root) may write a state directory that belongs to another user: the files it
    creates would be root's and lock the owner (the service user) out."""
    try:
        owner = state_dir.stat().st_uid
    except OSError:
        return None
    uid = os.geteuid()
    if owner == uid or not os.access(state_dir, os.W_OK):
        return None
    name = user_name(owner)
    return (f"the state directory {state_dir} belongs to {name}, but this run is {user_name(uid)}'s: files it "
            f"creates there would lock {name} out; run it as {name} (runuser -u {name} -- docsync ...)")


def state_file_exists(path: Path) -> bool:
    """``path.is_file()`` for a file in the state directory, for the read-only reports (status, explain, search,
    check). A state directory this user may not enter (a root run created it 0700) raises
    :class:`~.errors.LocalEnvironmentError` naming the owner and the fix, instead of a traceback."""
    try:
        return path.is_file()
    except PermissionError as exc:
        problem = state_dir_problem(path.parent)
        raise LocalEnvironmentError(str(problem) if problem is not None else
                                    f"cannot read {path}: {exc.strerror or exc}") from None
