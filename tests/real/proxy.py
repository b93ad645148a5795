"""A counting proxy on loopback in front of a real EspoCRM: docsync talks to it as if it were the CRM, and every
request lands in a journal (the same :class:`~docsync_sandbox.http.JournalEntry` the emulators keep), so a test or
a benchmark can count requests and writes against the real server exactly as it does against the emulator.

Requests pass through unchanged (method, path and query as sent, so an HMAC signature stays valid; body and
headers but the hop-by-hop ones); answers come back with their status, body and headers, and with the real
server's ``Date`` (docsync's change feeds use EspoCRM's clock, never the proxy's)."""

from __future__ import annotations

import threading
import time
from email.utils import parsedate_to_datetime

import httpx

from docsync_sandbox.http import EmulatorBase, Request, Response

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-authenticate", "host", "content-length", "accept-encoding"}
_NOT_BACK = _HOP | {"date", "server", "content-encoding"}


class CountingProxy(EmulatorBase):
    """Forwards everything to ``upstream`` (a site URL such as ``http://127.0.0.1:8765``) and journals it."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        self._upstream = httpx.Client(base_url=upstream.rstrip("/"), timeout=httpx.Timeout(300, connect=10),
                                      follow_redirects=False)
        self._here = threading.local()
        self.timings: list[tuple[str, str, float]] = []  # (method, raw path, seconds the real server took)
        app = self.new_app("espocrm")
        app.date_clock = self._upstream_date
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            app.route(method, "/.*")(self._forward)

    @property
    def url(self) -> str:  # type: ignore[override]  # one listener: a property, as EspoEmulator has
        return super().url("espocrm")

    def error_response(self, status: int, message: str) -> Response:
        return Response(status, message.encode())

    def clear_journal(self) -> None:
        super().clear_journal()
        with self.journal_lock:
            self.timings.clear()

    def stop(self) -> None:
        super().stop()
        self._upstream.close()

    def _upstream_date(self) -> float:
        date: float | None = getattr(self._here, "date", None)
        return time.time() if date is None else date

    def _forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        started = time.perf_counter()
        try:
            answer = self._upstream.request(request.method, request.raw_path, headers=headers,
                                            content=request.body or None)
            with self.journal_lock:
                self.timings.append((request.method, request.raw_path, time.perf_counter() - started))
        except httpx.TransportError as exc:
            self._here.date = None
            return Response(502, f"counting proxy: {type(exc).__name__}".encode())
        date = answer.headers.get("Date")
        self._here.date = parsedate_to_datetime(date).timestamp() if date else None
        back = {k: v for k, v in answer.headers.multi_items() if k.lower() not in _NOT_BACK}
        return Response(answer.status_code, answer.content, back)
