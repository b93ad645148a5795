"""One place where HTTP answers become docsync errors, and where retries happen.

Both service clients (``crm/client.py``, ``xai.py``) send every request through :class:`ServiceClient`, which

* takes an injected ``httpx.Client`` (tests stub the transport; the CLI builds real clients with explicit timeouts
  and ``follow_redirects=False``);
* enforces an overall per-request deadline (httpx only has inactivity timeouts, so a server that drips one byte a
  second would otherwise hold a request forever);
* classifies the outcome by the error tree in ``errors.py``: an auth failure (by default 401/403; each service
  says by meaning, e.g. EspoCRM's 403 with a data reason is not one, xAI's 400 naming the API key is) →
  :class:`AuthError` (run-fatal), 404 →
  :class:`NotFoundError`, 409 → :class:`ConflictError`, 429/5xx/timeouts → :class:`TransientHttpError` (a 429
  whose ``Retry-After`` is longer than the call may wait → :class:`RateLimited`, run-fatal), a redirect
  → :class:`ServiceUnreachable` (credentials never follow it), other 4xx → :class:`RejectedError`;
* retries with ``stamina`` (exponential backoff with jitter, bounded attempts and time, ``Retry-After`` honoured)
  — but only what is safe to repeat. A non-repeatable POST is retried only when the answer proves it was not
  applied (429, 503, no connection); when its answer was lost it raises :class:`AmbiguousWriteError` so the caller
  looks the result up before trying again.
* fails fast at start: until the service has answered once, a connection the resolver or the host refuses outright
  (:func:`refused_outright`: no such name, connection refused) is not retried. That is a wrong URL or a service
  that is down, which waiting seconds does not change; the run stops at once (exit 3) and the next run tries again.
  Once the service has answered, the same failure is a dropped connection mid-run (a restart, a load balancer
  switching over) and is retried like a 502.
* limits requests in flight per service with an AIMD :class:`~docsync_cli.transport.throttle.Throttle` (a 429 halves it;
  successes grow it back).
"""

from __future__ import annotations

import email.utils
import errno
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any

import httpx
import stamina

from docsync_cli.errors import (
    AmbiguousWriteError,
    AuthError,
    ConflictError,
    LocalEnvironmentError,
    NotFoundError,
    RateLimited,
    RejectedError,
    ServiceUnreachable,
    TransientHttpError,
)
from docsync_cli.secrets import scrub
from docsync_cli.timestamps import unix_to_timestamp
from docsync_cli.transport.throttle import Throttle

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


def new_client(**options: Any) -> httpx.Client:
    """``httpx.Client(**options)``. httpx loads the TLS CA certificates here (``SSL_CERT_FILE``, ``SSL_CERT_DIR``,
    else certifi's bundle inside the installation): one this user may not read, e.g. docsync installed in root's
    0700 home and run as the service user, is a local problem (exit 4) naming the file, not a traceback."""
    try:
        return httpx.Client(**options)
    except OSError as exc:
        import certifi

        from docsync_cli.users import user_name

        bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR") or certifi.where()
        raise LocalEnvironmentError(
            f"cannot load the TLS CA certificates {bundle} ({exc.strerror or type(exc).__name__}) as "
            f"{user_name(os.geteuid())}: install docsync where this user can read it (the README's /opt/docsync), "
            "or set SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") from None


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


class ConnectFailed(TransientHttpError):
    """Nothing reached the server (refused, no route, connect timeout): safe to repeat whatever the method; when
    the attempts run out, the service is unreachable (:class:`ServiceUnreachable`). ``outright`` when the resolver
    or the host said no (:func:`refused_outright`), as opposed to a timeout."""

    def __init__(self, service: str, method: str, path: str, detail: str, *, outright: bool) -> None:
        super().__init__(service, method, path, None, detail)
        self.outright = outright


_REFUSALS = frozenset({errno.ECONNREFUSED})


def refused_outright(exc: BaseException) -> bool:
    """Whether a connect failure is a definite no: the resolver knows no such name (any ``getaddrinfo`` failure)
    or the host refused the connection. httpx wraps the socket's ``OSError``; the chain is walked to find it."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, socket.gaierror):
            return True
        if isinstance(seen, OSError) and seen.errno in _REFUSALS:
            return True
        seen = seen.__cause__ or seen.__context__ or next(
            (arg for arg in getattr(seen, "args", ()) if isinstance(arg, BaseException)), None)
    return False


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
        self.answered = False  # the service has answered at least once (fail fast until then)
        self.succeeded = False  # it has answered a request with 2xx (the key and URL work)
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
        except ConnectFailed as exc:  # refused outright at start, or nothing reached the server after the last try
            raise ServiceUnreachable(f"{self.name} is unreachable: {exc.detail}", self.name) from exc
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

        try:
            for attempt in stamina.retry_context(on=hook, attempts=None, timeout=None,
                                                 wait_initial=self.retry.wait_initial,
                                                 wait_max=self.retry.max_retry_after):
                with attempt:
                    return send()
        except TransientHttpError as exc:
            if exc.status == 429 and exc.retry_after is not None and (
                    exc.retry_after > self.retry.max_retry_after or time.monotonic() + exc.retry_after > deadline):
                # The service asks for a pause longer than this run may wait: no request of this run can
                # succeed before then, so the run stops (no document's fault) and says when to come back.
                raise RateLimited(self.name, exc.retry_after,
                                  unix_to_timestamp(time.time() + exc.retry_after)) from exc
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`call`, then parse the body as JSON (a body that is not JSON is a transient error)."""
        return self.parsed(self.call(method, path, **kwargs), method, path)

    def parsed(self, answer: Answer, method: str, path: str) -> Any:
        """The body of ``answer`` (to ``method path``) as JSON; a body that is not JSON (an HTML login page, a
        proxy's error page) is a transient error."""
        try:
            return answer.parsed()
        except ValueError as exc:
            preview = short(answer.body.decode("utf-8", "replace"), 80)
            raise TransientHttpError(self.name, method, path, answer.status,
                                     f"answer is not JSON: {preview!r}") from exc

    # -- internals ------------------------------------------------------------------------------------

    def _backoff_hook(self, exc: Exception) -> bool | float:
        if isinstance(exc, ConnectFailed) and exc.outright and not self.answered:
            return False  # a wrong URL or a service that is down: waiting does not change it (fail fast)
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
            raise ConnectFailed(self.name, method, path, f"{CONNECT_FAILED} ({short(str(exc), 80)})",
                                outright=refused_outright(exc)) from exc
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
        self.answered = True
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
            self.succeeded = True
            return answer
        detail = scrub(self._detail(answer.headers, answer.body))  # servers echo keys back
        retry_after = parse_retry_after(answer.headers.get("retry-after"))
        if 300 <= status < 400:
            target = short(answer.headers.get("location", "?"), 120)
            raise ServiceUnreachable(
                f"{self.name} answered {method} {path} with a redirect (HTTP {status}) to {target}; docsync does "
                "not follow redirects, so credentials never go to another host: fix the configured URL", self.name)
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
