"""A small HTTP/1.1 server toolkit for the emulators: routing, a request journal and a fault hook.

Why not a web framework: the fault script needs to do things a framework hides, such as closing the socket
after the state change was applied but before any byte of the answer, or dripping a body byte by byte.
``http.server`` gives that control with no extra dependency.

Pieces:

* :class:`Request` / :class:`Response`: plain values handed to and returned by route handlers.
* :class:`App`: a route table plus the journal and fault hook; one emulator may own several listeners
  (xAI has two hosts) that share one state, so an :class:`App` is per listener and the state lives in the
  emulator object.
* :class:`FaultHook`: where a test's fault script (``tests/faults.py``) plugs in; the actions it may return
  (:class:`Respond`, :class:`Delay`, :class:`Drip`, :class:`Drop`, :class:`Callback`) are carried out here.
* :class:`Listener`: a ``ThreadingHTTPServer`` on ``127.0.0.1:0`` serving one :class:`App`.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "App",
    "Callback",
    "Delay",
    "Drip",
    "Drop",
    "DropConnection",
    "FaultAction",
    "FaultHook",
    "FaultSource",
    "HttpError",
    "JournalEntry",
    "Listener",
    "RateLimit",
    "Request",
    "Respond",
    "Response",
]


@dataclass
class Request:
    method: str
    path: str  # decoded path, without the query string
    raw_path: str  # as sent, with the query string
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    listener: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        return default if value is None else str(value)

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json"}
        merged.update(headers or {})
        return cls(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), merged)


class HttpError(Exception):
    """Raised by a handler to answer with an error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


@dataclass
class JournalEntry:
    listener: str
    method: str
    path: str
    raw_path: str
    headers: dict[str, str]
    body: bytes
    status: int | None  # None when the connection was dropped without an answer
    started: float

    @property
    def is_write(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}


# ---------------------------------------------------------------------------------------------------
# Fault script

@dataclass
class Respond:
    """Answer with this instead of running the handler (nothing is applied)."""

    status: int
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Delay:
    """Sleep before handling; the request then proceeds normally."""

    seconds: float


@dataclass
class Drip:
    """Handle normally, then send the answer body ``chunk`` bytes every ``interval`` seconds."""

    interval: float
    chunk: int = 1


@dataclass
class Drop:
    """Close the connection without an answer. ``after_apply`` runs the handler first (state changes)."""

    after_apply: bool = False


@dataclass
class Callback:
    """Call ``fn(request)`` before (or after) the handler runs, e.g. to SIGKILL the client or edit state."""

    fn: Callable[[Request], None]
    when: Literal["before", "after"] = "before"


FaultAction = Respond | Delay | Drip | Drop | Callback


class FaultSource(Protocol):
    """Whoever scripts faults (the tests' ``tests/faults.py``): the actions for one request, in order."""

    def actions_for(self, request: Request) -> list[FaultAction]: ...

    def clear(self) -> None: ...


class FaultHook:
    """Where an emulator asks for faults: none, until a test installs a :class:`FaultSource`."""

    def __init__(self) -> None:
        self.source: FaultSource | None = None

    def actions_for(self, request: Request) -> list[FaultAction]:
        source = self.source
        return source.actions_for(request) if source is not None else []

    def clear(self) -> None:
        if self.source is not None:
            self.source.clear()


@dataclass
class RateLimit:
    """A token bucket: more than ``rate`` requests per second (after ``burst``) get 429 + Retry-After."""

    rate: float
    burst: int = 1
    retry_after: float = 1.0
    _tokens: float = 0.0
    _last: float = 0.0
    throttled: int = 0

    def __post_init__(self) -> None:
        self._tokens = float(self.burst)
        self._last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        self.throttled += 1
        return False


# ---------------------------------------------------------------------------------------------------
# App and listener

Handler = Callable[..., Response]


class App:
    """Routes for one listener, sharing journal, faults and latency with its sibling listeners."""

    def __init__(
        self,
        name: str,
        *,
        journal: list[JournalEntry],
        faults: FaultHook,
        journal_lock: threading.Lock,
        error_factory: Callable[[int, str], Response],
    ) -> None:
        self.name = name
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.journal = journal
        self.faults = faults
        self.journal_lock = journal_lock
        self.error_factory = error_factory
        self.latency = 0.0
        self.rate_limit: RateLimit | None = None
        self.throttle_body: Callable[[], Response] | None = None
        self.date_clock: Callable[[], float] | None = None  # the HTTP ``Date`` header's clock (default: real time)

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes.append((method.upper(), re.compile(pattern), fn))
            return fn

        return register

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, fn in self.routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            path_matched = True
            if method != request.method:
                continue
            try:
                return fn(request, **match.groupdict())
            except HttpError as exc:
                return exc.response
        if path_matched:
            return self.error_factory(405, "Method not allowed")
        return self.error_factory(404, f"No route {request.method} {request.path}")


class _Dropped(Exception):
    pass


DropConnection = _Dropped
"""Raise from a ``Callback(when="before")`` to close the connection without running the handler."""


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else every small answer waits ~40 ms for the client's delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def date_time_string(self, timestamp: float | None = None) -> str:
        clock = self.server.app.date_clock
        return super().date_time_string(clock() if timestamp is None and clock is not None else timestamp)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        app = self.server.app
        split = urlsplit(self.path)
        body = self._read_body()
        request = Request(
            method=self.command,
            path=unquote(split.path),
            raw_path=self.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            listener=app.name,
        )
        entry = JournalEntry(
            listener=app.name,
            method=request.method,
            path=request.path,
            raw_path=request.raw_path,
            headers={k: v for k, v in self.headers.items()},
            body=body[:1_048_576],
            status=None,
            started=time.time(),
        )
        with app.journal_lock:
            app.journal.append(entry)
        if app.latency:
            time.sleep(app.latency)
        actions = app.faults.actions_for(request)
        drip: Drip | None = None
        drop: Drop | None = None
        response: Response | None = None
        for action in actions:
            if isinstance(action, Delay):
                time.sleep(action.seconds)
            elif isinstance(action, Callback) and action.when == "before":
                action.fn(request)
            elif isinstance(action, Respond):
                body_bytes = action.body.encode() if isinstance(action.body, str) else action.body
                response = Response(action.status, body_bytes, dict(action.headers))
            elif isinstance(action, Drip):
                drip = action
            elif isinstance(action, Drop):
                drop = action
        if drop is not None and not drop.after_apply:
            raise _Dropped
        if response is None and app.rate_limit is not None and not app.rate_limit.allow():
            retry = f"{app.rate_limit.retry_after:g}"
            response = (app.throttle_body() if app.throttle_body else app.error_factory(429, "Too many requests"))
            response.headers["Retry-After"] = retry
        if response is None:
            response = app.dispatch(request)
        for action in actions:
            if isinstance(action, Callback) and action.when == "after":
                action.fn(request)
        if drop is not None:
            raise _Dropped
        entry.status = response.status
        self._send(response, drip)

    def _send(self, response: Response, drip: Drip | None) -> None:
        self.send_response(response.status)
        headers = dict(response.headers)
        headers.setdefault("Content-Length", str(len(response.body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        if drip is None:
            self.wfile.write(response.body)
            return
        for start in range(0, len(response.body), drip.chunk):
            self.wfile.write(response.body[start : start + drip.chunk])
            self.wfile.flush()
            time.sleep(drip.interval)

    def _serve(self) -> None:
        try:
            self._handle()
        except _Dropped:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        super().__init__(address, _RequestHandler)


class Listener:
    """Serves one :class:`App` on a loopback port (0 = pick a free one) in a daemon thread."""

    def __init__(self, app: App, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server = _Server((host, port), app)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self._server.server_address[0]
        host_text = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://{host_text}:{self.port}"

    def start(self) -> Listener:
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"emulator-{self.app.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class EmulatorBase:
    """Shared plumbing of both emulators: one state lock, one journal, one fault hook, N listeners.

    Subclasses create their apps with :meth:`new_app`, register routes, and serve them with :meth:`start`.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()  # guards the emulator's state; handlers take it
        self.journal: list[JournalEntry] = []
        self.journal_lock = threading.Lock()
        self.faults = FaultHook()  # tests install their fault script here (tests/faults.py)
        self.apps: dict[str, App] = {}
        self.listeners: dict[str, Listener] = {}

    def error_response(self, status: int, message: str) -> Response:
        raise NotImplementedError

    def new_app(self, name: str) -> App:
        app = App(name, journal=self.journal, faults=self.faults, journal_lock=self.journal_lock,
                  error_factory=self.error_response)
        self.apps[name] = app
        return app

    def start(self, host: str = "127.0.0.1", ports: dict[str, int] | None = None) -> Self:
        for name, app in self.apps.items():
            self.listeners[name] = Listener(app, host, (ports or {}).get(name, 0)).start()
        return self

    def stop(self) -> None:
        for listener in self.listeners.values():
            listener.stop()
        self.listeners.clear()

    def url(self, name: str) -> str:
        return self.listeners[name].url

    def set_latency(self, seconds: float) -> None:
        for app in self.apps.values():
            app.latency = seconds

    def requests(self, method: str | None = None, path: str | None = None) -> list[JournalEntry]:
        """Journal entries, optionally filtered by method and a path regex (fullmatch)."""
        with self.journal_lock:
            entries = list(self.journal)
        return [e for e in entries
                if (method is None or e.method == method) and (path is None or re.fullmatch(path, e.path))]

    def writes(self) -> list[JournalEntry]:
        return [e for e in self.requests() if e.is_write]

    def clear_journal(self) -> None:
        with self.journal_lock:
            self.journal.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
