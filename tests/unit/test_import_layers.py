"""The read-only report commands (status, explain, check, search, verify, preview) stand on the clients, the
state and the planner's pure decisions: importing them must not load the engine or the reconciler."""

from __future__ import annotations

import json
import subprocess
import sys

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
