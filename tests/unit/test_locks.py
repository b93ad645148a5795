"""Run lock and document locks: file backend (flock) and Redis backend (real redis-server on loopback).

Catalogue entries 9-14 of reliability.md: overlapping runs, stale lock after SIGKILL, ENOLCK / read-only
state dir, Redis lease lost, Redis unreachable or lost mid-run, release never deletes another's lock.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from docsync_cli.errors import ConfigError, LocalEnvironmentError, LockHeld
from docsync_cli.locks import FileLocks, RedisLocks, make_locks
from tests.as_nobody import in_a_child_as_nobody
from tests.redis_server import RedisServer, redis_server_binary

REPO = Path(__file__).resolve().parents[2]
MakeLocks = Callable[..., RedisLocks]

# A helper process that takes a lock, says "ready", and obeys "release"/"exit" lines on stdin.
_HOLDER = r"""
import sys
from pathlib import Path
from docsync_cli.locks import FileLocks
locks = FileLocks(Path(sys.argv[1]))
kind = sys.argv[2]
if kind == "run":
    locks.acquire_run()
    ctx = None
else:
    ctx = locks.document(sys.argv[3])
    ctx.__enter__()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "release":
        if ctx is None:
            locks.release_run()
        else:
            ctx.__exit__(None, None, None)
        print("released", flush=True)
    elif line.strip() == "exit":
        break
"""


class Holder:
    def __init__(self, state_dir: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, str(state_dir), *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            _out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"holder did not start: {line!r} {err}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def holders() -> Iterator[list[Holder]]:
    started: list[Holder] = []
    yield started
    for holder in started:
        holder.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


# ---------------------------------------------------------------------------------------------------
# file backend


def test_file_run_lock_creates_private_state_and_holder_record(state_dir: Path) -> None:
    locks = FileLocks(state_dir)
    locks.acquire_run()
    try:
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
        info = state_dir / "docsync.lock.json"
        assert stat.S_IMODE(info.stat().st_mode) == 0o600
        record = json.loads(info.read_text())
        assert record["pid"] == os.getpid()
        holder = locks.holder()
        assert holder is not None and holder.startswith(f"pid {os.getpid()} on ") and " since " in holder
        locks.check()
    finally:
        locks.close()
    assert not info.exists()
    assert locks.holder() is None


def test_file_second_process_gets_lock_held_naming_the_holder(state_dir: Path, holders: list[Holder]) -> None:
    holder = Holder(state_dir, "run")
    holders.append(holder)
    locks = FileLocks(state_dir)
    started = time.monotonic()
    with pytest.raises(LockHeld) as caught:
        locks.acquire_run()
    assert time.monotonic() - started < 5  # at once, no waiting
    assert f"pid {holder.pid} on " in caught.value.holder
    assert locks.holder() == caught.value.holder


def test_file_sigkilled_holder_leaves_no_stale_lock(state_dir: Path, holders: list[Holder]) -> None:
    holder = Holder(state_dir, "run")
    holders.append(holder)
    holder.kill9()
    assert (state_dir / "docsync.lock.json").exists()  # the record of the dead run is left behind
    locks = FileLocks(state_dir)
    assert locks.holder() is None  # ...but does not count: the kernel dropped the flock
    locks.acquire_run()  # at once, no wait_seconds
    try:
        record = json.loads((state_dir / "docsync.lock.json").read_text())
        assert record["pid"] == os.getpid()
        assert locks.holder() == f"pid {os.getpid()} on {record['host']} since {record['since']}"
    finally:
        locks.close()


def test_file_planted_record_of_dead_pid_on_other_host_is_not_held(state_dir: Path) -> None:
    state_dir.mkdir(mode=0o700)
    (state_dir / "docsync.lock").touch()
    (state_dir / "docsync.lock.json").write_text(
        json.dumps({"pid": 999999, "host": "elsewhere", "since": "2020-01-01T00:00:00Z", "nonce": "x"}))
    locks = FileLocks(state_dir)
    assert locks.holder() is None
    locks.acquire_run()
    locks.close()


def test_file_wait_seconds_acquires_after_release(state_dir: Path, holders: list[Holder]) -> None:
    holder = Holder(state_dir, "run")
    holders.append(holder)
    locks = FileLocks(state_dir)
    with pytest.raises(LockHeld):
        locks.acquire_run()
    answers: list[str] = []
    timer = threading.Timer(0.5, lambda: answers.append(holder.send("release")))
    timer.start()
    started = time.monotonic()
    try:
        locks.acquire_run(wait_seconds=30)
    finally:
        timer.join()
    assert answers == ["released"]
    assert time.monotonic() - started < 30
    locks.check()
    locks.close()


def test_file_wait_seconds_gives_up_with_lock_held(state_dir: Path, holders: list[Holder]) -> None:
    holders.append(Holder(state_dir, "run"))
    started = time.monotonic()
    with pytest.raises(LockHeld):
        FileLocks(state_dir).acquire_run(wait_seconds=0.5)
    assert 0.4 < time.monotonic() - started < 10


def test_file_two_lock_objects_in_one_process_contend(state_dir: Path) -> None:
    first, second = FileLocks(state_dir), FileLocks(state_dir)
    first.acquire_run()
    with pytest.raises(LockHeld) as caught:
        second.acquire_run()
    assert f"pid {os.getpid()}" in caught.value.holder
    first.release_run()
    first.release_run()  # idempotent
    second.acquire_run()
    second.close()


def test_file_document_lock_contention_across_processes(state_dir: Path, holders: list[Holder]) -> None:
    holder = Holder(state_dir, "doc", "doc-1")
    holders.append(holder)
    locks = FileLocks(state_dir)
    with pytest.raises(LockHeld) as caught, locks.document("doc-1"):
        pytest.fail("must not enter")
    assert "doc-1" in caught.value.holder and f"pid {holder.pid}" in caught.value.holder
    with locks.document("doc-2"):
        pass
    assert holder.send("release") == "released"
    with locks.document("doc-1"):
        pass


def test_file_document_lock_contention_in_one_process(state_dir: Path) -> None:
    locks = FileLocks(state_dir)
    with locks.document("a/b:c"), pytest.raises(LockHeld), FileLocks(state_dir).document("a/b:c"):
        pass
    with FileLocks(state_dir).document("a/b:c"):
        pass


def test_file_check_detects_removed_or_replaced_lock_files(state_dir: Path) -> None:
    locks = FileLocks(state_dir)
    with pytest.raises(LocalEnvironmentError, match="lock lost"):
        locks.check()  # nothing held: fail closed
    locks.acquire_run()
    locks.check()
    (state_dir / "docsync.lock").unlink()
    with pytest.raises(LocalEnvironmentError, match=r"lock lost: .*removed"):
        locks.check()
    (state_dir / "docsync.lock").touch()
    with pytest.raises(LocalEnvironmentError, match=r"lock lost: .*replaced"):
        locks.check()
    locks.close()

    other = FileLocks(state_dir)
    other.acquire_run()
    with other.document("d1"):
        other.check()
        doc_file = next((state_dir / "locks").iterdir())
        doc_file.unlink()
        with pytest.raises(LocalEnvironmentError, match="lock lost: document d1"):
            other.check()
    other.check()  # the document lock is no longer in hand
    other.close()


def test_file_enolck_fails_closed(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    locks = FileLocks(state_dir)
    with pytest.raises(LocalEnvironmentError) as caught:
        locks.acquire_run()
    message = str(caught.value)
    assert f"cannot lock {state_dir / 'docsync.lock'}" in message
    assert "ENOLCK" in message and "never runs unlocked" in message
    with pytest.raises(LocalEnvironmentError, match="never runs unlocked"), locks.document("d"):
        pass
    with pytest.raises(LocalEnvironmentError, match="lock lost"):
        locks.check()


@pytest.mark.parametrize("state_exists", [True, False])
def test_file_read_only_state_dir_fails_closed(state_exists: bool) -> None:
    base = Path(tempfile.mkdtemp(prefix="docsync-ro-"))
    try:
        # not root: we own the dir and drop our own write permission; root: the child becomes nobody
        parent_mode = 0o500 if os.geteuid() != 0 else 0o755
        state_dir = base / "state"
        if state_exists:
            state_dir.mkdir(mode=0o755)
            state_dir.chmod(0o500 if os.geteuid() != 0 else 0o755)
        base.chmod(parent_mode)
        with tempfile.TemporaryDirectory() as warmup:  # load every lazy import before the fork
            warm = FileLocks(Path(warmup) / "state")
            warm.acquire_run()
            warm.close()
        kind, message = in_a_child_as_nobody(lambda: FileLocks(state_dir).acquire_run())
    finally:
        base.chmod(0o700)
        if state_dir.exists():
            state_dir.chmod(0o700)
        shutil.rmtree(base)
    assert kind == "LocalEnvironmentError", message
    assert "cannot lock" in message and "not writable" in message and "never runs unlocked" in message


# ---------------------------------------------------------------------------------------------------
# make_locks, redaction


def test_make_locks(state_dir: Path) -> None:
    assert isinstance(make_locks("file", state_dir, None, 60), FileLocks)
    with pytest.raises(ConfigError):
        make_locks("redis", state_dir, None, 60)
    with pytest.raises(ConfigError):
        make_locks("zookeeper", state_dir, None, 60)


def test_redis_unreachable_at_start_fails_closed_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(LocalEnvironmentError) as caught:
        RedisLocks("redis://:hunter2@127.0.0.1:1", ttl_seconds=5)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:1")
    assert "hunter2" not in message and "never runs unlocked" in message
    with pytest.raises(LocalEnvironmentError, match=r"cannot reach Redis at redis://127\.0\.0\.1:1"):
        make_locks("redis", Path("/nonexistent"), "redis://127.0.0.1:1", 5)


# ---------------------------------------------------------------------------------------------------
# redis backend (real redis-server)

needs_redis = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    with RedisServer() as server:
        yield server


@pytest.fixture
def namespace() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_redis_locks(redis_server: RedisServer, namespace: str) -> Iterator[MakeLocks]:
    created: list[RedisLocks] = []

    def make(ttl_seconds: float = 30.0, url: str | None = None) -> RedisLocks:
        locks = RedisLocks(url or redis_server.url, namespace=namespace, ttl_seconds=ttl_seconds)
        created.append(locks)
        return locks

    yield make
    for locks in created:
        locks.close()


def _raw(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


@pytest.mark.needs_redis
@needs_redis
def test_redis_contention_between_two_holders(make_redis_locks: MakeLocks, namespace: str) -> None:
    first, second = make_redis_locks(), make_redis_locks()
    first.acquire_run()
    started = time.monotonic()
    with pytest.raises(LockHeld) as caught:
        second.acquire_run()
    assert time.monotonic() - started < 5
    assert caught.value.holder.startswith(f"pid {os.getpid()} on ")
    assert second.holder() == first.holder() == caught.value.holder
    first.check()
    with pytest.raises(LocalEnvironmentError, match="lock lost"):
        second.check()
    first.release_run()
    first.release_run()  # idempotent
    assert second.holder() is None
    second.acquire_run()
    second.check()


@pytest.mark.needs_redis
@needs_redis
def test_redis_wait_seconds_acquires_after_release(make_redis_locks: MakeLocks) -> None:
    first, second = make_redis_locks(), make_redis_locks()
    first.acquire_run()
    timer = threading.Timer(0.5, first.release_run)
    timer.start()
    try:
        second.acquire_run(wait_seconds=30)
    finally:
        timer.join()
    second.check()


@pytest.mark.needs_redis
@needs_redis
def test_redis_document_lock_contention(make_redis_locks: MakeLocks, namespace: str,
                                        redis_server: RedisServer) -> None:
    first, second = make_redis_locks(), make_redis_locks()
    first.acquire_run()
    with first.document("doc-1"):
        assert _raw(redis_server).exists(f"{namespace}:doc:doc-1")
        first.check()
        with pytest.raises(LockHeld) as caught, second.document("doc-1"):
            pytest.fail("must not enter")
        assert "doc-1" in caught.value.holder and f"pid {os.getpid()}" in caught.value.holder
        with second.document("doc-2"):
            pass
    assert not _raw(redis_server).exists(f"{namespace}:doc:doc-1")
    with second.document("doc-1"):
        pass


@pytest.mark.needs_redis
@needs_redis
def test_redis_renewal_keeps_the_lease(make_redis_locks: MakeLocks, namespace: str,
                                       redis_server: RedisServer) -> None:
    locks = make_redis_locks(ttl_seconds=2.0)
    locks.acquire_run()
    with locks.document("d"):
        time.sleep(3.5)  # longer than the TTL: only renewal keeps the keys
        locks.check()
        raw = _raw(redis_server)
        assert raw.pttl(f"{namespace}:run") > 0
        assert raw.pttl(f"{namespace}:doc:d") > 0


@pytest.mark.needs_redis
@needs_redis
def test_redis_expired_lease_is_noticed_and_release_leaves_new_holder_alone(
        make_redis_locks: MakeLocks, namespace: str, redis_server: RedisServer) -> None:
    first = make_redis_locks(ttl_seconds=1.0)
    second = make_redis_locks(ttl_seconds=30.0)
    first.acquire_run()
    first._renewal_enabled = False  # the "paused process" of catalogue entry 12
    raw = _raw(redis_server)
    deadline = time.monotonic() + 10
    while raw.exists(f"{namespace}:run") and time.monotonic() < deadline:
        time.sleep(0.05)
    second.acquire_run()
    new_holder = second.holder()
    with pytest.raises(LocalEnvironmentError, match="lock lost") as caught:
        first.check()
    assert "now held by" in str(caught.value) or "expired" in str(caught.value)
    with pytest.raises(LocalEnvironmentError, match="lock lost"):
        first.check()  # stays lost
    first.release_run()  # compare-and-delete: must not remove the second holder's key
    assert raw.exists(f"{namespace}:run")
    assert second.holder() == new_holder
    second.check()


@pytest.mark.needs_redis
@needs_redis
def test_redis_failed_renewal_marks_lock_lost(make_redis_locks: MakeLocks, namespace: str,
                                              redis_server: RedisServer) -> None:
    locks = make_redis_locks(ttl_seconds=1.0)
    locks.acquire_run()
    raw = _raw(redis_server)
    raw.set(f"{namespace}:run", "someone else")
    deadline = time.monotonic() + 10
    while locks._run is not None and locks._run.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LocalEnvironmentError, match=r"lock lost: run lock .* expired before it could be renewed"):
        locks.check()
    locks.release_run()
    assert raw.get(f"{namespace}:run") == b"someone else"


@pytest.mark.needs_redis
@needs_redis
def test_redis_killed_mid_run_makes_check_fail_closed() -> None:
    with RedisServer() as server:
        locks = RedisLocks(server.url, namespace="kill", ttl_seconds=30)
        try:
            locks.acquire_run()
            with locks.document("d"):
                locks.check()
                server.kill()
                started = time.monotonic()
                with pytest.raises(LocalEnvironmentError, match="lock lost: cannot verify the lock at"):
                    locks.check()
                assert time.monotonic() - started < 10
                with pytest.raises(LocalEnvironmentError, match="cannot reach Redis"):
                    locks.holder()
            locks.release_run()  # does not raise: the key expires by itself
        finally:
            locks.close()


@pytest.mark.needs_redis
@needs_redis
def test_redis_password_is_never_shown() -> None:
    with RedisServer(password="s3cr3t-pw") as server:
        good = RedisLocks(server.url, namespace="pw", ttl_seconds=30)
        try:
            good.acquire_run()
            assert good.url == server.url.replace("s3cr3t-pw", "***")
            server.kill()
            with pytest.raises(LocalEnvironmentError) as caught:
                good.check()
            assert "s3cr3t-pw" not in str(caught.value) and ":***@" in str(caught.value)
        finally:
            good.close()
    with RedisServer(password="s3cr3t-pw") as server:
        wrong = server.url.replace("s3cr3t-pw", "wrong-pw")
        with pytest.raises(LocalEnvironmentError) as caught:
            RedisLocks(wrong, ttl_seconds=30)
        assert "wrong-pw" not in str(caught.value) and "redis://:***@127.0.0.1" in str(caught.value)
