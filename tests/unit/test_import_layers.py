"""The layers of ARCHITECTURE.md as tests: kernel → transport → {crm, xai, state, locks, preview, config} → sync →
reports → cli, each folder importing only itself, the kernel and the folders before it; crm/ and xai/ never import
each other; only cli/ imports typer or rich; the read-only reports never load the engine; the planner loads no I/O;
every module imports alone in a fresh interpreter (no import circle); the emulators import nothing of docsync_cli;
no product module outgrows one job."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import docsync_cli

PACKAGE = Path(docsync_cli.__file__).parent
SANDBOX = PACKAGE.parent / "docsync_sandbox"
KERNEL = {"errors", "model", "outcome", "secrets", "timestamps", "users"}
# folder → the folders it may import besides itself and the kernel
LAYERS: dict[str, set[str]] = {
    "transport": set(),
    "crm": {"transport"},
    "xai": {"transport"},
    "state": set(),
    "locks": {"state"},
    "preview": set(),
    "config": {"preview"},
    "sync": {"transport", "crm", "xai", "state", "locks", "preview", "config"},
    "reports": {"transport", "crm", "xai", "state", "locks", "preview", "config", "sync"},
    "cli": {"transport", "crm", "xai", "state", "locks", "preview", "config", "sync", "reports"},
}
RUN_MODULES = ("docsync_cli.sync.engine", "docsync_cli.sync.step", "docsync_cli.sync.gather", "docsync_cli.sync.run")
MAX_LINES = 400


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (relative imports resolved)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
            found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def product_modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def folder_of(dotted: str) -> str:
    """``docsync_cli.sync.plan`` → ``sync``; a kernel module → ``kernel``."""
    parts = dotted.split(".")[1:]
    if not parts or parts[0] in KERNEL or parts[0] in ("__version__", "__main__"):
        return "kernel"
    return parts[0]


def docsync_imports(path: Path) -> set[str]:
    return {name for name in imports_in(path) if name.split(".")[0] == "docsync_cli"}


def layer_violations(path: Path) -> list[str]:
    own = folder_of(module_of(path))
    if own == "kernel":
        if path.name == "__main__.py":
            return []
        return sorted(name for name in docsync_imports(path) if folder_of(name) != "kernel")
    allowed = LAYERS[own] | {own, "kernel"}
    return sorted(name for name in docsync_imports(path) if folder_of(name) not in allowed)


def test_every_folder_has_a_layer() -> None:
    folders = {path.relative_to(PACKAGE).parts[0] for path in product_modules()
               if len(path.relative_to(PACKAGE).parts) > 1}
    assert folders == set(LAYERS)


@pytest.mark.parametrize("path", product_modules(), ids=lambda path: module_of(path))
def test_each_module_imports_only_downwards(path: Path) -> None:
    assert layer_violations(path) == []


def test_the_layer_check_can_fail(tmp_path: Path) -> None:
    # crm/ importing xai/ (or anything of sync/) is refused; sync/ importing crm/ is fine
    assert layer_violations(PACKAGE / "crm" / "client.py") == []
    fake = PACKAGE / "crm" / "_layer_probe.py"
    fake.write_text("from docsync_cli.xai.client import XaiClient\nfrom docsync_cli.sync import plan\n")
    try:
        assert layer_violations(fake) == ["docsync_cli.sync", "docsync_cli.sync.plan", "docsync_cli.xai.client",
                                          "docsync_cli.xai.client.XaiClient"]
    finally:
        fake.unlink()


def test_only_the_cli_layer_imports_typer_or_rich() -> None:
    offenders = {}
    for path in product_modules():
        if path.relative_to(PACKAGE).parts[0] == "cli":
            continue
        ui_libraries = sorted(name for name in imports_in(path) if name.split(".")[0] in ("typer", "rich"))
        if ui_libraries:
            offenders[module_of(path)] = ui_libraries
    assert offenders == {}


def test_the_scan_sees_imports_inside_functions() -> None:
    views = PACKAGE / "cli" / "report_views.py"
    assert "rich.table.Table" in imports_in(views)  # imported inside render_status
    assert "docsync_cli.reports.status_feeds.feeds_explained" in imports_in(views)


def test_the_read_only_report_modules_never_import_the_engine() -> None:
    for path in sorted((PACKAGE / "reports").glob("*.py")):
        assert {name for name in imports_in(path) if name.startswith(RUN_MODULES)} == set(), path.name


def test_the_emulators_import_nothing_of_docsync() -> None:
    for path in sorted(SANDBOX.rglob("*.py")):
        assert {name for name in imports_in(path) if name.split(".")[0] == "docsync_cli"} == set(), path.name
        assert "tests" not in {name.split(".")[0] for name in imports_in(path)}, path.name


def test_only_crm_builds_espocrm_where_items() -> None:
    # a where item is a mapping with "type" and "attribute" (or "value" for or/and groups): only crm/ writes them
    offenders = []
    for path in product_modules():
        if path.relative_to(PACKAGE).parts[0] == "crm":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Dict):
                keys = {key.value for key in node.keys if isinstance(key, ast.Constant)}
                if "type" in keys and ("attribute" in keys or "value" in keys):
                    offenders.append(f"{module_of(path)}:{node.lineno}")
    assert offenders == []


def test_no_product_module_outgrows_one_job() -> None:
    sizes = {module_of(path): len(path.read_text(encoding="utf-8").splitlines()) for path in product_modules()}
    assert len(sizes) > 50
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def _loaded_after_importing(modules: tuple[str, ...]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


REPORT_MODULES = (*(module_of(path) for path in sorted((PACKAGE / "reports").glob("*.py"))),
                  "docsync_cli.cli.app", "docsync_cli.cli.views", "docsync_cli.cli.report_views",
                  "docsync_cli.sync.services")


def test_report_commands_import_neither_the_engine_nor_the_step() -> None:
    loaded = _loaded_after_importing(REPORT_MODULES)
    assert set(REPORT_MODULES) <= set(loaded)  # the probe did import them
    assert [name for name in RUN_MODULES if name in loaded] == []


def test_the_probe_sees_the_engine_when_it_is_imported() -> None:
    loaded = _loaded_after_importing(("docsync_cli.sync.engine",))
    assert {"docsync_cli.sync.engine", "docsync_cli.sync.step"} <= set(loaded)


PURE_MODULES = ("docsync_cli.sync.plan", "docsync_cli.sync.plan_feeds", "docsync_cli.outcome", "docsync_cli.model",
                "docsync_cli.errors", "docsync_cli.timestamps")
IO_MODULES = ("httpx", "sqlite3", "socket", "subprocess", "threading", "filelock", "redis", "docsync_cli.state",
              "docsync_cli.transport.http", "docsync_cli.xai.client", "docsync_cli.crm.client",
              "docsync_cli.sync.engine")


def test_the_planner_and_the_values_it_decides_over_load_no_io() -> None:
    # plan(crm, remote) -> actions: importing the planner brings no HTTP, no database, no threads, no processes
    loaded = _loaded_after_importing(PURE_MODULES)
    assert set(PURE_MODULES) <= set(loaded)
    assert sorted(name for name in loaded if name.split(".")[0] in IO_MODULES or name.startswith(IO_MODULES)) == []


def test_every_module_imports_alone() -> None:
    # no import circle: each module, imported first in a fresh interpreter, loads
    # (uno_bridge runs under Debian's python3, where the uno module lives; the venv has none)
    names = [module_of(path) for path in product_modules() if path.name not in ("__main__.py", "uno_bridge.py")]
    names += [f"docsync_sandbox.{path.stem}" for path in sorted(SANDBOX.glob("*.py")) if path.stem != "__init__"]
    code = ("import importlib, subprocess, sys\n"
            "failed = []\n"
            "for name in sys.argv[1:]:\n"
            "    done = subprocess.run([sys.executable, '-c', f'import {name}'], capture_output=True, text=True)\n"
            "    if done.returncode: failed.append((name, done.stderr.strip().splitlines()[-1:]))\n"
            "print(failed)")
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600,
                          check=True, cwd=PACKAGE.parent)
    assert done.stdout.strip() == "[]"
