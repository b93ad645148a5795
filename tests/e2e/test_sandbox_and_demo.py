"""The user-facing sandbox paths: `docsync sandbox serve` and `docsync demo` (the README's first command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}


def test_sandbox_serve_prints_an_environment_block_that_docsync_can_use(tmp_path: Path) -> None:
    serve = subprocess.Popen([sys.executable, "-m", "docsync_cli", "sandbox", "serve", "--processing-delay", "0"],
                             env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert serve.stdout is not None
        exports: dict[str, str] = {}
        for line in serve.stdout:
            if line.startswith("export "):
                key, _, value = line.removeprefix("export ").strip().partition("=")
                exports[key] = value
            if line.startswith("# Ctrl-C"):
                break
        assert {"ESPOCRM_URL", "ESPOCRM_API_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY", "XAI_API_URL",
                "XAI_MANAGEMENT_URL", "DOCSYNC_STATE_DIR"} <= set(exports)
        assert all(value.startswith("http://127.0.0.1:") for key, value in exports.items() if key.endswith("_URL"))
        run = subprocess.run([sys.executable, "-m", "docsync_cli", "sync", "--no-preview"],
                             env=clean_env() | exports, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 1, run.stderr  # the seeded firm has one document without a file
        assert "19 synced" in run.stdout and "2 failed" in run.stdout
    finally:
        serve.send_signal(signal.SIGINT)
        serve.communicate(timeout=30)
    assert serve.returncode == 0


def test_demo_runs_a_real_sync_and_a_second_run_writes_nothing() -> None:
    demo = subprocess.run([sys.executable, "-m", "docsync_cli", "demo"], env=clean_env(), capture_output=True,
                          text=True, timeout=600, check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "19 synced, 2 failed" in demo.stdout
    assert "write requests to the services: 0" in demo.stdout
    assert "Gesynct" in demo.stdout  # the status report
    for account in ("Müller GmbH", "Schmidt & Partner", "Yilmaz Handel"):
        assert account in demo.stdout
    search = demo.stdout.split("docsync search", 1)[1]  # the last step: the phrase finds its document
    assert "1. 'Aktennotiz Fristen' (document " in search
