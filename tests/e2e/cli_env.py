"""The real CLI as a subprocess against a running sandbox: the one runner the e2e modules share."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from docsync_sandbox.seed import Sandbox, SeededFirm


class CliEnv:
    """A sandbox, its seeded firm and a state directory; :meth:`run` runs ``docsync`` against them and asserts
    that no key of the sandbox appears in what it printed (and, with ``forbid_traceback``, no traceback)."""

    timeout = 120.0
    forbid_traceback = False

    def __init__(self, sandbox: Sandbox, firm: SeededFirm, state: Path) -> None:
        self.sandbox = sandbox
        self.firm = firm
        self.state = state

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
        env |= self.sandbox.environment(self.state)
        env |= extra_env or {}
        done = subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=env, text=True,
                              capture_output=True, timeout=self.timeout, check=False)
        for secret in (self.sandbox.espo_key, self.sandbox.xai_key, self.sandbox.mgmt_key):
            assert secret not in done.stdout, f"secret printed by {args}"
            assert secret not in done.stderr, f"secret logged by {args}"
        if self.forbid_traceback:
            assert "Traceback" not in done.stderr, done.stderr
        return done


def serve_exports(stdout: Iterable[str]) -> tuple[dict[str, str], str]:
    """Read `docsync sandbox serve`'s block up to its "stops the emulators" line: the ``export NAME=value`` pairs,
    and that last line (it names the ``kill`` that stops the server)."""
    exports: dict[str, str] = {}
    for line in stdout:
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").strip().partition("=")
            exports[key] = value
        if "stops the emulators" in line:
            return exports, line
    return exports, ""
