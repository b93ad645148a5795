"""The tests' fault script for the emulators: rules matched by method, path regex and the n-th matching call, each
contributing an action the emulator carries out (``docsync_sandbox.http``: Respond, Delay, Drip, Drop, Callback).
Test-only: the product's emulators only expose the hook (:class:`~docsync_sandbox.http.FaultHook`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from docsync_sandbox.http import EmulatorBase, FaultAction, Request


@dataclass
class FaultRule:
    action: FaultAction
    method: str | None = None  # None matches any method
    path: str = ".*"  # regex matched (fullmatch) against the decoded path
    calls: Iterable[int] | None = None  # 1-based indexes among matching calls; None = every matching call
    times: int | None = None  # fire at most this often
    listener: str | None = None
    seen: int = 0
    fired: int = 0

    def matches(self, request: Request) -> bool:
        if self.listener is not None and request.listener != self.listener:
            return False
        if self.method is not None and request.method != self.method.upper():
            return False
        return re.fullmatch(self.path, request.path) is not None

    def consider(self, request: Request) -> bool:
        """Count a matching call and say whether the rule fires for it."""
        if not self.matches(request):
            return False
        self.seen += 1
        if self.times is not None and self.fired >= self.times:
            return False
        if self.calls is not None and self.seen not in set(self.calls):
            return False
        self.fired += 1
        return True


class FaultScript:
    """An ordered list of rules; every rule that fires for a request contributes its action."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()

    def add(self, action: FaultAction, **match: Any) -> FaultRule:
        rule = FaultRule(action=action, **match)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def actions_for(self, request: Request) -> list[FaultAction]:
        with self._lock:
            return [rule.action for rule in self._rules if rule.consider(request)]


def faults_of(emulator: EmulatorBase) -> FaultScript:
    """``emulator``'s fault script, installed on first use."""
    hook = emulator.faults
    if not isinstance(hook.source, FaultScript):
        hook.source = FaultScript()
    return hook.source
