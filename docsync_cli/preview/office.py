"""Office documents through one warm LibreOffice, driven over UNO by :mod:`uno_bridge`.

``OfficeConverter`` starts ``<uno python> uno_bridge.py`` (Debian's ``/usr/bin/python3`` with
python3-uno) in its own process group on first use; the bridge starts one headless ``soffice`` with
a private profile and converts documents to a one-page PDF on request. Each conversion has a
wall-clock deadline; on a timeout, a crash or a fatal answer the whole group (bridge + soffice) is
killed and reaped, and the next document starts a fresh one. soffice runs under ``RLIMIT_AS``.

The start (about 1-3 s, once per run) has its own budget, ``STARTUP_SECONDS`` or the document's
timeout, whichever is longer, so a short per-document timeout cannot starve the converter forever.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

from docsync_cli.errors import PreviewError
from docsync_cli.preview.child import ChildDied, ChildProcess, ChildTimeout, child_env
from docsync_cli.preview.tools import ToolStatus

STARTUP_SECONDS = 30.0
MIN_OFFICE_MEMORY = 2 * 1024 * 1024 * 1024  # soffice maps ~800 MB of address space when idle
BRIDGE_SCRIPT = Path(__file__).with_name("uno_bridge.py")
UNO_PYTHONS = ("/usr/bin/python3", "/usr/lib/libreoffice/program/python")
INSTALL_HINT_SOFFICE = "missing: install libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui"
INSTALL_HINT_UNO = "missing: install python3-uno"


def find_soffice() -> str | None:
    return shutil.which("soffice") or shutil.which("libreoffice")


@lru_cache(maxsize=1)
def find_uno_python() -> str | None:
    """The first interpreter that can ``import uno`` (checked once per process)."""
    for candidate in UNO_PYTHONS:
        if not Path(candidate).is_file():
            continue
        try:
            done = subprocess.run([candidate, "-c", "import uno"], capture_output=True, timeout=20, check=False,
                                  env=child_env())  # never docsync's environment (the keys)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0:
            return candidate
    return None


def private_parent(private_root: Path | None) -> Path | None:
    """Where the per-start private directory goes: ``private_root`` (docsync passes its state dir's
    ``libreoffice/``) if it can be made, else systemd's ``$RUNTIME_DIRECTORY``, else the temp dir (``None``)."""
    if private_root is None:
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return Path(runtime) if runtime else None
    try:
        private_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None  # e.g. an admin's one-off `docsync preview` with a state dir that is not theirs
    return private_root


SHARED_CACHE = Path("/usr/lib/libreoffice/share/uno_packages/cache")  # Debian: -> /var/spool/libreoffice/...


def unreadable_shared_cache(root: Path = SHARED_CACHE) -> Path | None:
    """The first directory of LibreOffice's shared extension cache this user cannot enter, if any."""
    try:
        real = root.resolve()
        if not real.is_dir():
            return None
        for path in (real, *sorted(p for p in real.rglob("*") if p.is_dir())):
            if not os.access(path, os.R_OK | os.X_OK):
                return path
    except OSError as exc:
        return Path(exc.filename) if exc.filename else root
    return None


class OfficeConverter:
    """One warm LibreOffice. Everything it writes (profile, extension caches, fontconfig cache, logs) lives in
    a fresh private directory (mode 0700) under ``private_root``, deleted when the converter stops; nothing
    shared (``/var/spool/libreoffice``, ``~/.config``) is created or read."""

    def __init__(self, memory_bytes: int, private_root: Path | None = None) -> None:
        self._memory = max(memory_bytes, MIN_OFFICE_MEMORY)
        self._private_root = private_root
        self._lock = threading.Lock()
        self._child: ChildProcess | None = None
        self._profile: Path | None = None

    def status(self) -> ToolStatus:
        soffice = find_soffice()
        if soffice is None:
            return ToolStatus("libreoffice", False, INSTALL_HINT_SOFFICE)
        if find_uno_python() is None:
            return ToolStatus("libreoffice", False, INSTALL_HINT_UNO)
        return ToolStatus("libreoffice", True, soffice)

    @property
    def pids(self) -> list[int]:
        child = self._child
        return [child.pid] if child is not None and child.alive() else []

    def convert(self, src: Path, ext: str, workdir: Path, deadline: float) -> Path:
        """Convert ``src`` (content type ``ext``) to a PDF of its first page inside ``workdir``."""
        with self._lock:
            child = self._ensure_started(deadline)
            inp = workdir / f"in.{ext}"
            out = workdir / "out.pdf"
            shutil.copyfile(src, inp)
            try:
                child.send(json.dumps({"src": str(inp), "dst": str(out)}).encode() + b"\n")
                answer = json.loads(child.read_line(deadline))
            except ChildTimeout:
                self._stop_locked(kill=True)
                raise PreviewError("LibreOffice took too long to convert the document", "timeout") from None
            except (ChildDied, ValueError) as err:
                self._stop_locked(kill=True)
                raise PreviewError("LibreOffice died while converting the document", "preview_failed") from err
            if not answer.get("ok"):
                if answer.get("fatal"):
                    self._stop_locked(kill=True)
                raise PreviewError(str(answer.get("reason", "conversion failed")),
                                   str(answer.get("code", "preview_failed")))
        if not out.is_file() or out.stat().st_size == 0:
            raise PreviewError("LibreOffice reported success but wrote no PDF", "blank_output")
        return out

    def _ensure_started(self, deadline: float) -> ChildProcess:
        if self._child is not None and self._child.alive():
            return self._child
        self._stop_locked(kill=True)
        soffice = find_soffice()
        uno_python = find_uno_python()
        if soffice is None:
            raise PreviewError("LibreOffice (soffice) is not installed", "converter_missing")
        if uno_python is None:
            raise PreviewError("no Python with the uno module (python3-uno) is installed", "converter_missing")
        self._profile = Path(tempfile.mkdtemp(prefix="docsync-lo-", dir=private_parent(self._private_root)))
        # The allow-listed environment, never a copy of docsync's: the bridge and soffice inherit it (no keys).
        env = child_env() | {"HOME": str(self._profile), "XDG_CACHE_HOME": str(self._profile / "cache"),
                             "XDG_CONFIG_HOME": str(self._profile / "config")}
        log = (self._profile / "bridge.log").open("wb")
        try:
            child = ChildProcess(
                [uno_python, str(BRIDGE_SCRIPT), soffice, str(self._profile / "profile"), str(self._memory)],
                stderr=log.fileno(), env=env,
                cwd=str(self._profile),  # soffice exits 2 at start in a working directory it cannot enter
            )
        finally:
            log.close()
        self._child = child
        start_deadline = max(deadline, time.monotonic() + STARTUP_SECONDS)
        try:
            ready = json.loads(child.read_line(start_deadline))
        except ChildTimeout:
            self._stop_locked(kill=True)
            raise PreviewError("LibreOffice did not start in time", "timeout") from None
        except (ChildDied, ValueError) as err:
            detail = self._log_tail()
            self._stop_locked(kill=True)
            raise PreviewError(f"LibreOffice failed to start: {detail}", "converter_missing") from err
        if not ready.get("ready"):
            self._stop_locked(kill=True)
            raise PreviewError("LibreOffice bridge answered nonsense at start", "converter_missing")
        return child

    def _log_tail(self) -> str:
        if self._profile is None:
            return ""
        try:
            text = (self._profile / "bridge.log").read_text(errors="replace")
        except OSError:
            return ""
        return text.strip().splitlines()[-1][:300] if text.strip() else "no message"

    def _stop_locked(self, *, kill: bool) -> None:
        child, self._child = self._child, None
        if child is not None:
            if kill:
                child.kill()
            else:
                child.close(grace=10.0)
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None

    def close(self) -> None:
        with self._lock:
            self._stop_locked(kill=False)
