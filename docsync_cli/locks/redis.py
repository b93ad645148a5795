"""The Redis lock backend, for several hosts: redis-py's ``Lock``.

``SET key token NX PX ttl``; release and extend are Lua compare-and-act scripts, so a release never deletes a
key that another holder has taken since.

* Keys: ``{namespace}:run`` (run lock), ``{namespace}:doc:{doc_id}`` (document locks),
  ``{namespace}:installation`` (the installation id the hosts share). The token stored in a lock key names its
  holder (pid, host, start time, plus a random nonce) so :meth:`RedisLocks.holder` can say who holds it.
* A lease, not a lock: each key expires after ``ttl_seconds``. A daemon thread extends every held lock
  every ``ttl/3``. If an extension fails (the key expired or changed hands: ``LockNotOwnedError``; or
  Redis is unreachable) the lock is marked lost, and the next :meth:`RedisLocks.check` raises
  :class:`LocalEnvironmentError`. ``check()`` also asks Redis, in one round-trip, whether the run lock
  and the document locks held by the calling thread still carry our token; it fails closed when Redis
  cannot be reached.
* Redis unreachable at start: :class:`LocalEnvironmentError`; docsync never falls back to running
  unlocked. Passwords from the URL never appear in messages (``redis://:***@host``, ``secrets.mask_url``).
* Limits (Kleppmann, "How to do distributed locking", 2016): a lease cannot guarantee mutual exclusion
  on its own. A run that pauses (GC, swap, SIGSTOP, a slow disk) after a successful ``check()`` and for
  longer than the TTL may still send one write while another run already holds the lock. ``check()``
  before every remote write narrows that window to a single request; nothing closes it, because neither
  EspoCRM nor xAI is given a fencing token to check (docsync has none). A single Redis instance is also a
  single point of truth: a failover that loses the key lets a second holder in.

Imports: the standard library, redis (lazily: importing this module does not load it), ``errors``,
``secrets`` and ``locks.common``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from docsync_cli.errors import ConfigError, LocalEnvironmentError, LockHeld
from docsync_cli.locks.common import NEVER_UNLOCKED, POLL_SECONDS, Identity, logger
from docsync_cli.secrets import mask_url, scrub, url_secrets

if TYPE_CHECKING:
    import redis
    import redis.lock


@dataclass
class _Lease:
    what: str
    key: str
    lock: redis.lock.Lock
    token: bytes
    lost: str | None = None


class RedisLocks:
    """:class:`~docsync_cli.locks.Locks` over redis-py's ``Lock`` (leases with a renewal thread)."""

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
        self._secrets = url_secrets(url)
        self._mutex = threading.RLock()  # reentrant: a signal handler may release mid-acquire
        self._local = threading.local()
        self._run: _Lease | None = None
        self._docs: dict[int, _Lease] = {}
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
                f"cannot reach Redis at {self.url}: {self._describe(exc)}; {NEVER_UNLOCKED}") from None

    # -- helpers ------------------------------------------------------------------------------------

    def _describe(self, exc: BaseException) -> str:
        return scrub(f"{type(exc).__name__}: {exc}", self._secrets)

    def _unreachable(self, exc: BaseException, doing: str) -> LocalEnvironmentError:
        return LocalEnvironmentError(
            f"cannot reach Redis at {self.url} ({doing}): {self._describe(exc)}; {NEVER_UNLOCKED}")

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
        return Lock(self._client, key, timeout=self.ttl_seconds, sleep=POLL_SECONDS, blocking=False,
                    thread_local=False, raise_on_release_error=False)

    def _try_acquire(self, what: str, key: str) -> _Lease | None:
        from redis import RedisError

        lock = self._new_lock(key)
        token = Identity.here().to_json()
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
        record = Identity.from_json(self._encode(value))
        return record.describe() if record is not None else "unknown holder (foreign lock token)"

    def _doc_stack(self) -> list[_Lease]:
        stack: list[_Lease] | None = getattr(self._local, "docs", None)
        if stack is None:
            stack = []
            self._local.docs = stack
        return stack

    def _ensure_open(self) -> None:
        if self._closed:
            raise LocalEnvironmentError(f"the Redis lock client for {self.url} is closed; {NEVER_UNLOCKED}")

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

    def acquire_run(self, wait_seconds: float | None = None) -> None:
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
            time.sleep(min(POLL_SECONDS, deadline - now))
        with self._mutex:
            self._run = lease
        self._start_renewer()

    def release_run(self) -> None:
        with self._mutex:
            lease, self._run = self._run, None
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
