"""The adaptive politeness towards one host that :class:`~docsync_cli.transport.http.ServiceClient` keeps.

Pure bookkeeping over a condition variable and the monotonic clock: no HTTP, no docsync errors (the transport
tells it about successes and 429s). Imports only the standard library.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Throttle:
    """Politeness towards one host, shared by every thread that talks to it.

    * Requests in flight: AIMD — a 429 halves the number allowed, successes let it grow back by about one per
      window of answers.
    * Request rate: unlimited until the first 429; then capped at half the rate that was being sent (once per
      overload, not once per 429 of requests already under way), growing by 10 % per success and doubling
      after every ``quiet_seconds`` without a 429; far above any limit seen, the cap is lifted.
    * ``Retry-After``: every thread holds off until it has passed, not only the one that got the 429.
    """

    limit: int = 8
    minimum: int = 1
    min_rate: float = 0.5
    quiet_seconds: float = 1.0
    throttled: int = field(default=0, init=False)
    _current: float = field(default=0.0, init=False)
    _in_flight: int = field(default=0, init=False)
    _rate: float | None = field(default=None, init=False)
    _next_start: float = field(default=0.0, init=False)
    _pause_until: float = field(default=0.0, init=False)
    _starts: deque[float] = field(default_factory=lambda: deque(maxlen=64), init=False)
    _cond: threading.Condition = field(default_factory=threading.Condition, init=False)
    _local: threading.local = field(default_factory=threading.local, init=False)
    _cut_at: float = field(default=float("-inf"), init=False)
    _probed_at: float = field(default=float("-inf"), init=False)

    def __post_init__(self) -> None:
        self._current = float(self.limit)

    @property
    def allowed(self) -> int:
        return max(self.minimum, int(self._current))

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._cond:
            while True:
                now = time.monotonic()
                # The thread that received the 429 sleeps through Retry-After in its retry loop already.
                paused = self._pause_until if getattr(self._local, "slept_until", 0.0) < self._pause_until else 0.0
                gate = max(paused, self._next_start if self._rate else 0.0)
                if self._in_flight < self.allowed and gate <= now:
                    break
                self._cond.wait(timeout=gate - now if gate > now else None)
            self._in_flight += 1
            if self._rate:
                self._next_start = max(now, self._next_start) + 1.0 / self._rate
            self._starts.append(now)
            self._local.started = now
        try:
            yield
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def on_success(self) -> None:
        with self._cond:
            self._current = min(float(self.limit), self._current + 1.0 / max(1.0, self._current))
            if self._rate is not None:
                self._rate *= 1.1
                now = time.monotonic()
                if now - max(self._cut_at, self._probed_at) > self.quiet_seconds:
                    # No 429 for a while: probe a doubled rate (growth per success is slow at low rates).
                    self._rate *= 2.0
                    self._probed_at = now
                if self._rate > 1000.0:
                    self._rate = None
                    self._current = float(self.limit)
            self._cond.notify_all()

    def on_throttled(self, retry_after: float | None = None) -> None:
        with self._cond:
            now = time.monotonic()
            self.throttled += 1
            # Cut once per overload: 429s for requests that were already under way when the last cut was made
            # say nothing new (halving for each of them would throttle far below what the host allows).
            if getattr(self._local, "started", now) >= self._cut_at:
                self._cut_at = now
                self._current = max(float(self.minimum), self._current / 2)
                if len(self._starts) >= 8:  # enough of a sample to know the rate that was too much
                    sent = len(self._starts) / max(0.001, now - self._starts[0])
                    self._rate = max(self.min_rate, min(self._rate or sent, sent) / 2)
            if retry_after:
                self._pause_until = max(self._pause_until, now + retry_after)
                self._local.slept_until = self._pause_until
            self._cond.notify_all()
