"""LibreOffice state never leaks between users: after root made office previews, an unprivileged user still can.

LibreOffice's first start on a machine creates its shared extension cache (Debian:
``/var/spool/libreoffice/uno_packages/cache/...``) with the umask of whoever started it. docsync's soffice ran
under umask 077, so one root run left a 0700 root directory there and every later non-root LibreOffice aborted
("soffice exited with status 134 at start"). docsync's soffice now keeps that cache, its profile and its other
caches in a private directory of its own. CI runs as root, so this test switches to an unprivileged user
(``setpriv``) for the second half; run as non-root it is that user itself.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.preview import PreviewLimits, PreviewService
from tests.corpus import Corpus
from tests.preview.preview_helpers import decode

SHARED_CACHE = Path("/usr/lib/libreoffice/share/uno_packages/cache")
IMPORTED = ("docsync_cli", "PIL", "pypdfium2", "pypdfium2_raw", "pypdfium2_cfg")  # what a preview imports
RENDER = """
import sys
from pathlib import Path
from docsync_cli.preview import PreviewService
with PreviewService(workers=1, private_root=Path(sys.argv[2])) as service:
    data = service.render(Path(sys.argv[1]), "contract.docx")
sys.stdout.buffer.write(data)
"""


def tree(root: Path) -> set[tuple[str, int]]:
    """Every path below ``root`` with its mode (what a start of LibreOffice could have created or changed)."""
    if not root.exists():
        return set()
    out = {(str(root.resolve()), root.resolve().stat().st_mode)}
    for path in root.resolve().rglob("*"):
        try:
            out.add((str(path), path.lstat().st_mode))
        except OSError:
            continue
    return out


@pytest.fixture
def world_readable_dir() -> Iterator[Path]:
    """A 0755 directory outside pytest's private tmp dirs, so another user can read what is copied into it."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="docsync-users-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def copy_code(dest: Path) -> Path:
    """docsync_cli and the libraries a preview imports, copied where any user can read them."""
    import importlib

    for name in IMPORTED:
        module = importlib.import_module(name)
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        for libs in source.parent.glob("*.libs"):  # auditwheel's bundled shared libraries (pillow.libs)
            if not (dest / libs.name).exists():
                shutil.copytree(libs, dest / libs.name)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root needs setpriv (util-linux) to test as an unprivileged user")
    nobody = pwd.getpwnam("nobody")
    return [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]


def interpreter_for(prefix: list[str]) -> str:
    """This Python if the unprivileged user may run it (and it may start itself again: the render children),
    else the system's Python 3.11 (same ABI for the copied libraries)."""
    again = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', 'pass']).returncode)"
    for candidate in (sys.executable, "/usr/bin/python3.11", shutil.which("python3.11") or ""):
        if candidate and subprocess.run([*prefix, candidate, "-c", again], capture_output=True, cwd="/",
                                        check=False).returncode == 0:
            return candidate
    pytest.fail("no Python 3.11 that the unprivileged user can run")


@pytest.mark.needs_soffice
def test_an_unprivileged_users_docx_preview_works_after_root_made_previews(
        corpus: Corpus, tmp_path: Path, world_readable_dir: Path) -> None:
    docx = corpus / "python-docx-test.docx"
    shared_before = tree(SHARED_CACHE)
    # 1. this user (root in CI) makes an office preview, like the README's root demo and test commands do
    with PreviewService(PreviewLimits(timeout_seconds=60.0), workers=1, private_root=tmp_path / "lo") as svc:
        assert decode(svc.render(docx, "contract.docx")).width > 16
    assert tree(SHARED_CACHE) == shared_before, "docsync's LibreOffice wrote into the shared extension cache"
    assert not any(os.scandir(tmp_path / "lo")), "the private LibreOffice directory was not cleaned up"

    # 2. an unprivileged user (the service user) makes one too
    prefix = unprivileged_prefix()
    code = copy_code(world_readable_dir / "code")
    shutil.copy(docx, world_readable_dir / "contract.docx")
    (world_readable_dir / "contract.docx").chmod(0o644)
    private = world_readable_dir / "state"
    private.mkdir(mode=0o777)
    private.chmod(0o777)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code), "HOME": "/nonexistent",
           "LANG": "C.UTF-8"}
    # started from a directory the user cannot enter, like `runuser -u docsync -- docsync sync` typed in /root
    closed = world_readable_dir / "closed"
    closed.mkdir(mode=0o700)
    done = subprocess.run([*prefix, interpreter_for(prefix), "-c", RENDER, str(world_readable_dir / "contract.docx"),
                           str(private / "libreoffice")], env=env, cwd=closed if prefix else world_readable_dir,
                          capture_output=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert decode(done.stdout).width > 16


DETECT = """
import sys
from pathlib import Path
from docsync_cli.preview.office import unreadable_shared_cache
print(unreadable_shared_cache(Path(sys.argv[1])))
"""


def test_a_shared_cache_the_user_cannot_read_is_detected(world_readable_dir: Path) -> None:
    """What `docsync check` warns about: the 0700 root directory a root LibreOffice under umask 077 left."""
    prefix = unprivileged_prefix()
    code = copy_code(world_readable_dir / "code")
    cache = world_readable_dir / "cache"
    (cache / "uno_packages").mkdir(parents=True)
    cache.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(code)}
    python = interpreter_for(prefix)

    def detect() -> str:
        done = subprocess.run([*prefix, python, "-c", DETECT, str(cache)], env=env, cwd="/", capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.strip()

    (cache / "uno_packages").chmod(0o755)
    assert detect() == "None"
    (cache / "uno_packages").chmod(0o700 if prefix else 0o000)  # as root: owned by root; else: not even ours
    try:
        assert detect() == str(cache / "uno_packages")
    finally:
        (cache / "uno_packages").chmod(0o755)
