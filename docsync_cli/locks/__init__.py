"""The run lock and the per-document locks: one docsync run at a time, one writer per document.

docsync runs every few minutes from systemd or cron, possibly on several hosts. Two backends implement
the same :class:`Locks` protocol; :func:`make_locks` picks one from the configuration:
:class:`~docsync_cli.locks.file.FileLocks` (``flock(2)`` in the state directory, the default) and
:class:`~docsync_cli.locks.redis.RedisLocks` (leases in Redis, for several hosts). Each backend's docstring
states its guarantees and limits; :mod:`~docsync_cli.locks.common` holds what they share.

Both backends: contention is never waited out silently. A second holder gets :class:`LockHeld` at once
(naming the holder), unless ``acquire_run(wait_seconds=...)`` asks it to poll until then. ``release_run``
is idempotent. All failures of the lock machinery itself are :class:`LocalEnvironmentError` (exit 4).
Before every remote write the engine calls :meth:`Locks.check`, which fails when a lock in hand is lost.

Imports: the standard library, ``errors``, ``model`` (the engine's ``DocumentLocks``) and the backends (which
load filelock, and redis only when a Redis lock is made).
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Protocol

from docsync_cli.errors import ConfigError
from docsync_cli.locks.common import pid_alive
from docsync_cli.locks.file import FileLocks
from docsync_cli.locks.redis import RedisLocks
from docsync_cli.model import DocumentLocks

__all__ = [
    "FileLocks",
    "Locks",
    "RedisLocks",
    "make_locks",
    "pid_alive",
]


class Locks(DocumentLocks, Protocol):
    """A lock backend: the engine's :class:`~.model.DocumentLocks` (``document``, ``check``) plus the run lock
    and the installation id (see the backends' docstrings for the guarantees)."""

    def acquire_run(self, wait_seconds: float | None = None) -> None:
        """Take the run lock. Raises :class:`LockHeld` at once, or after polling for ``wait_seconds``."""

    def release_run(self) -> None:
        """Give the run lock back. Idempotent; never removes another holder's lock."""

    def holder(self) -> str | None:
        """``"pid 1234 on host-a since 2026-11-25T14:00:00Z"`` for the current run-lock holder, or ``None``."""

    def close(self) -> None:
        """Release what is still held and free resources."""

    def installation_id(self, candidate: str) -> str:
        """The installation id every host sharing this lock backend uses: the first host's ``candidate``."""


def make_locks(backend: str, state_dir: Path, url: str | None, ttl_seconds: float, *, purpose: str = "sync"
               ) -> Locks:
    """The configured lock backend: ``"file"`` (state dir) or ``"redis"`` (needs ``url``).

    ``purpose`` picks the run lock: ``"sync"`` is the scheduled run (one per state dir; with Redis one per host
    and state dir, so several hosts share the backlog through the per-document locks); ``"id"`` is an admin's
    ``sync --id`` run, which may overlap a scheduled run — the per-document locks keep the two apart.
    """
    suffix = "" if purpose == "sync" else f"-{purpose}"
    if backend == "file":
        return FileLocks(state_dir, run_name=f"docsync{suffix}")
    if backend == "redis":
        if not url:
            raise ConfigError(["the redis lock backend needs a Redis URL"])
        place = hashlib.sha1(f"{socket.gethostname()}:{Path(state_dir).resolve()}".encode(),
                             usedforsecurity=False).hexdigest()[:12]
        return RedisLocks(url, ttl_seconds=ttl_seconds, run_name=f"run{suffix}:{place}")
    raise ConfigError([f"unknown lock backend {backend!r} (expected 'file' or 'redis')"])
