"""Is the state directory usable by the user running docsync? If not: who owns it, and the command that fixes it.

The classic first-week failure: a root run (``docsync check``, ``sync --dry-run``) creates ``/var/lib/docsync`` (or
a file in it) owned by root before the service user exists, and every scheduled run then fails. docsync names the
owner and prints the ``chown`` instead of a bare "not writable".
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from pathlib import Path

from docsync_cli.errors import LocalEnvironmentError

# What docsync keeps in the state directory (a file owned by someone else breaks runs just like the directory).
STATE_ENTRIES = ("state.sqlite3", "history.sqlite3", "docsync.lock", "docsync.lock.json", "locks", "libreoffice")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


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
    """``None`` if this process can use ``state_dir`` (or create it), else what is wrong and the fix."""
    me, my_gid = os.geteuid(), os.getegid()
    who = f"{user_name(me)} (uid {me})"
    if not state_dir.exists():
        parent = next((p for p in state_dir.parents if p.exists()), None)
        if parent is not None and os.access(parent, os.W_OK | os.X_OK):
            return None
        return StateDirProblem(state_dir, f"does not exist and {who} cannot create it",
                               f"install -d -o {user_name(me)} -g {group_name(my_gid)} -m 0700 {state_dir}")
    if not state_dir.is_dir():
        return StateDirProblem(state_dir, "is not a directory; remove it or set DOCSYNC_STATE_DIR elsewhere")
    fix = f"chown -R {user_name(me)}:{group_name(my_gid)} {state_dir} && chmod 0700 {state_dir}"
    if not os.access(state_dir, os.W_OK | os.X_OK):
        info = state_dir.stat()
        owner = f"{user_name(info.st_uid)} (uid {info.st_uid})"
        if info.st_uid != me:
            return StateDirProblem(state_dir, f"is owned by {owner}, not by {who} who runs docsync", fix)
        return StateDirProblem(state_dir, f"is not writable (mode {info.st_mode & 0o777:04o})", fix)
    for name in STATE_ENTRIES:
        entry = state_dir / name
        try:
            info = entry.lstat()
        except OSError:
            continue
        if not os.access(entry, os.W_OK):
            owner = f"{user_name(info.st_uid)} (uid {info.st_uid})"
            return StateDirProblem(state_dir, f"is owned by {owner} and not writable for {who}", fix, entry)
    return None


def foreign_owner_warning(state_dir: Path) -> str | None:
    """A warning when this process (root) may write a state directory that belongs to another user: the files it
    creates would be root's and lock the owner (the service user) out."""
    try:
        owner = state_dir.stat().st_uid
    except OSError:
        return None
    me = os.geteuid()
    if owner == me or not os.access(state_dir, os.W_OK):
        return None
    name = user_name(owner)
    return (f"the state directory {state_dir} belongs to {name}, but this run is {user_name(me)}'s: files it "
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
