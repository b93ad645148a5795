"""Time to exit for the mistakes of a first hour (issue 22): a wrong or unreachable URL and a wrong key.

Each case runs ``python -m docsync_cli sync --no-preview`` as a subprocess against the sandbox emulators
(loopback), after one good run, so the run has nothing else to do; it measures the wall-clock time from start to
exit (interpreter start included) and checks the exit code is 3. Goal: every case < 5 s.

    .venv/bin/python bench/bench_mistakes.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docsync_sandbox.seed import Sandbox, corpus_dir

GOAL_SECONDS = 5.0


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    with Sandbox() as sandbox, tempfile.TemporaryDirectory() as tmp:
        sandbox.seed_firm(corpus_dir())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
        env |= sandbox.environment(Path(tmp) / "state")
        command = [sys.executable, "-m", "docsync_cli", "sync", "--no-preview"]
        subprocess.run(command, env=env, capture_output=True, check=False)
        cases = {
            "ESPOCRM_URL: refused port": {"ESPOCRM_URL": f"http://127.0.0.1:{unused_port()}"},
            "ESPOCRM_URL: unknown host (.invalid)": {"ESPOCRM_URL": "http://espocrm.invalid"},
            "XAI_API_URL: refused port": {"XAI_API_URL": f"http://127.0.0.1:{unused_port()}"},
            "ESPOCRM_API_KEY wrong": {"ESPOCRM_API_KEY": "not-the-key"},
            "XAI_API_KEY wrong (nothing to do)": {"XAI_API_KEY": "xai-not-the-key"},
            "XAI_MANAGEMENT_KEY wrong (nothing to do)": {"XAI_MANAGEMENT_KEY": "xai-not-the-key"},
        }
        print("| case | runs | exit | median s | max s | goal | met? |")
        print("|---|---|---|---|---|---|---|")
        for name, change in cases.items():
            times, codes = [], set()
            for _ in range(runs):
                started = time.monotonic()
                done = subprocess.run(command, env=env | change, capture_output=True, check=False)
                times.append(time.monotonic() - started)
                codes.add(done.returncode)
            ok = codes == {3} and max(times) < GOAL_SECONDS
            print(f"| {name} | {runs} | {','.join(map(str, sorted(codes)))} | {statistics.median(times):.2f} | "
                  f"{max(times):.2f} | exit 3, < {GOAL_SECONDS:.0f} s | {'yes' if ok else 'no'} |")


if __name__ == "__main__":
    main()
