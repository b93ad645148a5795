"""The file lock backend (the default): ``flock(2)`` through py-filelock's ``FileLock`` (never ``SoftFileLock``).

* Run lock: ``<state_dir>/docsync.lock``. Who holds it is recorded in ``<state_dir>/docsync.lock.json``
  (pid, host, start time; mode 0600), written after the lock is taken. The record is only a description:
  the kernel lock is the truth, so a record left behind by a killed run never blocks anybody.
* Document locks: ``<state_dir>/locks/<sha1(doc_id)>.lock``; the holder writes its description into the
  file it locked. The files stay in place after release (unlinking a flock file races with waiters).
* Guarantees: the kernel drops an OS lock when its process dies, so there are no stale locks after
  SIGKILL, OOM kill or power loss, and no expiry timers that a paused run could outlive. If locking is
  impossible (ENOLCK on NFS without a lock manager, unwritable or read-only state dir, no ``fcntl``),
  docsync stops with :class:`LocalEnvironmentError`: it never runs unlocked and never falls back to a
  soft lock.
* :meth:`FileLocks.check` is cheap: it only verifies that the lock file still exists with the inode we
  locked (someone deleting the state dir under a running docsync would otherwise let a second run in).
* Limits: the lock is only as good as ``flock`` on that filesystem. On NFS mounted with ``nolock`` it
  may silently lock nothing, so keep the state dir on a local disk or use the Redis backend.

Imports: the standard library, filelock, ``errors``, ``statedir`` and ``locks.common``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import filelock

from docsync_cli.errors import LocalEnvironmentError, LockHeld
from docsync_cli.locks.common import NEVER_UNLOCKED, POLL_SECONDS, Identity, describe_record, logger
from docsync_cli.state.directory import state_file_exists


def _describe_os_error(exc: OSError) -> str:
    code = exc.errno
    text = os.strerror(code) if code is not None else str(exc)
    name = errno.errorcode.get(code, "") if code is not None else ""
    label = f"{name}: {text}" if name else text
    if code == errno.ENOLCK:
        return f"the filesystem does not support locks ({label}; NFS mounted with nolock?)"
    if code in (errno.EACCES, errno.EPERM):
        return f"the state directory is not writable ({label})"
    if code == errno.EROFS:
        return f"the state directory is on a read-only filesystem ({label})"
    if code == errno.ENOSPC:
        return f"the disk is full ({label})"
    return label


def _cannot_lock(path: Path, exc: OSError) -> LocalEnvironmentError:
    return LocalEnvironmentError(f"cannot lock {path}: {_describe_os_error(exc)}; {NEVER_UNLOCKED}")


@dataclass
class _HeldFile:
    what: str
    path: Path
    lock: filelock.BaseFileLock
    inode: tuple[int, int]


class FileLocks:
    """:class:`~docsync_cli.locks.Locks` over ``flock(2)`` (py-filelock ``FileLock``); dropped by the kernel when
    the process dies."""

    def __init__(self, state_dir: Path, run_name: str = "docsync") -> None:
        self.state_dir = Path(state_dir)
        self.lock_path = self.state_dir / f"{run_name}.lock"
        self.info_path = self.state_dir / f"{run_name}.lock.json"
        self.documents_dir = self.state_dir / "locks"
        self._mutex = threading.RLock()  # reentrant: a signal handler may release mid-acquire
        self._run: _HeldFile | None = None
        self._identity: Identity | None = None
        self._local = threading.local()

    # -- helpers ------------------------------------------------------------------------------------

    def _ensure_dir(self, path: Path) -> None:
        if not filelock.has_fcntl:
            raise LocalEnvironmentError(f"cannot lock {path}: flock() is not available here; {NEVER_UNLOCKED}")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot_lock(path, exc) from exc
        if not path.is_dir():
            raise LocalEnvironmentError(f"cannot lock {path}: not a directory; {NEVER_UNLOCKED}")

    def _try_lock(self, path: Path, what: str, write_info: str | None = None) -> _HeldFile | None:
        """One non-blocking attempt. ``None`` on contention; LocalEnvironmentError when locking is impossible."""
        inode: list[tuple[int, int]] = []

        def on_acquired(fd: int) -> None:
            st = os.fstat(fd)
            inode.append((st.st_dev, st.st_ino))
            if write_info is not None:
                data = (write_info + "\n").encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)

        lock = filelock.FileLock(
            str(path),
            mode=0o600,
            thread_local=False,
            blocking=False,
            fallback_to_soft=False,
            preserve_lock_file=True,
            on_acquired=on_acquired,
        )
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:  # a TimeoutError, i.e. an OSError: must come first
            return None
        except OSError as exc:
            raise _cannot_lock(path, exc) from exc
        if not inode:  # pragma: no cover - on_acquired runs on every physical acquire
            lock.release(force=True)
            raise LocalEnvironmentError(f"cannot lock {path}: the lock descriptor was not seen; {NEVER_UNLOCKED}")
        return _HeldFile(what=what, path=path, lock=lock, inode=inode[0])

    def _read_record(self) -> Identity | None:
        try:
            return Identity.from_json(self.info_path.read_bytes())
        except OSError:
            return None

    def _busy_description(self) -> str:
        record = self._read_record()
        if record is None:
            return f"unknown holder (no record in {self.info_path})"
        return describe_record(record)

    def _write_record(self, identity: Identity) -> None:
        tmp = self.info_path.with_name(f".{self.info_path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)
                os.write(fd, (identity.to_json() + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.info_path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _remove_record(self, identity: Identity) -> None:
        record = self._read_record()
        if record is not None and record.nonce == identity.nonce:
            with contextlib.suppress(FileNotFoundError):
                self.info_path.unlink()

    def _doc_stack(self) -> list[_HeldFile]:
        stack: list[_HeldFile] | None = getattr(self._local, "docs", None)
        if stack is None:
            stack = []
            self._local.docs = stack
        return stack

    @staticmethod
    def _verify(held: _HeldFile) -> None:
        try:
            st = os.stat(held.path)
        except FileNotFoundError:
            raise LocalEnvironmentError(
                f"lock lost: {held.what} file {held.path} was removed while we held it") from None
        except OSError as exc:
            raise LocalEnvironmentError(
                f"lock lost: cannot verify {held.what} file {held.path}: {_describe_os_error(exc)}") from exc
        if (st.st_dev, st.st_ino) != held.inode:
            raise LocalEnvironmentError(
                f"lock lost: {held.what} file {held.path} was replaced by another file while we held it")
        if not held.lock.is_locked:
            raise LocalEnvironmentError(f"lock lost: {held.what} on {held.path} is no longer held")

    # -- Locks --------------------------------------------------------------------------------------

    def acquire_run(self, wait_seconds: float | None = None) -> None:
        with self._mutex:
            if self._run is not None:
                return
            self._ensure_dir(self.state_dir)
            deadline = time.monotonic() + wait_seconds if wait_seconds else None
            while True:
                held = self._try_lock(self.lock_path, "run lock")
                if held is not None:
                    break
                now = time.monotonic()
                if deadline is None or now >= deadline:
                    raise LockHeld(self._busy_description())
                time.sleep(min(POLL_SECONDS, deadline - now))
            identity = Identity.here()
            try:
                self._write_record(identity)
            except OSError as exc:
                held.lock.release(force=True)
                raise LocalEnvironmentError(
                    f"cannot write {self.info_path}: {_describe_os_error(exc)}; {NEVER_UNLOCKED}") from exc
            self._run = held
            self._identity = identity
            logger.debug("run lock %s taken by %s", self.lock_path, identity.describe())

    def release_run(self) -> None:
        with self._mutex:
            held, identity = self._run, self._identity
            self._run = None
            self._identity = None
            if held is None:
                return
            try:
                if identity is not None:
                    self._remove_record(identity)
            except OSError as exc:
                logger.warning("could not remove %s: %s", self.info_path, _describe_os_error(exc))
            finally:
                held.lock.release(force=True)

    def holder(self) -> str | None:
        with self._mutex:
            if self._run is not None and self._identity is not None:
                return self._identity.describe()
        if not state_file_exists(self.lock_path):  # a state dir this user cannot enter: the chown advice
            return None
        if not self._probe_busy():
            return None  # a record left behind by a killed run does not count
        return self._busy_description()

    def _probe_busy(self) -> bool:
        """Is the run lock held by anyone? A shared, non-blocking flock on a separate descriptor.

        The probe holds a shared lock for a few microseconds; a run starting in exactly that moment sees
        LockHeld and tries again on its next schedule (fail-safe).
        """
        import fcntl

        try:
            fd = os.open(self.lock_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _cannot_lock(self.lock_path, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise _cannot_lock(self.lock_path, exc) from exc
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def document(self, doc_id: str) -> AbstractContextManager[None]:
        return self._document(doc_id)

    @contextlib.contextmanager
    def _document(self, doc_id: str) -> Iterator[None]:
        self._ensure_dir(self.documents_dir)
        digest = hashlib.sha1(doc_id.encode(), usedforsecurity=False).hexdigest()
        path = self.documents_dir / f"{digest}.lock"
        me = Identity.here()
        info = json.dumps({"doc_id": doc_id, "pid": me.pid, "host": me.host, "since": me.since})
        held = self._try_lock(path, f"document {doc_id} lock", write_info=info)
        if held is None:
            raise LockHeld(f"document {doc_id} is locked by {self._doc_holder(path)}")
        stack = self._doc_stack()
        stack.append(held)
        try:
            yield
        finally:
            stack.remove(held)
            held.lock.release(force=True)

    @staticmethod
    def _doc_holder(path: Path) -> str:
        try:
            record = Identity.from_json(path.read_bytes())
        except OSError:
            record = None
        return describe_record(record) if record is not None else "another process"

    def check(self) -> None:
        with self._mutex:
            run = self._run
        if run is None:
            raise LocalEnvironmentError("lock lost: the run lock is not held by this process")
        self._verify(run)
        for held in self._doc_stack():
            self._verify(held)

    def installation_id(self, candidate: str) -> str:
        return candidate  # one host: the id in its state dir

    def close(self) -> None:
        self.release_run()
