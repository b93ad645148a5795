"""The README's production install, run literally, then `check`, `sync` and `status` as the service user.

The fenced block under "## Install for production" is executed line by line with bash (``set -euo pipefail``) in a
copy of the checkout, with three relocations so that the test never touches the host's real installation (and two
engineers' test runs never collide): ``/opt/docsync``, ``/usr/local/bin`` and ``/var/lib/docsync`` move under a
temporary prefix, and the user ``docsync`` is a throw-away system user (removed afterwards). The ``apt-get`` lines
are not run (``scripts/setup.sh`` installed the same packages; ``test_readme_packages_are_what_setup_installs``
keeps the lists equal). Everything else - the fresh venv from the system's Python 3.11, the wheel built from the
checkout, ``useradd``, ``install -d -o``, ``runuser`` - runs as written. Run as root (CI) the service user is a
real unprivileged user; run as an ordinary user, that user plays the service user.

Then, against ``docsync sandbox serve`` started from the installed wheel: ``check``, ``sync`` and ``status`` as the
service user with the keys in root:group 0640 files (docs/scheduling.md step 3), DOCX/ODT previews included (after
root made LibreOffice previews, see tests/preview/test_office_users.py), and the two first-week failures: a state
directory a root run left behind (owner and ``chown`` named, by ``sync`` and ``check``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from docsync_sandbox.seed import FIRM_DOCUMENTS
from tests.e2e.cli_env import serve_exports

ROOT = Path(__file__).resolve().parents[2]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "__pycache__", "build", "dist", "*.egg-info", ".mypy_cache",
                                     ".ruff_cache", ".pytest_cache", ".hypothesis", "bench", "docsync-demo-*.png")

pytestmark = pytest.mark.slow


def readme_block(heading: str = "## Install for production") -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def apt_packages(lines: list[str]) -> set[str]:
    found: set[str] = set()
    for line in lines:
        if re.match(r"(sudo )?apt(-get)? install", line.strip()):
            found |= {word for word in line.split()[2:] if not word.startswith("-")}
    return found


def test_readme_packages_are_what_setup_installs() -> None:
    """The production install names only packages setup.sh (hence CI) installs: the no-GUI LibreOffice set."""
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    array = setup.split("APT_PACKAGES=(", 1)[1].split("\n)", 1)[0]
    listed = {word for line in array.splitlines() for word in line.split("#", 1)[0].split()}
    wanted = apt_packages(readme_block()) | apt_packages(
        (ROOT / "docs" / "scheduling.md").read_text().split("### 1.", 1)[1].split("### 2.", 1)[0].splitlines())
    assert "libreoffice-writer-nogui" in wanted
    assert wanted - {"python3.11"} <= listed, wanted - listed
    assert any(line.startswith("apt-get update") for line in readme_block())


@dataclass
class Install:
    prefix: Path
    user: str
    group: str
    run_as: list[str]  # prefix that runs a command as the service user ([] when we are that user)
    docsync: Path
    state_dir: Path
    env: dict[str, str]
    transcript: str

    def as_user(self, *args: str, extra: dict[str, str] | None = None,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        # env -i: exactly ``env`` (the runner's ESPOCRM_*/XAI_*/DOCSYNC_* variables, e.g. a real CRM's, stay out)
        return subprocess.run([*self.run_as, "env", "-i", *(f"{k}={v}" for k, v in (self.env | (extra or {})).items()),
                               str(self.docsync), *args], capture_output=True, text=True, timeout=timeout,
                              cwd="/", check=False)


def relocate(line: str, prefix: Path, user: str) -> str:
    line = line.replace("/opt/docsync", f"{prefix}/opt/docsync").replace("/usr/local/bin", f"{prefix}/bin")
    line = line.replace("/var/lib/docsync", f"{prefix}/var/lib/docsync")
    line = re.sub(r"(?<=-u |-o |-g )docsync\b", user, line)
    if line.startswith("useradd"):
        line = re.sub(r" docsync$", f" {user}", line)
    return line


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    prefix = Path(tempfile.mkdtemp(prefix="docsync-prod-", dir="/tmp"))
    prefix.chmod(0o755)
    root = os.geteuid() == 0
    user = f"dsci{uuid.uuid4().hex[:8]}" if root else os.environ.get("USER", "") or str(os.geteuid())
    src = prefix / "src"
    shutil.copytree(ROOT, src, ignore=COPY_IGNORE)
    (prefix / "bin").mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_", "VIRTUAL_ENV", "PYTHON"))} | {
        "PATH": f"{prefix}/bin:{PATH}"}
    lines = []
    for line in readme_block():
        if line.startswith("apt-get"):
            continue
        if not root and line.startswith(("useradd", "install -d -o")):
            line = f"install -d -m 0700 {prefix}/var/lib/docsync" if line.startswith("install") else ""
        if not root:
            line = line.replace("runuser -u docsync -- ", "")
        if "docsync check" in line:
            continue  # needs the emulators: run below, as the service user, like the README says
        lines.append(relocate(line, prefix, user))
    if not root:
        (prefix / "var" / "lib").mkdir(parents=True)
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ {line}'\n{line}" for line in lines if line)
    done = subprocess.run(["bash", "-c", script], cwd=src, env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    transcript = done.stdout + done.stderr
    try:
        assert done.returncode == 0, transcript[-4000:]
        group = subprocess.run(["id", "-gn", user], capture_output=True, text=True, check=True).stdout.strip()
        run_as = ["runuser", "-u", user, "--"] if root else []
        yield Install(prefix, user, group, run_as, prefix / "bin" / "docsync", prefix / "var" / "lib" / "docsync",
                      env, transcript)
    finally:
        if root and subprocess.run(["id", user], capture_output=True, check=False).returncode == 0:
            subprocess.run(["userdel", user], capture_output=True, check=False)
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def serve(install: Install) -> Iterator[dict[str, str]]:
    """`docsync sandbox serve` from the installed wheel (its seed corpus is package data); stopped with SIGTERM."""
    proc = subprocess.Popen([str(install.docsync), "sandbox", "serve", "--processing-delay", "0"], cwd=install.prefix,
                            env=install.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        exports, _ = serve_exports(proc.stdout)
        assert "ESPOCRM_URL" in exports, proc.stderr.read() if proc.stderr else ""
        yield exports
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.fixture(scope="module")
def service_env(install: Install, serve: dict[str, str]) -> dict[str, str]:
    """The keys as files only root can change and only the service user's group can read (0640)."""
    config = install.prefix / "etc" / "docsync" / "config.toml"  # docs/scheduling.md step 2: no secrets, 0644
    config.parent.mkdir(parents=True)
    shutil.copy(ROOT / "config.example.toml", config)
    config.chmod(0o644)
    credentials = config.parent / "credentials"
    credentials.mkdir(mode=0o750)
    env = {"ESPOCRM_URL": serve["ESPOCRM_URL"], "XAI_API_URL": serve["XAI_API_URL"],
           "XAI_MANAGEMENT_URL": serve["XAI_MANAGEMENT_URL"], "DOCSYNC_STATE_DIR": str(install.state_dir),
           "DOCSYNC_CONFIG": str(config),
           "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2"}
    for variable, name in (("ESPOCRM_API_KEY", "espocrm-api-key"), ("XAI_API_KEY", "xai-api-key"),
                           ("XAI_MANAGEMENT_KEY", "xai-management-key")):
        path = credentials / name
        path.write_text(serve[variable])
        path.chmod(0o640)
        env[f"{variable}_FILE"] = str(path)
    if os.geteuid() == 0:
        shutil.chown(credentials, "root", install.group)
        for path in credentials.iterdir():
            shutil.chown(path, "root", install.group)
    return env


def test_the_installed_wheel_is_docsync_espocrm_with_its_docs(install: Install) -> None:
    venv = install.prefix / "opt" / "docsync"
    assert list((install.prefix / "src" / "dist").glob("docsync_espocrm-*-py3-none-any.whl"))
    assert (venv / "share" / "doc" / "docsync" / "scheduling.md").is_file()  # the unit's Documentation=
    unit = (ROOT / "systemd" / "docsync.service").read_text()
    assert "Documentation=file:///opt/docsync/share/doc/docsync/scheduling.md" in unit
    assert install.docsync.resolve() == (venv / "bin" / "docsync").resolve()
    assert "editable" not in install.transcript.lower()
    if os.geteuid() == 0:
        info = install.state_dir.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o700, int(subprocess.run(
            ["id", "-u", install.user], capture_output=True, text=True, check=True).stdout))


def test_check_sync_status_as_the_service_user(install: Install, service_env: dict[str, str]) -> None:
    check = install.as_user("check", extra=service_env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"✓ state directory {install.state_dir}" in check.stdout
    sync = install.as_user("sync", extra=service_env)
    assert sync.returncode == 1, sync.stdout + sync.stderr  # the seeded firm has documents that must fail
    assert "19 synced, 2 failed" in sync.stdout
    again = install.as_user("sync", extra=service_env)
    assert again.returncode == 0 and "0 synced" not in again.stdout, again.stdout + again.stderr
    status = install.as_user("status", "--json", extra=service_env)
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["documents"]["dateiStatus"]["Gesynct"] == 19
    assert [run["exit_code"] for run in data["runs"]][:2] == [0, 1]
    # office documents got their previews as the service user (its LibreOffice is private, never root's)
    office = {name for name, source, _accounts, _status in FIRM_DOCUMENTS if source.endswith((".docx", ".odt"))}
    failed = {item["name"]: item["reason"] for item in data["previews"]["errors"]}
    assert office and not office & set(failed), failed
    # nothing of it landed outside the state directory
    assert (install.state_dir / "state.sqlite3").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory owned by someone else needs root to make")
def test_a_state_dir_left_by_root_names_the_owner_and_the_chown(install: Install, service_env: dict[str, str]) -> None:
    left_by_root = install.prefix / "var" / "lib" / "left-by-root"
    left_by_root.mkdir(mode=0o700)  # what `docsync sync --dry-run` as root used to create
    env = service_env | {"DOCSYNC_STATE_DIR": str(left_by_root)}
    sync = install.as_user("sync", extra=env)
    assert sync.returncode == 4, sync.stdout + sync.stderr
    fix = f"chown -R {install.user}:{install.group} {left_by_root}"
    assert f"owned by root, not by {install.user}" in sync.stderr and fix in sync.stderr, sync.stderr
    check = install.as_user("check", extra=env)
    assert check.returncode == 2, check.stdout
    assert f"✗ state directory {left_by_root}" in check.stdout and fix in check.stdout, check.stdout
    assert "Traceback" not in sync.stderr + check.stdout  # advice, not a crash


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write another user's state directory")
def test_root_running_on_the_service_users_state_dir_is_warned(install: Install,
                                                               service_env: dict[str, str]) -> None:
    """The old docs' `docsync sync --dry-run` as root: it works, but says whose directory it is and how to run."""
    done = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in (install.env | service_env).items()),
                           str(install.docsync), "sync", "--dry-run"], capture_output=True, text=True, timeout=300,
                          cwd="/", check=False)
    assert done.returncode in (0, 1), done.stderr
    assert f"belongs to {install.user}" in done.stderr and f"runuser -u {install.user} -- docsync" in done.stderr
