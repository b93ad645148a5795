"""The scheduler samples: systemd units pass `systemd-analyze verify` and say what they must; cron sample is sane."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE = ROOT / "systemd" / "docsync.service"
TIMER = ROOT / "systemd" / "docsync.timer"
CRON = ROOT / "cron.example"
SECRETS = ("espocrm-api-key", "xai-api-key", "xai-management-key")


@dataclass(frozen=True)
class Directive:
    section: str
    key: str
    value: str
    line: int


def parse_unit(path: Path) -> tuple[list[str], list[Directive]]:
    """Lines and directives of a unit file. Repeated keys are kept in order (configparser would reject them)."""
    lines = path.read_text().splitlines()
    directives: list[Directive] = []
    section = ""
    for number, raw in enumerate(lines):
        text = raw.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if text.startswith("[") and text.endswith("]"):
            section = text[1:-1]
            continue
        key, separator, value = text.partition("=")
        assert separator, f"{path.name}:{number + 1}: not key=value: {raw!r}"
        assert section, f"{path.name}:{number + 1}: directive outside a section"
        directives.append(Directive(section, key.strip(), value.strip(), number))
    return lines, directives


def values(directives: list[Directive], section: str, key: str) -> list[str]:
    return [d.value for d in directives if d.section == section and d.key == key]


def one(directives: list[Directive], section: str, key: str) -> str:
    found = values(directives, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected once, found {found}"
    return found[0]


def is_comment(lines: list[str], index: int) -> bool:
    return 0 <= index < len(lines) and lines[index].lstrip().startswith("#")


@pytest.mark.parametrize("path", [SERVICE, TIMER], ids=lambda path: path.name)
def test_every_directive_has_a_comment_next_to_it(path: Path) -> None:
    lines, directives = parse_unit(path)
    assert directives
    uncommented = [
        lines[d.line] for d in directives if not (is_comment(lines, d.line - 1) or is_comment(lines, d.line + 1))
    ]
    assert uncommented == []


def test_service_runs_once_with_credentials_state_and_limits() -> None:
    _, directives = parse_unit(SERVICE)
    assert one(directives, "Service", "Type") == "oneshot"
    assert one(directives, "Service", "ExecStart") == "/usr/local/bin/docsync sync"
    assert "network-online.target" in one(directives, "Unit", "Wants")
    assert "network-online.target" in one(directives, "Unit", "After")
    credentials = dict(value.split(":", 1) for value in values(directives, "Service", "LoadCredential"))
    assert credentials == {name: f"/etc/docsync/credentials/{name}" for name in SECRETS}
    assert one(directives, "Service", "StateDirectory") == "docsync"
    environment = " ".join(values(directives, "Service", "Environment"))
    assert "DOCSYNC_CONFIG=/etc/docsync/config.toml" in environment
    assert "DOCSYNC_STATE_DIR=%S/docsync" in environment
    # The hard cap of a oneshot run is TimeoutStartSec=: systemd ignores RuntimeMaxSec= for Type=oneshot
    # (and logs a warning at every reload), so it must be explained, not set.
    assert one(directives, "Service", "TimeoutStartSec") == "50min"
    assert values(directives, "Service", "RuntimeMaxSec") == []
    assert "RuntimeMaxSec=" in SERVICE.read_text()
    assert one(directives, "Service", "TimeoutStopSec") == "90"
    assert one(directives, "Service", "KillMode") == "mixed"
    assert one(directives, "Service", "SuccessExitStatus") == "75"


def test_service_is_sandboxed() -> None:
    _, directives = parse_unit(SERVICE)
    expected = {
        "User": "docsync",
        "Group": "docsync",
        "RemoveIPC": "yes",
        "RestrictSUIDSGID": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "NoNewPrivileges": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "no",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
        "UMask": "0077",
        "Nice": "10",
        "IOSchedulingClass": "idle",
        "MemoryMax": "2G",
    }
    assert {key: one(directives, "Service", key) for key in expected} == expected


def test_timer_design_is_coherent() -> None:
    _, directives = parse_unit(TIMER)
    assert one(directives, "Timer", "OnBootSec") == "2min"
    assert one(directives, "Timer", "OnUnitInactiveSec") == "1min"  # plain runs cost O(changes) (issue 12)
    assert one(directives, "Timer", "RandomizedDelaySec") == "5s"
    assert values(directives, "Timer", "AccuracySec")
    assert one(directives, "Install", "WantedBy") == "timers.target"
    # Persistent= acts only on OnCalendar= timers: it is stated, and true only together with OnCalendar=.
    persistent = one(directives, "Timer", "Persistent")
    assert persistent == ("true" if values(directives, "Timer", "OnCalendar") else "false")


def test_cron_sample_sets_path_and_does_not_flock() -> None:
    text = CRON.read_text()
    assert re.search(r"^PATH=\S*/usr/local/bin", text, re.MULTILINE)
    assert re.search(r"^SHELL=/bin/sh$", text, re.MULTILINE)
    assert re.search(r"^MAILTO=", text, re.MULTILINE)
    assert "flock" not in text
    jobs = [line for line in text.splitlines() if line and line[0] in "0123456789*"]
    assert len(jobs) == 2
    assert all(line.split()[5] == "docsync" for line in jobs)  # runs as the dedicated user, not root
    assert jobs[0].split()[:5] == ["*", "*", "*", "*", "*"] and "docsync sync " in jobs[0]
    assert "docsync sync --full" in jobs[1]
    for name in ("ESPOCRM_API_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY"):
        assert re.search(rf"^{name}_FILE=/etc/docsync/credentials/", text, re.MULTILINE)
        assert not re.search(rf"^{name}=", text, re.MULTILINE)


def systemd_analyze(tmp_path: Path, service_path: Path, timer_path: Path) -> str:
    """``systemd-analyze verify`` of a service and its timer (copied into ``tmp_path``, ``ExecStart=`` pointed at an
    executable stub, since it must name one that exists); asserts it is happy. Returns the service as verified."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    stub = tmp_path / "docsync"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    service = tmp_path / service_path.name
    service.write_text(service_path.read_text().replace("ExecStart=/usr/local/bin/docsync ", f"ExecStart={stub} "))
    shutil.copy(timer_path, tmp_path / timer_path.name)
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(service), str(tmp_path / timer_path.name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
        check=False,
    )
    output = result.stdout + result.stderr
    about_ours = [line for line in output.splitlines() if "docsync" in line]
    assert result.returncode == 0, output
    assert about_ours == [], output
    return service.read_text()


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    verified = systemd_analyze(tmp_path, SERVICE, TIMER)
    assert f"ExecStart={tmp_path / 'docsync'} sync" in verified
