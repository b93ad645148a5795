"""The README's install texts against what they install (issue 22, item 5): every `apt-get install` without
recommends (pipx's recommends pull in mkdocs), and the units' `Documentation=` a path that both the venv and the
pipx install link; the sandbox's state directory is never under the directory serve is started from."""

from __future__ import annotations

import re
from pathlib import Path

from docsync_cli.cli.sandbox import sandbox_state_dir

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "cron.example", *(ROOT / "systemd").iterdir()]


def test_every_apt_get_install_skips_recommends() -> None:
    for path in DOCS:
        for match in re.finditer(r"apt-get install[^`\n]*", path.read_text(encoding="utf-8")):
            assert "--no-install-recommends" in match.group(0), (path.name, match.group(0))


def test_documentation_of_the_units_is_linked_by_both_installs() -> None:
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    for name in ("docsync.service", "docsync-verify.service"):
        [doc] = re.findall(r"^Documentation=file://(\S+)$", (ROOT / "systemd" / name).read_text(), re.M)
        assert doc == "/usr/local/share/doc/docsync/scheduling.md", name
    assert "ln -sfn /opt/docsync/share/doc/docsync /usr/local/share/doc/docsync" in readme  # the venv install
    assert "ln -sfn /opt/pipx/venvs/docsync-espocrm/share/doc/docsync /usr/local/share/doc/docsync" in readme  # pipx


def test_the_sandbox_state_dir_is_fresh_and_outside_the_current_directory() -> None:
    first, second = sandbox_state_dir(), sandbox_state_dir()
    assert first != second and not first.exists()
    assert first.parent == Path("/tmp") and first.name.startswith("docsync-sandbox-")
    assert not first.is_relative_to(Path.cwd()) or Path.cwd() == Path("/tmp")
