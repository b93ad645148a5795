"""scripts/setup.sh is idempotent and quiet: a second run with nothing changed installs nothing (no pip run, no
setuptools "editable installation" notice), a changed pyproject.toml installs again.

The script runs for real in a copy of the checkout's scripts/ and pyproject.toml; only its tools are stand-ins on
PATH: dpkg-query (every package installed) and the venv's python (records each pip call)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../calls.log"
case "$*" in
  *"pip show"*) [ -f "$(dirname "$0")/../installed" ] ;;
  *"pip install"*"-e"*) touch "$(dirname "$0")/../installed"; echo "BuildBackendWarning: Editable installation." >&2 ;;
  *) exit 0 ;;
esac
"""


def run_setup(checkout: Path, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "PYTHON": "python3", "HOME": str(checkout)}
    return subprocess.run(["bash", "scripts/setup.sh"], cwd=checkout, env=env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_a_second_setup_run_installs_nothing(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(ROOT / "scripts", checkout / "scripts")
    shutil.copy(ROOT / "pyproject.toml", checkout / "pyproject.toml")
    venv_bin = checkout / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").write_text(FAKE_PYTHON)
    (venv_bin / "python").chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    (tools / "dpkg-query").write_text("#!/bin/sh\necho 'install ok installed'\n")
    (tools / "dpkg-query").chmod(0o755)
    calls = checkout / ".venv" / "calls.log"

    first = run_setup(checkout, tools)
    assert first.returncode == 0, first.stderr
    assert "pip install -q -e .[test]" in calls.read_text()

    calls.write_text("")
    second = run_setup(checkout, tools)
    assert second.returncode == 0, second.stderr
    assert "pip install" not in calls.read_text()
    assert second.stdout.strip() == "setup: ready (.venv/bin/docsync)"
    assert "editable" not in (second.stdout + second.stderr).lower()

    (checkout / "pyproject.toml").write_text((checkout / "pyproject.toml").read_text() + "\n# changed\n")
    calls.write_text("")
    third = run_setup(checkout, tools)
    assert third.returncode == 0, third.stderr
    assert "pip install -q -e .[test]" in calls.read_text()
