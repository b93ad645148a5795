"""The run lock and the per-document locks: one docsync run at a time, one writer per document.

docsync runs every few minutes from systemd or cron, possibly on several hosts. Two backends implement
the same :class:`Locks` protocol; :func:`make_locks` picks one from the configuration.

File backend (:class:`FileLocks`, the default)
    ``flock(2)`` through py-filelock's ``FileLock`` (never ``SoftFileLock``).

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

Redis backend (:class:`RedisLocks`, for several hosts)
    redis-py's ``Lock``: ``SET key token NX PX ttl``; release and extend are Lua compare-and-act scripts, so
    a release never deletes a key that another holder has taken since.

    * Keys: ``{namespace}:run`` (run lock), ``{namespace}:doc:{doc_id}`` (document locks),
      ``{namespace}:fence`` (fencing counter). The token stored in a lock key names its holder (pid, host,
      start time, plus a random nonce) so :meth:`RedisLocks.holder` can say who holds it.
    * A lease, not a lock: each key expires after ``ttl_seconds``. A daemon thread extends every held lock
      every ``ttl/3``. If an extension fails (the key expired or changed hands: ``LockNotOwnedError``; or
      Redis is unreachable) the lock is marked lost, and the next :meth:`RedisLocks.check` raises
      :class:`LocalEnvironmentError`. ``check()`` also asks Redis, in one round-trip, whether the run lock
      and the document locks held by the calling thread still carry our token; it fails closed when Redis
      cannot be reached.
    * Redis unreachable at start: :class:`LocalEnvironmentError`; docsync never falls back to running
      unlocked. Passwords from the URL never appear in messages (``redis://:***@host``).
    * Fencing: every run-lock acquisition takes ``INCR {namespace}:fence`` (read together with the lock key
      in one MULTI transaction), exposed as :attr:`RedisLocks.fence`. A newer holder always has a larger
      fence than any older one.
    * Limits (Kleppmann, "How to do distributed locking", 2016): a lease cannot guarantee mutual exclusion
      on its own. A run that pauses (GC, swap, SIGSTOP, a slow disk) after a successful ``check()`` and for
      longer than the TTL may still send one write while another run already holds the lock. ``check()``
      narrows that window to a single request; closing it needs the protected resource to check the fence
      (the CRM ``syncRunId`` written with ``X-Version-Number`` compare-and-set). A single Redis instance is
      also a single point of truth: a failover that loses the key lets a second holder in (fencing again).

Both backends: contention is never waited out silently. A second holder gets :class:`LockHeld` at once
(naming the holder), unless ``acquire_run(wait_seconds=...)`` asks it to poll until then. ``release_run``
is idempotent. All failures of the lock machinery itself are :class:`LocalEnvironmentError` (exit 4).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import filelock

from docsync_cli.errors import ConfigError, LocalEnvironmentError, LockHeld
from docsync_cli.model import DocumentLocks
from docsync_cli.secrets import mask_url, scrub, url_secrets
from docsync_cli.statedir import state_file_exists
from docsync_cli.timestamps import utc_timestamp

if TYPE_CHECKING:
    import redis
    import redis.lock

__all__ = [
    "FileLocks",
    "Locks",
    "RedisLocks",
    "make_locks",
]

logger = logging.getLogger("docsync.locks")

_POLL_SECONDS = 0.2
_NEVER_UNLOCKED = "docsync never runs unlocked"


class Locks(DocumentLocks, Protocol):
    """A lock backend: the engine's :class:`~.model.DocumentLocks` (``document``, ``check``) plus the run lock
    and the installation id (see the module docstring for the guarantees)."""

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


# --------------------------------------------------------------------------------------------------
# holder identity


@dataclass(frozen=True)
class _Identity:
    pid: int
    host: str
    since: str
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def here(cls) -> _Identity:
        return cls(pid=os.getpid(), host=socket.gethostname(), since=utc_timestamp())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def to_json(self) -> str:
        data = {"pid": self.pid, "host": self.host, "since": self.since, "nonce": self.nonce}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> _Identity | None:
        try:
            data = json.loads(text)
            return cls(pid=int(data["pid"]), host=str(data["host"]), since=str(data["since"]),
                       nonce=str(data.get("nonce", "")))
        except (ValueError, TypeError, KeyError):
            return None


# --------------------------------------------------------------------------------------------------
# file backend


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
    return LocalEnvironmentError(f"cannot lock {path}: {_describe_os_error(exc)}; {_NEVER_UNLOCKED}")


@dataclass
class _HeldFile:
    what: str
    path: Path
    lock: filelock.BaseFileLock
    inode: tuple[int, int]


class FileLocks:
    """:class:`Locks` over ``flock(2)`` (py-filelock ``FileLock``); dropped by the kernel when the process dies."""

    def __init__(self, state_dir: Path, run_name: str = "docsync") -> None:
        self.state_dir = Path(state_dir)
        self.lock_path = self.state_dir / f"{run_name}.lock"
        self.info_path = self.state_dir / f"{run_name}.lock.json"
        self.documents_dir = self.state_dir / "locks"
        self._mutex = threading.RLock()  # reentrant: a signal handler may release mid-acquire
        self._run: _HeldFile | None = None
        self._identity: _Identity | None = None
        self._local = threading.local()

    # -- helpers ------------------------------------------------------------------------------------

    def _ensure_dir(self, path: Path) -> None:
        if not filelock.has_fcntl:
            raise LocalEnvironmentError(f"cannot lock {path}: flock() is not available here; {_NEVER_UNLOCKED}")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise _cannot_lock(path, exc) from exc
        if not path.is_dir():
            raise LocalEnvironmentError(f"cannot lock {path}: not a directory; {_NEVER_UNLOCKED}")

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
            raise LocalEnvironmentError(f"cannot lock {path}: the lock descriptor was not seen; {_NEVER_UNLOCKED}")
        return _HeldFile(what=what, path=path, lock=lock, inode=inode[0])

    def _read_record(self) -> _Identity | None:
        try:
            return _Identity.from_json(self.info_path.read_bytes())
        except OSError:
            return None

    def _busy_description(self) -> str:
        record = self._read_record()
        if record is None:
            return f"unknown holder (no record in {self.info_path})"
        return _describe_record(record)

    def _write_record(self, identity: _Identity) -> None:
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

    def _remove_record(self, identity: _Identity) -> None:
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
                time.sleep(min(_POLL_SECONDS, deadline - now))
            identity = _Identity.here()
            try:
                self._write_record(identity)
            except OSError as exc:
                held.lock.release(force=True)
                raise LocalEnvironmentError(
                    f"cannot write {self.info_path}: {_describe_os_error(exc)}; {_NEVER_UNLOCKED}") from exc
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
        me = _Identity.here()
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
            record = _Identity.from_json(path.read_bytes())
        except OSError:
            record = None
        return _describe_record(record) if record is not None else "another process"

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


def _describe_record(record: _Identity) -> str:
    """Describe a holder record, flagging one that is certainly stale (same host, process gone)."""
    text = record.describe()
    if record.host == socket.gethostname() and not pid_alive(record.pid):
        return f"unknown holder (the record names {text}, which has exited; the lock was probably just taken)"
    return text


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------------------------------
# redis backend

@dataclass
class _Lease:
    what: str
    key: str
    lock: redis.lock.Lock
    token: bytes
    lost: str | None = None


class RedisLocks:
    """:class:`Locks` over redis-py's ``Lock`` (leases with a renewal thread and a fencing counter)."""

    def __init__(self, url: str, *, namespace: str = "docsync", ttl_seconds: float = 60.0,
                 client: redis.Redis | None = None, run_name: str = "run") -> None:
        import redis as redis_module
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry

        if not ttl_seconds > 0:
            raise ConfigError([f"lock TTL must be positive, got {ttl_seconds!r}"])
        self.url = mask_url(url)
        self.namespace = namespace
        self.ttl_seconds = float(ttl_seconds)
        self.run_key = f"{namespace}:{run_name}"
        self.fence_key = f"{namespace}:fence"
        self._secrets = url_secrets(url)
        self._mutex = threading.RLock()  # reentrant: a signal handler may release mid-acquire
        self._local = threading.local()
        self._run: _Lease | None = None
        self._docs: dict[int, _Lease] = {}
        self._fence: int | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        #: test hook: while False the renewal thread skips its work (simulates a paused process)
        self._renewal_enabled = True
        self._closed = False
        self._owns_client = client is None
        if client is None:
            io_timeout = max(0.5, min(5.0, self.ttl_seconds / 3))
            try:
                client = redis_module.Redis.from_url(
                    url,
                    socket_connect_timeout=io_timeout,
                    socket_timeout=io_timeout,
                    retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
                )
            except ValueError as exc:
                raise ConfigError([f"invalid Redis URL {self.url}: {scrub(str(exc), self._secrets)}"]) from None
        self._client: redis.Redis = client
        try:
            self._client.ping()
        except (redis_module.RedisError, OSError) as exc:
            self._close_client()
            raise LocalEnvironmentError(
                f"cannot reach Redis at {self.url}: {self._describe(exc)}; {_NEVER_UNLOCKED}") from None

    # -- helpers ------------------------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", self._secrets)

    def _unreachable(self, exc: BaseException, doing: str) -> LocalEnvironmentError:
        return LocalEnvironmentError(
            f"cannot reach Redis at {self.url} ({doing}): {self._describe(exc)}; {_NEVER_UNLOCKED}")

    def _close_client(self) -> None:
        if self._owns_client:
            with contextlib.suppress(Exception):
                self._client.close()

    @staticmethod
    def _encode(value: Any) -> bytes:
        if isinstance(value, bytes):
            return value
        return str(value).encode("utf-8")

    def _new_lock(self, key: str) -> redis.lock.Lock:
        from redis.lock import Lock

        # thread_local=False: the renewal thread must see the token of the thread that acquired
        return Lock(self._client, key, timeout=self.ttl_seconds, sleep=_POLL_SECONDS, blocking=False,
                    thread_local=False, raise_on_release_error=False)

    def _try_acquire(self, what: str, key: str) -> _Lease | None:
        from redis import RedisError

        lock = self._new_lock(key)
        token = _Identity.here().to_json()
        try:
            if not lock.acquire(blocking=False, token=token):
                return None
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc, f"taking {what}") from None
        return _Lease(what=what, key=key, lock=lock, token=self._encode(lock.local.token))

    def _holder_of(self, key: str) -> str | None:
        from redis import RedisError

        try:
            value = self._client.get(key)
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc, "reading the lock holder") from None
        return None if value is None else self._describe_token(value)

    def _describe_token(self, value: Any) -> str:
        record = _Identity.from_json(self._encode(value))
        return record.describe() if record is not None else "unknown holder (foreign lock token)"

    def _doc_stack(self) -> list[_Lease]:
        stack: list[_Lease] | None = getattr(self._local, "docs", None)
        if stack is None:
            stack = []
            self._local.docs = stack
        return stack

    def _ensure_open(self) -> None:
        if self._closed:
            raise LocalEnvironmentError(f"the Redis lock client for {self.url} is closed; {_NEVER_UNLOCKED}")

    def _start_renewer(self) -> None:
        with self._mutex:
            if self._renewer is not None and self._renewer.is_alive():
                return
            self._stop.clear()
            self._renewer = threading.Thread(target=self._renew_loop, name="docsync-lock-renewal", daemon=True)
            self._renewer.start()

    def _renew_loop(self) -> None:
        from redis import RedisError
        from redis.exceptions import LockError, LockNotOwnedError

        interval = self.ttl_seconds / 3
        while not self._stop.wait(interval):
            if not self._renewal_enabled:
                continue
            with self._mutex:
                leases = ([self._run] if self._run is not None else []) + list(self._docs.values())
            for lease in leases:
                if lease.lost is not None:
                    continue
                try:
                    lease.lock.extend(self.ttl_seconds, replace_ttl=True)
                except LockNotOwnedError:
                    lease.lost = f"{lease.what} {lease.key} expired before it could be renewed"
                except LockError:
                    pass  # released meanwhile
                except (RedisError, OSError) as exc:
                    lease.lost = f"renewing {lease.what} {lease.key} failed: {self._describe(exc)}"
                if lease.lost is not None:
                    logger.error("lock lost: %s", lease.lost)

    def _release(self, lease: _Lease) -> None:
        from redis import RedisError
        from redis.exceptions import LockError, LockNotOwnedError

        try:
            lease.lock.release()
        except LockNotOwnedError:
            logger.warning("%s %s had already expired; another holder's key (if any) was left alone",
                           lease.what, lease.key)
        except LockError:
            pass
        except (RedisError, OSError) as exc:
            logger.warning("could not release %s %s (it expires in %.0f s): %s",
                           lease.what, lease.key, self.ttl_seconds, self._describe(exc))

    # -- Locks --------------------------------------------------------------------------------------

    def installation_id(self, candidate: str) -> str:
        """Hosts that share one Redis share one backlog, so they are one installation: the first host's id is
        stored under ``{namespace}:installation`` and every other host takes it."""
        from redis import RedisError

        key = f"{self.namespace}:installation"
        try:
            self._client.set(key, candidate, nx=True)
            value = self._client.get(key)
        except (RedisError, OSError) as exc:
            raise self._unreachable(exc, "reading the installation id") from None
        return value.decode() if isinstance(value, bytes) else str(value or candidate)

    @property
    def fence(self) -> int:
        """The fencing token of the current run-lock acquisition (strictly increasing per namespace)."""
        if self._fence is None or self._run is None:
            raise LocalEnvironmentError("lock lost: no fencing token, the run lock is not held")
        return self._fence

    def acquire_run(self, wait_seconds: float | None = None) -> None:
        from redis import RedisError

        self._ensure_open()
        if self._run is not None and self._run.lost is None:
            return
        if self._run is not None:  # lost: forget it (never delete: the key may be someone else's now)
            self.release_run()
        deadline = time.monotonic() + wait_seconds if wait_seconds else None
        while True:
            lease = self._try_acquire("run lock", self.run_key)
            if lease is not None:
                break
            now = time.monotonic()
            if deadline is None or now >= deadline:
                raise LockHeld(self._holder_of(self.run_key) or "unknown holder (the lock expired meanwhile)")
            time.sleep(min(_POLL_SECONDS, deadline - now))
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.incr(self.fence_key)
            pipe.get(self.run_key)
            fence, current = pipe.execute()
        except (RedisError, OSError) as exc:
            self._release(lease)
            raise self._unreachable(exc, "taking the fencing token") from None
        if current is None or self._encode(current) != lease.token:
            # our lease lapsed between SET NX and INCR: the fence would be newer than the new holder's
            raise LocalEnvironmentError(f"lock lost: {self.run_key} expired right after it was taken")
        with self._mutex:
            self._run = lease
            self._fence = int(fence)
        self._start_renewer()

    def release_run(self) -> None:
        with self._mutex:
            lease, self._run = self._run, None
            self._fence = None
        if lease is not None:
            self._release(lease)

    def holder(self) -> str | None:
        self._ensure_open()
        return self._holder_of(self.run_key)

    def document(self, doc_id: str) -> AbstractContextManager[None]:
        return self._document(doc_id)

    @contextlib.contextmanager
    def _document(self, doc_id: str) -> Iterator[None]:
        self._ensure_open()
        key = f"{self.namespace}:doc:{doc_id}"
        lease = self._try_acquire(f"document {doc_id} lock", key)
        if lease is None:
            raise LockHeld(f"document {doc_id} is locked by "
                           f"{self._holder_of(key) or 'another process (the lock expired meanwhile)'}")
        with self._mutex:
            self._docs[id(lease)] = lease
        self._start_renewer()
        stack = self._doc_stack()
        stack.append(lease)
        try:
            yield
        finally:
            stack.remove(lease)
            with self._mutex:
                self._docs.pop(id(lease), None)
            self._release(lease)

    def check(self) -> None:
        from redis import RedisError

        run = self._run
        if run is None:
            raise LocalEnvironmentError("lock lost: the run lock is not held by this process")
        leases = [run, *self._doc_stack()]
        for lease in leases:
            if lease.lost is not None:
                raise LocalEnvironmentError(f"lock lost: {lease.lost}")
        try:
            values = self._client.mget([lease.key for lease in leases])
        except (RedisError, OSError) as exc:
            raise LocalEnvironmentError(
                f"lock lost: cannot verify the lock at {self.url}: {self._describe(exc)}") from None
        for lease, value in zip(leases, values, strict=True):
            if value is None:
                lease.lost = f"{lease.what} {lease.key} expired"
            elif self._encode(value) != lease.token:
                lease.lost = f"{lease.what} {lease.key} is now held by {self._describe_token(value)}"
            if lease.lost is not None:
                raise LocalEnvironmentError(f"lock lost: {lease.lost}")

    def close(self) -> None:
        if self._closed:
            return
        self.release_run()
        with self._mutex:
            leases = list(self._docs.values())
            self._docs.clear()
        for lease in leases:
            self._release(lease)
        self._stop.set()
        renewer = self._renewer
        if renewer is not None and renewer is not threading.current_thread():
            renewer.join(timeout=5)
        self._closed = True
        self._close_client()


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
