"""The run's stop switch: the first run-fatal error any worker met, and the outage breaker that turns a streak
of transient document failures into one (the services keep answering 5xx/timeouts even after the retries: stop
the run instead of marking every document). Thread-safe; the engine starts no document once it is set."""

from __future__ import annotations

import threading

from docsync_cli.errors import DocsyncError, ServiceUnreachable
from docsync_cli.model import DocResult, Outcome

OUTAGE_STREAK = 5
TRANSIENT_CODES = frozenset({"transient", "membership_lost"})  # error codes that count towards the streak


class Breaker:
    def __init__(self, streak: int = OUTAGE_STREAK) -> None:
        self.streak = streak
        self.fatal: DocsyncError | None = None
        self._lock = threading.Lock()
        self._failures = 0  # consecutive documents that failed with a transient error

    def set_fatal(self, exc: DocsyncError) -> None:
        """Remember the run's first fatal error (later ones are consequences)."""
        with self._lock:
            if self.fatal is None:
                self.fatal = exc

    def watch(self, result: DocResult) -> None:
        """Count a finished document: a transient failure extends the streak, any success ends it."""
        with self._lock:
            if result.outcome == Outcome.FAILED and result.error_code in TRANSIENT_CODES:
                self._failures += 1
            elif result.outcome in (Outcome.SYNCED, Outcome.UNCHANGED, Outcome.PENDING):
                self._failures = 0
            tripped = self._failures >= self.streak
        if tripped:
            self.set_fatal(ServiceUnreachable(
                f"{self.streak} documents in a row failed with transient errors (last: {result.detail}); "
                "stopping this run, the next run retries"))
