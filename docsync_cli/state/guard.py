"""Faults of the local state store become one run-fatal error: an ``OSError`` or ``sqlite3.Error`` out of
``state.sqlite3`` or the run history (a full disk, a read-only state directory, a corrupt database) is a
:class:`~..errors.LocalStateError` naming the directory, what docsync was doing and the kind of fault. It is never
a document's failure: the run stops (exit 4) and the next run, once the fault is gone, finishes the work in hand."""

from __future__ import annotations

import errno
import functools
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

from docsync_cli.errors import LocalStateError

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound="HasStateDir")

DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
READ_ONLY_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


class HasStateDir(Protocol):
    @property
    def state_dir(self) -> Path: ...


def fault_kind(exc: BaseException) -> str:
    """``disk_full``, ``read_only``, ``corrupt`` or ``other`` (the values of :data:`~..errors.STATE_FAULTS`)."""
    if isinstance(exc, OSError):
        if exc.errno in DISK_FULL_ERRNOS:
            return "disk_full"
        if exc.errno in READ_ONLY_ERRNOS:
            return "read_only"
        return "other"
    code = getattr(exc, "sqlite_errorcode", None)
    text = str(exc).lower()
    if code == sqlite3.SQLITE_FULL or "disk is full" in text:
        return "disk_full"
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PERM, sqlite3.SQLITE_CANTOPEN) or "readonly" in text:
        return "read_only"
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return "corrupt"
    return "other"


def state_fault(directory: Path, action: str, exc: OSError | sqlite3.Error) -> LocalStateError:
    """The run-fatal error for ``exc``, met while docsync tried to ``action`` in ``directory``."""
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return LocalStateError(str(directory), action, fault_kind(exc), detail or type(exc).__name__)


def state_fix(exc: LocalStateError) -> str:
    """What to do about a fault of the local state store, by its kind."""
    where = exc.directory
    if exc.fault == "disk_full":
        return f"free space on the disk that holds {where} (see `df -h {where}`), then run again"
    if exc.fault == "read_only":
        return (f"make {where} writable by the user docsync runs as (a read-only mount, or its owner: "
                f"`chown -R <user> {where}`), then run again")
    if exc.fault == "corrupt":
        return (f"the state database in {where} is damaged: restore state.sqlite3 from a backup, or move it aside "
                "(keep the installation-id file beside it) and run `docsync sync --full`, which relearns this "
                "host's records from EspoCRM and the ownership fields in xAI")
    return f"check the state directory {where} (disk, permissions, DOCSYNC_STATE_DIR), then run again"


def guarded(action: str) -> Callable[[Callable[Concatenate[S, P], R]], Callable[Concatenate[S, P], R]]:
    """A state method whose ``OSError``/``sqlite3.Error`` becomes :class:`LocalStateError` (``action`` says what
    it was doing, e.g. "save a document's record")."""
    def wrap(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
        @functools.wraps(method)
        def inner(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return method(self, *args, **kwargs)
            except (OSError, sqlite3.Error) as exc:
                raise state_fault(self.state_dir, action, exc) from exc
        return inner
    return wrap
