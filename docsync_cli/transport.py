"""One place where HTTP answers become docsync errors, and where retries happen.

Both service clients (``espocrm.py``, ``xai.py``) send every request through :class:`ServiceClient`, which

* takes an injected ``httpx.Client`` (tests stub the transport; the CLI builds real clients with explicit timeouts
  and ``follow_redirects=False``);
* enforces an overall per-request deadline (httpx only has inactivity timeouts, so a server that drips one byte a
  second would otherwise hold a request forever);
* classifies the outcome by the error tree in ``errors.py``: an auth failure (by default 401/403; each service
  says by meaning, e.g. EspoCRM's 403 with a data reason is not one, xAI's 400 naming the API key is) →
  :class:`AuthError` (run-fatal), 404 →
  :class:`NotFoundError`, 409 → :class:`ConflictError`, 429/5xx/timeouts → :class:`TransientHttpError`, a redirect
  → :class:`ServiceUnreachable` (credentials never follow it), other 4xx → :class:`RejectedError`;
* retries with ``stamina`` (exponential backoff with jitter, bounded attempts and time, ``Retry-After`` honoured)
  — but only what is safe to repeat. A non-repeatable POST is retried only when the answer proves it was not
  applied (429, 503, no connection); when its answer was lost it raises :class:`AmbiguousWriteError` so the caller
  looks the result up before trying again.
* limits requests in flight per service with an AIMD :class:`Throttle` (a 429 halves it; successes grow it back).
"""

from __future__ import annotations

import email.utils
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import httpx
import stamina

from .errors import (
    AmbiguousWriteError,
    AuthError,
    ConflictError,
    NotFoundError,
    RejectedError,
    ServiceUnreachable,
    TransientHttpError,
)
from .secrets import scrub

log = logging.getLogger("docsync.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
MAX_DETAIL = 200
CONNECT_FAILED = "cannot connect"


@dataclass
class RetryPolicy:
    attempts: int = 5
    total_seconds: float = 120.0
    wait_initial: float = 0.5
    wait_max: float = 30.0
    max_retry_after: float = 120.0


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


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds, from either the delta-seconds or the HTTP-date form."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def short(text: str, limit: int = MAX_DETAIL) -> str:
    """A one-line, printable, truncated rendering of untrusted text for messages and logs."""
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes

    def parsed(self) -> Any:
        return json.loads(self.body)


DetailFn = Callable[[httpx.Headers, bytes], str]
AuthFn = Callable[[int, httpx.Headers, bytes], bool]


def default_is_auth_failure(status: int, headers: httpx.Headers, body: bytes) -> bool:
    return status in (401, 403)


@dataclass(frozen=True)
class _Outgoing:
    """One request as the caller described it (sent again as is on a retry)."""

    method: str
    path: str
    params: Any = None
    json_body: Any = None
    content: bytes | None = None
    files: Any = None
    data: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None
    sink: IO[bytes] | None = None


def _body_detail(headers: httpx.Headers, body: bytes) -> str:
    return short(body.decode("utf-8", "replace"))


class _DeadlineExceeded(Exception):
    pass


class ServiceClient:
    """Sends requests for one service (``name`` shows in messages) through an injected ``httpx.Client``."""

    def __init__(
        self,
        name: str,
        http: httpx.Client,
        *,
        deadline_seconds: float = 300.0,
        retry: RetryPolicy | None = None,
        detail: DetailFn | None = None,
        throttle: Throttle | None = None,
        is_auth_failure: AuthFn | None = None,
    ) -> None:
        self.name = name
        self.is_auth_failure = is_auth_failure or default_is_auth_failure
        self.http = http
        self.deadline_seconds = deadline_seconds
        self.retry = retry or RetryPolicy()
        self._detail = detail or _body_detail
        self.throttle = throttle or Throttle()
        self.request_count = 0
        self._count_lock = threading.Lock()

    def call(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json_body: Any = None,
        content: bytes | None = None,
        files: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        safe_to_repeat: bool | None = None,
        sink: IO[bytes] | None = None,
        rewind: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request with retries; return the answer or raise a classified error.

        ``safe_to_repeat`` defaults to "the method is idempotent". ``sink`` streams a 2xx body into a file
        (downloads); ``rewind`` is called before a retry so a streamed upload body starts over.
        """
        repeatable = method in IDEMPOTENT_METHODS if safe_to_repeat is None else safe_to_repeat
        outgoing = _Outgoing(method, path, params, json_body, content, files, data, headers, sink)
        sends = 0

        def send() -> Answer:
            nonlocal sends
            sends += 1
            if sends > 1:
                if rewind is not None:
                    rewind()
                if sink is not None:
                    sink.seek(0)
                    sink.truncate()
            return self._send_classified(outgoing, repeatable=repeatable)

        try:
            for attempt in stamina.retry_context(
                on=self._backoff_hook,
                attempts=self.retry.attempts,
                timeout=self.retry.total_seconds,
                wait_initial=self.retry.wait_initial,
                wait_max=self.retry.wait_max,
            ):
                with attempt:
                    return self._while_rate_limited(send)
        except TransientHttpError as exc:
            if exc.status is None and exc.detail.startswith(CONNECT_FAILED):
                raise ServiceUnreachable(f"{self.name} is unreachable: {exc.detail}") from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _while_rate_limited(self, send: Callable[[], Answer]) -> Answer:
        """429s are waited out (``Retry-After``, else backoff) within the time budget without using up the
        attempts meant for failures: being asked to slow down is not an error of the request."""
        deadline = time.monotonic() + self.retry.total_seconds

        def hook(exc: Exception) -> bool | float:
            if not (isinstance(exc, TransientHttpError) and exc.status == 429):
                return False
            wait = min(exc.retry_after if exc.retry_after is not None else self.retry.wait_initial,
                       self.retry.max_retry_after)
            if time.monotonic() + wait > deadline:
                return False  # waiting would overrun the budget: give the 429 back now
            return wait if exc.retry_after is not None else True

        for attempt in stamina.retry_context(on=hook, attempts=None, timeout=None,
                                             wait_initial=self.retry.wait_initial,
                                             wait_max=self.retry.max_retry_after):
            with attempt:
                return send()
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`call`, then parse the body as JSON (a body that is not JSON is a transient error)."""
        answer = self.call(method, path, **kwargs)
        try:
            return answer.parsed()
        except ValueError as exc:
            preview = short(answer.body.decode("utf-8", "replace"), 80)
            raise TransientHttpError(self.name, method, path, answer.status,
                                     f"answer is not JSON: {preview!r}") from exc

    # -- internals ------------------------------------------------------------------------------------

    def _backoff_hook(self, exc: Exception) -> bool | float:
        if isinstance(exc, TransientHttpError) and exc.status == 429:
            return False  # the inner loop already waited as long as the budget allows
        if isinstance(exc, TransientHttpError):
            if exc.retry_after is not None:
                return min(exc.retry_after, self.retry.max_retry_after)
            return True
        return False

    def _send_classified(self, out: _Outgoing, *, repeatable: bool) -> Answer:
        method, path = out.method, out.path
        try:
            with self.throttle.slot():
                answer = self._send(out)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing reached the server: safe to repeat any method.
            raise TransientHttpError(self.name, method, path, None, f"{CONNECT_FAILED} ({short(str(exc), 80)})"
                                     ) from exc
        except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, _DeadlineExceeded) as exc:
            timed_out = isinstance(exc, httpx.TimeoutException | _DeadlineExceeded)
            reason = "timed out" if timed_out else f"connection lost ({type(exc).__name__})"
            if repeatable:
                raise TransientHttpError(self.name, method, path, None, reason) from exc
            raise AmbiguousWriteError(self.name, method, path, None, reason) from exc
        return self._classify(method, path, answer, repeatable=repeatable)

    def _send(self, out: _Outgoing) -> Answer:
        with self._count_lock:
            self.request_count += 1
        started = time.monotonic()
        deadline = started + self.deadline_seconds
        request = self.http.build_request(out.method, out.path, params=out.params, json=out.json_body,
                                          content=out.content, files=out.files, data=out.data, headers=out.headers)
        response = self.http.send(request, stream=True, follow_redirects=False)
        try:
            chunks: list[bytes] = []
            sink = out.sink
            to_sink = sink is not None and 200 <= response.status_code < 300
            for chunk in response.iter_bytes():
                if time.monotonic() > deadline:
                    raise _DeadlineExceeded
                if to_sink:
                    assert sink is not None
                    sink.write(chunk)
                else:
                    chunks.append(chunk)
        finally:
            response.close()
        log.debug("%s %s %s -> %s (%.0f ms)", self.name, out.method, out.path, response.status_code,
                  (time.monotonic() - started) * 1000)
        return Answer(response.status_code, response.headers, b"".join(chunks))

    def _classify(self, method: str, path: str, answer: Answer, *, repeatable: bool) -> Answer:
        status = answer.status
        if 200 <= status < 300:
            self.throttle.on_success()
            return answer
        detail = scrub(self._detail(answer.headers, answer.body))  # servers echo keys back
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        if 300 <= status < 400:
            target = short(answer.headers.get("location", "?"), 120)
            raise ServiceUnreachable(
                f"{self.name} answered {method} {path} with a redirect (HTTP {status}) to {target}; docsync does "
                "not follow redirects, so credentials never go to another host: fix the configured URL")
        if self.is_auth_failure(status, answer.headers, answer.body):
            raise AuthError(self.name, status, detail)
        if status == 404:
            raise NotFoundError(self.name, method, path, status, detail)
        if status == 409:
            raise ConflictError(self.name, method, path, status, detail)
        if status == 429:
            self.throttle.on_throttled(min(retry_after or 0.0, self.retry.max_retry_after))
            raise TransientHttpError(self.name, method, path, status, detail or "rate limited",
                                     retry_after=retry_after)
        if status >= 500:
            if not repeatable and status != 503:
                raise AmbiguousWriteError(self.name, method, path, status, detail)
            raise TransientHttpError(self.name, method, path, status, detail, retry_after=retry_after)
        raise RejectedError(self.name, method, path, status, detail)
