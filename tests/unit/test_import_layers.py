"""The layers: the read-only report commands (status, explain, check, search, verify, preview) stand on the
clients, the state and the planner's pure decisions, so importing them must not load the engine or the
reconciler; and only the CLI layer (``cli.py``, ``ui.py``, ``ui_reports.py``) imports typer or rich."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import docsync_cli

PACKAGE = Path(docsync_cli.__file__).parent
CLI_LAYER = {"cli.py", "ui.py", "ui_reports.py"}

REPORT_MODULES = (
    "docsync_cli.cli",  # the commands themselves import their modules lazily
    "docsync_cli.reports.shared",
    "docsync_cli.reports.status",
    "docsync_cli.reports.explain",
    "docsync_cli.reports.check",
    "docsync_cli.reports.check_services",
    "docsync_cli.reports.search",
    "docsync_cli.reports.probe",
    "docsync_cli.reports.verify",
    "docsync_cli.regenerate_preview",
    "docsync_cli.ui",
    "docsync_cli.ui_reports",
    "docsync_cli.findability",
    "docsync_cli.services",
    # what the report commands import lazily inside their bodies
    "docsync_cli.preview",
    "docsync_cli.locks",
    "docsync_cli.state",
    "docsync_cli.statedir",
    "docsync_cli.history",
    "docsync_cli.metrics",
)
RUN_MODULES = ("docsync_cli.engine", "docsync_cli.reconcile", "docsync_cli.changes", "docsync_cli.runner")


def _loaded_after_importing(modules: tuple[str, ...]) -> list[str]:
    code = ("import importlib, json, sys\n"
            f"for name in {list(modules)!r}: importlib.import_module(name)\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_report_commands_import_neither_the_engine_nor_the_reconciler() -> None:
    loaded = _loaded_after_importing(REPORT_MODULES)
    assert set(REPORT_MODULES) <= set(loaded)  # the probe did import them
    assert [name for name in RUN_MODULES if name in loaded] == []


def test_the_probe_sees_the_engine_when_it_is_imported() -> None:
    # the check above can fail: importing the engine loads the reconciler with it
    loaded = _loaded_after_importing(("docsync_cli.engine",))
    assert {"docsync_cli.engine", "docsync_cli.reconcile"} <= set(loaded)


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


def test_only_the_cli_layer_imports_typer_or_rich() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).as_posix() in CLI_LAYER:
            continue
        ui_libraries = sorted(name for name in imports_in(path) if name.split(".")[0] in ("typer", "rich"))
        if ui_libraries:
            offenders[path.relative_to(PACKAGE).as_posix()] = ui_libraries
    assert offenders == {}


def test_the_read_only_report_modules_import_neither_the_engine_nor_the_reconciler() -> None:
    # also the imports inside functions, which the import probe above does not run
    for path in sorted((PACKAGE / "reports").glob("*.py")):
        assert {name for name in imports_in(path) if name.startswith(RUN_MODULES)} == set(), path.name


def test_the_scan_sees_imports_inside_functions() -> None:
    assert "rich.table.Table" in imports_in(PACKAGE / "ui_reports.py")  # imported inside render_status
    assert "docsync_cli.reports.status.feeds_explained" in imports_in(PACKAGE / "ui_reports.py")


PURE_MODULES = ("docsync_cli.plan", "docsync_cli.plan_changes", "docsync_cli.outcome", "docsync_cli.model",
                "docsync_cli.errors", "docsync_cli.timestamps")
IO_MODULES = ("httpx", "sqlite3", "socket", "subprocess", "threading", "filelock", "redis", "docsync_cli.state",
              "docsync_cli.transport", "docsync_cli.xai", "docsync_cli.crm", "docsync_cli.engine")


def test_the_planner_and_the_values_it_decides_over_load_no_io() -> None:
    # plan(crm, remote) -> actions: importing the planner brings no HTTP, no database, no threads, no processes
    loaded = _loaded_after_importing(PURE_MODULES)
    assert set(PURE_MODULES) <= set(loaded)
    assert sorted(name for name in loaded if name.split(".")[0] in IO_MODULES or name.startswith(IO_MODULES)) == []
