"""The keys' own sources: which settings are keys and where each may come from, reading a key file, and the
permission rule for a config file that holds keys (netrc-style: private to the user running docsync)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

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


def config_file_problems(path: Path, info: os.stat_result) -> list[str]:
    """What is wrong with a config file that holds keys: readable by others, or owned by another user."""
    problems: list[str] = []
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        problems.append(
            f"{path.name} holds secrets but is readable by other users (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )
    uid = os.geteuid()
    if info.st_uid != uid:
        problems.append(
            f"{path.name} holds secrets but is owned by another user (uid {info.st_uid}, docsync runs as "
            f"uid {uid}); run: chown {uid} {path}, or move the keys out of the file "
            "(environment, *_FILE or systemd credentials)"
        )
    return problems
