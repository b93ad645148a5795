"""A throw-away ``redis-server`` on 127.0.0.1 for tests (lock tests now, end-to-end tests later).

Usage::

    from tests.redis_server import RedisServer, require_redis_server

    binary = require_redis_server()          # pytest.skip(...) when redis-server is not installed
    with RedisServer(binary) as server:      # free port, --save '' --appendonly no, temp dir
        client = redis.Redis.from_url(server.url)
        server.kill()                        # SIGKILL mid-test ("Redis lost during the run")

The server listens on loopback only, persists nothing, and is stopped (SIGTERM, then SIGKILL) on exit.
``redis-server --port 0`` would disable TCP entirely, so a free port is picked by binding port 0 first;
a lost race for that port is retried with a new one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

_CANDIDATES = ("/usr/bin/redis-server", "/usr/local/bin/redis-server")


def redis_server_binary() -> str | None:
    """Path of redis-server, or None when it is not installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    for candidate in _CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def require_redis_server() -> str:
    """Path of redis-server; skips the calling test when it is not installed."""
    import pytest

    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed")
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1:<free port>, with its own temporary working directory."""

    def __init__(self, binary: str | None = None, *, password: str | None = None,
                 startup_timeout: float = 10.0) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = found
        self.password = password
        self.startup_timeout = startup_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("redis-server is not running")
        return self.process.pid

    @property
    def log_path(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("redis-server was never started")
        return Path(self._tmp.name) / "redis.log"

    def start(self) -> RedisServer:
        if self.process is not None:
            raise RuntimeError("redis-server is already running")
        self._tmp = tempfile.TemporaryDirectory(prefix="docsync-redis-")
        last_error = ""
        for _attempt in range(5):
            self.port = _free_port()
            args = [
                self.binary,
                "--port", str(self.port),
                "--bind", self.host,
                "--save", "",
                "--appendonly", "no",
                "--dir", self._tmp.name,
                "--daemonize", "no",
                "--logfile", str(self.log_path),
            ]
            if self.password:
                args += ["--requirepass", self.password]
            self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, cwd=self._tmp.name)
            if self._wait_ready():
                return self
            last_error = self._log_tail()
            self._terminate()
        self._cleanup_dir()
        raise RuntimeError(f"redis-server did not start: {last_error}")

    def _ping(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                command = b"PING\r\n" if not self.password else (
                    f"AUTH {self.password}\r\nPING\r\n".encode())
                sock.sendall(command)
                reply = b""
                while b"PONG" not in reply:
                    chunk = sock.recv(128)
                    if not chunk:
                        return False
                    reply += chunk
                return True
        except OSError:
            return False

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if self._ping():
                return True
            time.sleep(0.05)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (simulates Redis dying mid-run); the temp dir is kept until stop()."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def _terminate(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def _cleanup_dir(self) -> None:
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()
            self._tmp = None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and remove its directory. Idempotent."""
        self._terminate()
        self._cleanup_dir()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
