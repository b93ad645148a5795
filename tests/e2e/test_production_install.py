"""The README's "Install for production", run literally from its first line to its last, root first and then the
service user, ending with `check` passing, the timer enabled and synced documents (issue 22).

The fenced block under "## Install for production" is executed line by line with bash (``set -euo pipefail``) in a
copy of the checkout, with relocations so that the test never touches the host's real installation (and two
engineers' test runs never collide): ``/opt/docsync``, ``/usr/local/bin``, ``/usr/local/share``,
``/var/lib/docsync``, ``/etc/docsync`` and ``/etc/systemd/system`` move under a temporary prefix (docsync is told
the moved defaults with ``DOCSYNC_CONFIG`` and ``DOCSYNC_STATE_DIR``), and the user ``docsync`` is a throw-away
system user (removed afterwards). The ``apt-get`` lines are not run (``scripts/setup.sh`` installed the same
packages; ``test_readme_packages_are_what_setup_installs`` keeps the lists equal). The admin's edit of the config
is a ``sed`` of the three URLs to the emulators'; the keys are typed at the block's prompts (stdin). Without a
running systemd, ``systemctl enable`` runs offline (``--root``), ``daemon-reload``, ``list-timers`` and
``journalctl -f`` are skipped, and the timer's runs are the installed unit's ``ExecStart=`` run as its ``User=``
with its ``Environment=`` and ``LoadCredential=`` files. Everything else - the venv from the system's Python 3.11,
the wheel, ``useradd``, ``install -o/-g/-m``, the key prompts, ``runuser ... docsync check`` and ``status`` - runs
as written. No output may hold a traceback. `scripts/chroot-test.sh` runs the same block unrelocated in a fresh
Debian 12 chroot.

Also against that install: the sandbox block (`docsync sandbox serve` started by root in a directory only root may
enter) works for the service user, and the two first-week failures: a state directory a root run left behind
(owner and ``chown`` named, by ``sync``, ``status`` and ``check``), and root running on the service user's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
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

    @property
    def config(self) -> Path:
        return self.prefix / "etc" / "docsync" / "config.toml"

    @property
    def credentials(self) -> Path:
        return self.prefix / "etc" / "docsync" / "credentials"

    @property
    def moved_defaults(self) -> dict[str, str]:
        """The two built-in paths the relocation moved, told to docsync the only way it can be."""
        return {"DOCSYNC_CONFIG": str(self.config), "DOCSYNC_STATE_DIR": str(self.state_dir)}


def relocate(line: str, prefix: Path, user: str) -> str:
    for path, moved in (("/opt/docsync", "/opt/docsync"), ("/usr/local/bin", "/bin"), ("/usr/local/share", "/share"),
                        ("/var/lib/docsync", "/var/lib/docsync"), ("/etc/docsync", "/etc/docsync"),
                        ("/etc/systemd/system", "/etc/systemd/system")):
        line = line.replace(path, f"{prefix}{moved}")
    line = re.sub(r"(?<=-u |-o |-g )docsync\b", user, line)
    if line.startswith("useradd"):
        line = re.sub(r" docsync$", f" {user}", line)
    return line


def first_config_line(lines: list[str]) -> int:
    """Where the second half of the block starts: the first line about /etc/docsync (it needs the emulators)."""
    return next(i for i, line in enumerate(lines) if "/etc/docsync" in line)


def run_script(lines: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    script = "set -euo pipefail\n" + "\n".join(f"echo {shlex.quote('+ ' + line)}\n{line}" for line in lines if line)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, input=stdin, capture_output=True, text=True,
                          timeout=900, check=False)


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    """The block's first half, as root: packages, venv, wheel, symlinks, the service user and its state dir."""
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
    block = readme_block()
    lines = []
    for line in block[:first_config_line(block)]:
        if line.startswith("apt-get"):
            continue
        if not root and line.startswith(("useradd", "install -d -o")):
            line = f"install -d -m 0700 {prefix}/var/lib/docsync" if line.startswith("install") else ""
        lines.append(relocate(line, prefix, user))
    if not root:
        (prefix / "var" / "lib").mkdir(parents=True)
    done = run_script(lines, src, env)
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
    """`docsync sandbox serve` from the installed wheel (its seed corpus is package data), started by root in a
    directory only root may enter (root's home, say); stopped with SIGTERM."""
    roots_home = install.prefix / "root-home"
    roots_home.mkdir(mode=0o700)
    proc = subprocess.Popen([str(install.docsync), "sandbox", "serve", "--processing-delay", "0"], cwd=roots_home,
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


@dataclass
class ReadmePath:
    transcript: str
    check: subprocess.CompletedProcess[str]
    timer_runs: list[subprocess.CompletedProcess[str]]
    status: subprocess.CompletedProcess[str]


def unit_run(install: Install) -> subprocess.CompletedProcess[str]:
    """One run of the installed docsync.service the way systemd starts it: ``ExecStart=`` as ``User=``, with its
    ``Environment=`` (``%S`` = /var/lib, ``%C`` = /var/cache, both under the prefix) and a private copy of each
    ``LoadCredential=`` file in ``$CREDENTIALS_DIRECTORY``."""
    unit = (install.prefix / "etc" / "systemd" / "system" / "docsync.service").read_text()
    values: dict[str, list[str]] = {}
    for line in unit.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values.setdefault(key.strip(), []).append(value.strip())
    creds = install.prefix / "run" / "credentials" / "docsync.service"
    if not creds.exists():
        creds.mkdir(parents=True, mode=0o700)
        for item in values["LoadCredential"]:
            name, _, source = item.partition(":")
            shutil.copy(relocate(source, install.prefix, install.user), creds / name)
        if os.geteuid() == 0:
            for path in (creds, *creds.iterdir()):
                shutil.chown(path, install.user, install.group)
    cache = install.prefix / "var" / "cache" / "docsync"
    cache.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(cache, install.user, install.group)
    env = {"PATH": install.env["PATH"], "CREDENTIALS_DIRECTORY": str(creds)}
    for item in values["Environment"]:
        for pair in shlex.split(item):
            key, _, value = pair.partition("=")
            value = relocate(value, install.prefix, install.user)
            env[key] = value.replace("%S", f"{install.prefix}/var/lib").replace("%C", f"{install.prefix}/var/cache")
    assert values["User"] == ["docsync"] and values["Type"] == ["oneshot"]
    command = shlex.split(relocate(values["ExecStart"][0], install.prefix, install.user))
    return subprocess.run([*install.run_as, "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command],
                          capture_output=True, text=True, timeout=600, cwd="/", check=False)


@pytest.fixture(scope="module")
def readme_path(install: Install, serve: dict[str, str]) -> ReadmePath:
    """The block's second half, as root with the service user where it says so: config and keys, `check`, the
    unit and the timer; then the timer's first two runs and `status`, as the README says to watch them."""
    if os.geteuid() != 0:
        pytest.skip("the README's second half (install -o root, runuser) needs root")
    block = readme_block()
    lines: list[str] = []
    for line in block[first_config_line(block):]:
        if line.startswith(("systemctl daemon-reload", "systemctl list-timers", "journalctl")):
            lines.append(f": skipped without a running systemd: {line.split('#')[0].strip()}")
            continue
        if "docsync status" in line:
            continue  # after the timer's runs, below
        if line.startswith("install -m 0644 systemd/"):
            lines.append(f"mkdir -p {install.prefix}/etc/systemd/system")
        if line.startswith("systemctl enable --now"):
            line = line.replace("systemctl enable --now", f"systemctl --root={install.prefix} enable")
        lines.append(relocate(line, install.prefix, install.user))
        if line.startswith("install ") and "config.toml" in line:  # the admin's edit: the emulators' URLs
            lines.append(f"sed -i -e 's|^url = .*|url = \"{serve['ESPOCRM_URL']}\"|' "
                         f"-e 's|^api_url = .*|api_url = \"{serve['XAI_API_URL']}\"|' "
                         f"-e 's|^management_url = .*|management_url = \"{serve['XAI_MANAGEMENT_URL']}\"|' "
                         f"{install.config}")
    keys = "".join(f"{serve[name]}\n" for name in ("ESPOCRM_API_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY"))
    env = install.env | install.moved_defaults | {"DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2"}
    done = run_script(lines, install.prefix / "src", env, stdin=keys)
    transcript = done.stdout + done.stderr
    assert done.returncode == 0, transcript[-6000:]
    check = subprocess.CompletedProcess(["check"], 0, transcript, "")
    runs = [unit_run(install), unit_run(install)]
    [status_line] = [relocate(line, install.prefix, install.user) for line in block if "docsync status" in line]
    status = subprocess.run(["bash", "-c", f"set -euo pipefail; {status_line.split('#')[0]} --json"],
                            env=install.env | install.moved_defaults, capture_output=True, text=True, timeout=120,
                            cwd="/", check=False)  # as the README says to watch the runs, plus --json to read it
    return ReadmePath(transcript, check, runs, status)


@pytest.fixture(scope="module")
def service_env(install: Install, readme_path: ReadmePath, serve: dict[str, str]) -> dict[str, str]:
    """What the README set up, for the service user's commands by hand: the key files it wrote, the moved defaults."""
    return install.moved_defaults | {"CREDENTIALS_DIRECTORY": str(install.credentials),
                                     "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2"}


def test_the_installed_wheel_is_docsync_espocrm_with_its_docs(install: Install) -> None:
    venv = install.prefix / "opt" / "docsync"
    assert list((install.prefix / "src" / "dist").glob("docsync_espocrm-*-py3-none-any.whl"))
    assert (venv / "share" / "doc" / "docsync" / "scheduling.md").is_file()
    # the units' Documentation=, through the README's symlink (a pipx install links its own copy there)
    for name in ("docsync.service", "docsync-verify.service"):
        unit = (ROOT / "systemd" / name).read_text()
        assert "Documentation=file:///usr/local/share/doc/docsync/scheduling.md" in unit, name
    assert (install.prefix / "share" / "doc" / "docsync" / "scheduling.md").is_file()
    assert install.docsync.resolve() == (venv / "bin" / "docsync").resolve()
    assert "editable" not in install.transcript.lower()
    if os.geteuid() == 0:
        info = install.state_dir.stat()
        assert (info.st_mode & 0o777, info.st_uid) == (0o700, int(subprocess.run(
            ["id", "-u", install.user], capture_output=True, text=True, check=True).stdout))


def test_the_readme_path_ends_green(install: Install, readme_path: ReadmePath) -> None:
    """`check` passes as the service user, the timer is enabled, its first run syncs, the second has nothing to do,
    `status` shows it - and nothing printed a traceback."""
    transcript = readme_path.transcript
    check_part = transcript.split("docsync check", 1)[1]
    assert f"✓ state directory {install.state_dir}" in check_part, transcript[-4000:]
    assert "✗" not in check_part.split("+ install -m 0644 systemd/", 1)[0], transcript[-4000:]
    assert (install.prefix / "etc" / "systemd" / "system" / "timers.target.wants" / "docsync.timer").is_symlink()
    # owners and modes as the README says: root's files, the group may read config and keys
    for path in (install.config, *install.credentials.iterdir()):
        info = path.stat()
        assert (info.st_uid, info.st_mode & 0o777) == (0, 0o640), path
    assert "api_key =" not in install.config.read_text().replace("# api_key =", "")  # no keys in the config
    first, second = readme_path.timer_runs
    assert first.returncode == 1, first.stdout + first.stderr  # the seeded firm has documents that must fail
    assert "19 synced, 2 failed" in first.stdout, first.stdout + first.stderr
    assert second.returncode == 0 and "0 synced" not in second.stdout, second.stdout + second.stderr
    assert readme_path.status.returncode == 0, readme_path.status.stderr
    data = json.loads(readme_path.status.stdout)
    assert data["documents"]["dateiStatus"]["Gesynct"] == 19
    assert [run["exit_code"] for run in data["runs"]][:2] == [0, 1]
    # office documents got their previews as the service user (its LibreOffice is private, never root's)
    office = {name for name, source, _accounts, _status in FIRM_DOCUMENTS if source.endswith((".docx", ".odt"))}
    failed = {item["name"]: item["reason"] for item in data["previews"]["errors"]}
    assert office and not office & set(failed), failed
    assert (install.state_dir / "state.sqlite3").is_file()
    for output in (transcript, *(run.stdout + run.stderr for run in readme_path.timer_runs),
                   readme_path.status.stdout + readme_path.status.stderr):
        assert "Traceback" not in output, output[-4000:]


def test_the_sandbox_block_works_for_the_service_user(install: Install, serve: dict[str, str]) -> None:
    """serve was started by root in a directory only root may enter: its DOCSYNC_STATE_DIR must still work for the
    service user (it once pointed into that directory)."""
    state_dir = Path(serve["DOCSYNC_STATE_DIR"])
    assert not str(state_dir).startswith(str(install.prefix / "root-home"))
    check = install.as_user("check", extra=dict(serve))
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"✓ state directory {state_dir}" in check.stdout and "Traceback" not in check.stdout + check.stderr


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


@pytest.mark.skipif(os.geteuid() != 0, reason="a directory owned by someone else needs root to make")
def test_the_service_user_without_a_state_dir_setting_after_a_root_run(install: Install,
                                                                       service_env: dict[str, str]) -> None:
    """Issue 22's first finding: root ran docsync once, so the service user's home (its state directory) is root's
    0700, and `sync`/`status`/`check` without DOCSYNC_STATE_DIR died with a PermissionError traceback (exit 1)."""
    home = install.prefix / "var" / "lib" / "home-taken-by-root"
    home.mkdir(mode=0o700)
    env = {k: v for k, v in service_env.items() if k != "DOCSYNC_STATE_DIR"} | {"HOME": str(home)}
    for command in ("sync", "status"):
        done = install.as_user(command, extra=env)
        assert "Traceback" not in done.stdout + done.stderr, done.stderr
        assert done.returncode == 4, (command, done.stdout + done.stderr)
        assert f"{home} (owned by root, mode 0700) does not let {install.user} in" in done.stderr, done.stderr
        assert "fix (as root): install -d -o " in done.stderr, done.stderr
    check = install.as_user("check", extra=env)
    assert "Traceback" not in check.stdout + check.stderr and check.returncode == 2, check.stdout + check.stderr
    assert f"does not let {install.user} in" in check.stdout, check.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can write another user's state directory")
def test_root_running_on_the_service_users_state_dir_is_warned(install: Install,
                                                               service_env: dict[str, str]) -> None:
    """The old docs' `docsync sync --dry-run` as root: it works, but says whose directory it is and how to run."""
    done = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in (install.env | service_env).items()),
                           str(install.docsync), "sync", "--dry-run"], capture_output=True, text=True, timeout=300,
                          cwd="/", check=False)
    assert done.returncode in (0, 1), done.stderr
    assert f"belongs to {install.user}" in done.stderr and f"runuser -u {install.user} -- docsync" in done.stderr
