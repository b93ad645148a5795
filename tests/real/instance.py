"""Changing the real EspoCRM's metadata the way its admin does: custom metadata files, `php command.php rebuild`,
and (as the fixture's README says) a restart of the PHP server so that no worker answers with the old
definitions. Only where the tests run the fixture themselves (``REAL_ESPOCRM_DIR`` and ``REAL_ESPOCRM_FIXTURE``,
set by ``scripts/test.sh``); every change is undone when the ``with`` block ends, failing or not."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.real.realcrm import RealCrm

RESOURCES = Path("custom/Espo/Custom/Resources")


def local_instance(crm: RealCrm) -> tuple[Path, Path]:
    """The fixture's instance directory and the fixture's folder; skips the test when the CRM is not one the suite
    started (a staging CRM: its admin installs fields by hand)."""
    if crm.instance_dir is None or crm.fixture_dir is None:
        pytest.skip("changes the CRM's metadata files: needs REAL_ESPOCRM_DIR and REAL_ESPOCRM_FIXTURE (set by "
                    "scripts/test.sh for the fixture it starts)")
    return crm.instance_dir / "instance" / "espocrm", crm.fixture_dir


def rebuild_and_restart(crm: RealCrm) -> None:
    espocrm, fixture = local_instance(crm)
    subprocess.run(["php", "command.php", "rebuild"], cwd=espocrm, check=True, capture_output=True, timeout=300)
    assert crm.instance_dir is not None
    script = f'source "{fixture}/common.sh"; stop_pidfile php-server; web_start'
    subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=120,
                   env={"PATH": "/usr/local/bin:/usr/bin:/bin", "REALESPO_ROOT": str(crm.instance_dir),
                        "ESPOCRM_PORT": str(crm.port)})


@contextmanager
def custom_metadata(crm: RealCrm, change: Callable[[Path], None]) -> Iterator[Path]:
    """``change(resources)`` edits the files under ``custom/Espo/Custom/Resources``; then rebuild and restart.
    Afterwards every file is put back as it was (files ``change`` made are removed), rebuild and restart."""
    espocrm, _ = local_instance(crm)
    resources = espocrm / RESOURCES
    before = {path: path.read_bytes() for path in resources.rglob("*") if path.is_file()}
    try:
        change(resources)
        rebuild_and_restart(crm)
        yield resources
    finally:
        for path in resources.rglob("*"):
            if path.is_file() and path not in before:
                path.unlink()
        for path, content in before.items():
            path.write_bytes(content)
        rebuild_and_restart(crm)


def printed_files(text: str) -> dict[str, Any]:
    """The files `docsync espocrm-fields` prints: ``// custom/…/X.json`` then that file's JSON (other ``//`` lines
    are comments for the admin)."""
    files: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("// custom/"):
            current = files.setdefault(line.removeprefix("// ").strip(), [])
        elif line.startswith("//"):
            continue
        elif current is not None:
            current.append(line)
    return {path: json.loads("\n".join(lines)) for path, lines in files.items()}


def c_prefixed(name: str) -> str:
    return "c" + name[:1].upper() + name[1:]


def rename_to_c_prefix(resources: Path) -> None:
    """The same custom fields under the names the Entity Manager gives them (``cDateiStatus``, …, and
    ``cXaiCollectionId`` on Account): what an admin has who created them in the UI."""
    for path in [*resources.glob("metadata/entityDefs/*.json"), *resources.glob("i18n/*/*.json")]:
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("fields", "options"):
            if isinstance(data.get(key), dict):
                data[key] = {c_prefixed(name): value for name, value in data[key].items()}
        path.write_text(json.dumps(data, indent=4, ensure_ascii=False), encoding="utf-8")
