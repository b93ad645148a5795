"""The user-facing sandbox paths: `docsync sandbox serve` and `docsync demo` (the README's first command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e.cli_env import serve_exports


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}


ServeFactory = Callable[..., "tuple[subprocess.Popen[str], dict[str, str]]"]


@pytest.fixture
def start_serve(tmp_path: Path) -> Iterator[ServeFactory]:
    """Start `docsync sandbox serve`, read its environment block; whatever happens, never leave it running."""
    started: list[subprocess.Popen[str]] = []

    def start(*, background: bool = False) -> tuple[subprocess.Popen[str], dict[str, str]]:
        # A shell starts a background job (`cmd &`) with SIGINT ignored; reproduce that exactly.
        ignore_sigint = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if background else None
        serve = subprocess.Popen([sys.executable, "-m", "docsync_cli", "sandbox", "serve", "--processing-delay",
                                  "0"], env=clean_env(), cwd=tmp_path, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
        started.append(serve)
        assert serve.stdout is not None
        exports, last = serve_exports(serve.stdout)
        assert f"kill {serve.pid}" in last
        return serve, exports

    yield start
    for serve in started:
        if serve.poll() is None:
            serve.kill()
        serve.communicate(timeout=30)


@pytest.mark.parametrize(("background", "signum"), [(False, signal.SIGINT), (True, signal.SIGINT),
                                                    (True, signal.SIGTERM)],
                         ids=["foreground-ctrl-c", "background-sigint", "background-sigterm"])
def test_sandbox_serve_stops_cleanly_on_sigint_and_sigterm(start_serve: ServeFactory, background: bool,
                                                         signum: signal.Signals) -> None:
    serve, exports = start_serve(background=background)
    assert exports
    serve.send_signal(signum)
    try:
        _out, err = serve.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(f"sandbox serve ignored {signum.name}")
    assert serve.returncode == 0, err
    assert f"emulators stopped ({signum.name})" in err


def test_sandbox_serve_prints_an_environment_block_that_docsync_can_use(start_serve: ServeFactory) -> None:
    serve, exports = start_serve()
    try:
        assert {"ESPOCRM_URL", "ESPOCRM_API_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY", "XAI_API_URL",
                "XAI_MANAGEMENT_URL", "DOCSYNC_STATE_DIR"} <= set(exports)
        assert all(value.startswith("http://127.0.0.1:") for key, value in exports.items() if key.endswith("_URL"))
        run = subprocess.run([sys.executable, "-m", "docsync_cli", "sync", "--no-preview"],
                             env=clean_env() | exports, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 1, run.stderr  # the seeded firm has one document without a file
        assert "19 synced" in run.stdout and "2 failed" in run.stdout
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert serve.returncode == 0


def test_demo_runs_a_real_sync_and_a_second_run_writes_nothing(tmp_path: Path) -> None:
    sheet = tmp_path / "sheet.png"
    demo = subprocess.run([sys.executable, "-m", "docsync_cli", "demo", "--contact-sheet", str(sheet)],
                          env=clean_env() | {"COLUMNS": "200"}, capture_output=True, text=True, timeout=600,
                          check=False)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    # the contact sheet: one PNG with a tile for each of the 21 seeded documents, its path printed
    assert str(sheet) in demo.stdout
    with Image.open(sheet) as img:
        assert img.format == "PNG"
        assert img.size == (14 + 5 * (220 + 14), 44 + 5 * (300 + 54 + 14) + 14)  # 5 columns, 5 rows
    assert "docsync preview --id <document id> --out x.webp" in demo.stdout
    # preview failures are listed by document name; no "at least 0 documents"
    errors = demo.stdout.split("Preview errors", 1)[1].split("Last runs", 1)[0]
    assert "Vertragsentwurf (geschützt)" in errors and "encrypted" in errors
    assert "at least 0 documents" not in demo.stdout
    assert "19 synced, 2 failed" in demo.stdout
    assert "write requests to the services: 0" in demo.stdout
    assert "Gesynct" in demo.stdout  # the status report
    for account in ("Müller GmbH", "Schmidt & Partner", "Yilmaz Handel"):
        assert account in demo.stdout
    search = demo.stdout.split("docsync search", 1)[1]  # the last step: the phrase finds its document
    assert "1. 'Aktennotiz Fristen' (document " in search


def test_sandbox_serve_on_a_port_in_use_says_so_without_a_traceback() -> None:
    """`sandbox serve --espocrm-port N` with N taken by another program: one line and exit 4 (it was an OSError
    traceback and exit 1); a port outside 0..65535 is a usage error (it was an OverflowError traceback)."""
    import socket

    from typer.testing import CliRunner

    from docsync_cli.cli.app import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = CliRunner().invoke(app, ["sandbox", "serve", "--espocrm-port", str(port)])
    assert done.exit_code == 4, (done.output, done.exception)
    assert "cannot start the emulators" in done.output and "Traceback" not in done.output
    out_of_range = CliRunner().invoke(app, ["sandbox", "serve", "--xai-port", "99999"])
    assert out_of_range.exit_code == 2 and "--xai-port" in out_of_range.output, out_of_range.output
