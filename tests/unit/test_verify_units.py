"""The daily `docsync verify` units: commented like the sync units, a daily wall-clock timer, and they pass
`systemd-analyze verify` (helpers from ``test_systemd_units``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_systemd_units import ROOT, SECRETS, SERVICE, is_comment, one, parse_unit, systemd_analyze, values

VERIFY_SERVICE = ROOT / "systemd" / "docsync-verify.service"
VERIFY_TIMER = ROOT / "systemd" / "docsync-verify.timer"


@pytest.mark.parametrize("path", [VERIFY_SERVICE, VERIFY_TIMER], ids=lambda path: path.name)
def test_every_directive_has_a_comment_next_to_it(path: Path) -> None:
    lines, directives = parse_unit(path)
    assert directives
    assert [lines[d.line] for d in directives
            if not (is_comment(lines, d.line - 1) or is_comment(lines, d.line + 1))] == []


# Directives that differ between the sync and the verify unit on purpose; every other [Service] directive of
# docsync.service (user, state directory, hardening, resource limits) must be the same in docsync-verify.service.
PER_UNIT = {"ExecStart", "TimeoutStartSec", "TimeoutStopSec", "SuccessExitStatus"}


def test_verify_service_runs_verify_with_the_sync_units_user_and_sandbox() -> None:
    _, directives = parse_unit(VERIFY_SERVICE)
    _, sync = parse_unit(SERVICE)
    assert one(directives, "Service", "ExecStart") == "/usr/local/bin/docsync verify"
    assert one(directives, "Service", "Type") == "oneshot"
    credentials = dict(value.split(":", 1) for value in values(directives, "Service", "LoadCredential"))
    assert credentials == {name: f"/etc/docsync/credentials/{name}" for name in SECRETS}
    assert values(directives, "Service", "SuccessExitStatus") == []  # exit 1 (below the threshold) is a failure
    shared = sorted({d.key for d in sync if d.section == "Service"} - PER_UNIT)
    assert "User" in shared and "StateDirectory" in shared and "SystemCallFilter" in shared
    assert {key: values(directives, "Service", key) for key in shared} == {
        key: values(sync, "Service", key) for key in shared}


def test_verify_timer_is_daily_and_catches_up() -> None:
    _, directives = parse_unit(VERIFY_TIMER)
    assert one(directives, "Timer", "OnCalendar") == "*-*-* 06:40"
    assert one(directives, "Timer", "Persistent") == "true"
    assert one(directives, "Timer", "Unit") == VERIFY_SERVICE.name
    assert one(directives, "Install", "WantedBy") == "timers.target"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    verified = systemd_analyze(tmp_path, VERIFY_SERVICE, VERIFY_TIMER)
    assert f"ExecStart={tmp_path / 'docsync'} verify" in verified
