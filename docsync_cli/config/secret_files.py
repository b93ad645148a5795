"""The keys' own sources: which settings are keys and where each may come from, reading a key file, and the
permission rule for a config file that holds keys (netrc-style: owned by root or the user running docsync, and
readable by nobody else but the owner's group: the README's root:docsync 0640). Every piece of advice names users
and groups (``chown root:docsync``), never uids, and works for root and the service user alike."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from docsync_cli.users import blocking_ancestor, group_name, my_group, owner_and_mode, user_name

MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SecretSpec:
    path: tuple[str, str]
    env: str
    credential: str

    @property
    def hint(self) -> str:
        return f"set {self.env}, {self.env}_FILE or the systemd credential {self.credential}"


SECRETS = (
    SecretSpec(("espocrm", "api_key"), "ESPOCRM_API_KEY", "espocrm-api-key"),
    SecretSpec(("espocrm", "secret_key"), "ESPOCRM_SECRET_KEY", "espocrm-secret-key"),
    SecretSpec(("xai", "api_key"), "XAI_API_KEY", "xai-api-key"),
    SecretSpec(("xai", "management_key"), "XAI_MANAGEMENT_KEY", "xai-management-key"),
)


def read_secret_file(path: Path, where: str, *, must_exist: bool) -> tuple[str | None, str | None]:
    """``(value, problem)`` of one key file: the key (trailing newline dropped; None when unreadable) and the
    sentence that says what is wrong with the file (None when nothing is). ``where`` names the setting."""
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            if must_exist and mode & 0o007:
                # Like a TOML file holding keys: a key file every user can read is refused. Group access is
                # fine (the documented root:docsync 0640 setup); systemd credentials are private anyway.
                return None, (f"{where}: {path} holds a key but is readable by other users "
                              f"(mode {mode:04o}); run: chmod o-rwx {path} (or chmod 600)")
            raw = handle.read(MAX_SECRET_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, (f"{where}: file {path} does not exist" if must_exist else None)
    except PermissionError:
        return None, f"{where}: {unreadable(path)}"
    except OSError as exc:
        return None, f"{where}: cannot read {path}: {exc.strerror or type(exc).__name__}"
    if len(raw) > MAX_SECRET_FILE_BYTES:
        return None, f"{where}: {path} is too large to hold a key"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{where}: {path} is not UTF-8 text"
    value = text.rstrip("\r\n")
    if not value:
        return value, f"{where}: {path} is empty"
    return value, None


def shared_group(info: os.stat_result) -> str:
    """The group that should read a root-owned file: this user's (the service user running docsync), or, for root,
    the group the file already has when that is not root's (the service user made it)."""
    if os.geteuid() != 0:
        return my_group()
    if info.st_gid != 0:
        return group_name(info.st_gid)
    return "docsync"


def unreadable(path: Path) -> str:
    """Why this user may not read ``path`` (a config or key file), with the command that lets root and the
    service user read it and nobody else."""
    me, group = user_name(os.geteuid()), my_group()
    blocked = blocking_ancestor(path)
    if blocked is not None:
        return (f"cannot read {path}: {blocked} ({owner_and_mode(blocked)}) does not let {me} in; fix (as root): "
                f"chgrp {group} {blocked} && chmod 0750 {blocked}")
    return (f"cannot read {path}: permission denied for {me} ({owner_and_mode(path)}); fix (as root): "
            f"chown root:{group} {path} && chmod 0640 {path}")


def config_file_problems(path: Path, info: os.stat_result) -> list[str]:
    """What is wrong with a config file that holds keys: readable by everyone, writable by its group, or owned by
    a user who is neither root nor the one running docsync."""
    problems: list[str] = []
    mode = stat.S_IMODE(info.st_mode)
    uid = os.geteuid()
    group = shared_group(info)
    fix = f"chown root:{group} {path} && chmod 0640 {path}"
    keys_out = "or better move the keys out of the file (*_FILE or systemd credentials, see docs/scheduling.md)"
    if mode & 0o027:
        problems.append(
            f"{path.name} holds secrets but is readable or writable by other users (mode {mode:04o}); "
            f"run (as root): {fix}, {keys_out}"
        )
    if info.st_uid not in (uid, 0):
        problems.append(
            f"{path.name} holds secrets but is owned by {user_name(info.st_uid)}, and docsync runs as "
            f"{user_name(uid)}; run (as root): {fix} (root and the group {group} read it), {keys_out}"
        )
    return problems
