"""Parent side of a child process that may hang, crash or blow its memory cap.

``ChildProcess`` starts a command in its own session (so its process group is its pid), talks to it
through pipes with a wall-clock deadline on every read, and on a timeout kills the whole group with
SIGKILL and reaps the child: no zombie and no grandchild survive. ``RenderWorker`` is the pipe
protocol of :mod:`docsync_cli.preview.worker` on top of it; a dead worker is started again on the
next request.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from docsync_cli.errors import PreviewError

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds docsync_cli/


class ChildTimeout(Exception):
    pass


class ChildDied(Exception):
    pass


# What a renderer child (LibreOffice parsing client documents) may see of docsync's environment: never the keys.
# Every process docsync starts gets :func:`child_env` (an allow-list), never a copy of ``os.environ``; the render
# worker, the ``import uno`` check, the UNO bridge and LibreOffice, which inherit it from the bridge.
CHILD_ENV_ALLOWED = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "PYTHONPATH",
                     "FONTCONFIG_FILE", "FONTCONFIG_PATH", "XDG_RUNTIME_DIR", "SYSTEMROOT")


def child_env() -> dict[str, str]:
    """A minimal environment for renderer children: locale, paths and the private temp dir, no secrets."""
    env = {k: v for k, v in os.environ.items() if k in CHILD_ENV_ALLOWED or k.startswith("LC_")}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PACKAGE_ROOT) + (os.pathsep + path if path else "")
    return env


class ChildProcess:
    """A child in its own process group, with deadline-bounded line and byte reads from its stdout."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None,
                 stderr: int | None = subprocess.DEVNULL, cwd: str | None = None) -> None:
        self._buf = bytearray()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=cwd,
            start_new_session=True, bufsize=0, close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as err:
            raise ChildDied(f"child {self.pid} stopped reading") from err

    def _fill(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ChildTimeout
        poller = select.poll()  # not select(): works for any fd number
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(max(1, int(remaining * 1000))):
            if time.monotonic() >= deadline:
                raise ChildTimeout
            return
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            raise ChildDied(f"child {self.pid} closed its output")
        self._buf += chunk

    def read_line(self, deadline: float) -> bytes:
        while (end := self._buf.find(b"\n")) < 0:
            self._fill(deadline)
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line

    def read_exact(self, size: int, deadline: float) -> bytes:
        while len(self._buf) < size:
            self._fill(deadline)
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def kill(self) -> None:
        """SIGKILL the whole process group and reap the child."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(None)

    def close(self, grace: float = 2.0) -> None:
        """Close stdin (the child's cue to exit), wait ``grace`` seconds, then kill the group."""
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=grace)
        # Whatever the child left in its group (a grandchild) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._reap(None)

    def _reap(self, timeout: float | None) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout)
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None and not stream.closed:
                with contextlib.suppress(OSError):
                    stream.close()

    def killed_by(self) -> int | None:
        """The number of the signal that ended the child; None while it runs or when it exited by itself."""
        code = self.proc.poll()
        return -code if code is not None and code < 0 else None

    def exit_description(self) -> str:
        code = self.proc.poll()
        if code is None:
            return "still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"


def worker_argv() -> list[str]:
    """The command of a render worker (a function so tests can swap in a misbehaving one)."""
    return [sys.executable, "-m", "docsync_cli.preview.worker"]


class RenderWorker:
    """One pool slot: a long-lived render child, started on first use and after a crash or timeout."""

    def __init__(self) -> None:
        self._child: ChildProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None and self._child.alive() else None

    def request(self, req: dict[str, Any], timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        if self._child is None or not self._child.alive():
            if self._child is not None:
                self._child.kill()
            self._child = ChildProcess(worker_argv(), env=child_env())
        child = self._child
        try:
            child.send(json.dumps(req).encode() + b"\n")
            header = json.loads(child.read_line(deadline))
            if header.get("ok"):
                return child.read_exact(int(header["size"]), deadline)
        except ChildTimeout:
            self.stop(kill=True)
            raise PreviewError(f"rendering took longer than {timeout:.1f} s", "timeout") from None
        except (ChildDied, ValueError) as err:
            child.kill()
            self._child = None
            if child.killed_by() == signal.SIGXCPU:  # RLIMIT_CPU's soft limit
                raise PreviewError("rendering used up its CPU time", "timeout") from err
            raise PreviewError(f"the render process died ({child.exit_description()})", "preview_failed") from err
        raise PreviewError(str(header.get("reason", "rendering failed")), str(header.get("code", "preview_failed")))

    def stop(self, *, kill: bool = False) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        if kill:
            child.kill()
        else:
            child.close()
