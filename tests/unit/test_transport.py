"""``docsync_cli.transport.http.ServiceClient``: classification into the error tree, what is retried and what is
not, ``Retry-After``, redirects, the overall deadline and how it drives the throttle (the throttle's own logic:
test_throttle.py). Stubs are pytest-httpx responses (or an ``httpx.MockTransport`` where the body has to drip
slowly); nothing really sleeps."""

from __future__ import annotations

import email.utils
import errno
import io
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytest_httpx import HTTPXMock

from docsync_cli.errors import (
    AmbiguousWriteError,
    AuthError,
    ConflictError,
    NotFoundError,
    RateLimited,
    RejectedError,
    ServiceUnreachable,
    TransientHttpError,
)
from docsync_cli.outcome import error_code
from docsync_cli.timestamps import timestamp_to_unix
from docsync_cli.transport.http import RetryPolicy, ServiceClient, parse_retry_after, refused_outright, short
from docsync_cli.transport.throttle import Throttle

BASE = "https://svc.example"
URL = f"{BASE}/v1/things"
SECRET = "Bearer sk-very-secret"


def make_service(*, attempts: int = 3, deadline: float = 300.0, throttle: Throttle | None = None,
                 transport: httpx.BaseTransport | None = None, max_retry_after: float = 120.0) -> ServiceClient:
    http = httpx.Client(base_url=BASE, follow_redirects=False, transport=transport,
                        headers={"Authorization": SECRET})
    policy = RetryPolicy(attempts=attempts, wait_initial=0, wait_max=0, max_retry_after=max_retry_after)
    return ServiceClient("svc", http, deadline_seconds=deadline, retry=policy, throttle=throttle)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every back-off the retry loop asks for (tenacity sleeps through ``time.sleep``); none really happens."""
    recorded: list[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)
    return recorded


# -- classification ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failures_are_run_fatal_and_not_retried(httpx_mock: HTTPXMock, status: int) -> None:
    httpx_mock.add_response(url=URL, status_code=status)
    with pytest.raises(AuthError) as caught:
        make_service().call("GET", "/v1/things")
    assert caught.value.status == status and error_code(caught.value) == 3
    assert len(httpx_mock.get_requests()) == 1


@pytest.mark.parametrize(("status", "error"), [(404, NotFoundError), (409, ConflictError), (400, RejectedError),
                                               (422, RejectedError)])
def test_client_errors_are_classified_and_not_retried(httpx_mock: HTTPXMock, status: int,
                                                      error: type[Exception]) -> None:
    httpx_mock.add_response(url=URL, status_code=status, text="reason from server")
    with pytest.raises(error) as caught:
        make_service().call("GET", "/v1/things")
    assert "reason from server" in str(caught.value)
    assert len(httpx_mock.get_requests()) == 1


def test_error_detail_is_one_short_printable_line(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=400, text="line1\nline2\x00" + "x" * 1000)
    with pytest.raises(RejectedError) as caught:
        make_service().call("GET", "/v1/things")
    detail = caught.value.detail
    assert "\n" not in detail and "\x00" not in detail and len(detail) <= 200
    assert detail.startswith("line1 line2")


def test_success_returns_status_headers_and_body(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, json={"ok": True}, headers={"X-Extra": "1"})
    answer = make_service().call("GET", "/v1/things")
    assert (answer.status, answer.headers["x-extra"], answer.parsed()) == (200, "1", {"ok": True})


# -- retries -------------------------------------------------------------------------------------------


def test_server_errors_on_get_are_retried_until_success(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=502)
    httpx_mock.add_response(url=URL, status_code=500)
    httpx_mock.add_response(url=URL, json={"n": 3})
    service = make_service()
    assert service.json("GET", "/v1/things") == {"n": 3}
    assert len(httpx_mock.get_requests()) == 3
    assert service.request_count == 3


def test_server_errors_on_get_give_up_after_the_configured_attempts(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=500, is_reusable=True)
    with pytest.raises(TransientHttpError) as caught:
        make_service(attempts=3).call("GET", "/v1/things")
    assert caught.value.status == 500
    assert len(httpx_mock.get_requests()) == 3


def test_500_on_a_non_repeatable_post_is_ambiguous_and_sent_once(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=URL, status_code=500, is_optional=False)
    with pytest.raises(AmbiguousWriteError) as caught:
        make_service().call("POST", "/v1/things", json_body={"a": 1})
    assert caught.value.status == 500
    assert len(httpx_mock.get_requests()) == 1


def test_503_on_post_proves_nothing_was_applied_and_is_retried(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=URL, status_code=503)
    httpx_mock.add_response(method="POST", url=URL, json={"id": "x"})
    assert make_service().json("POST", "/v1/things", json_body={"a": 1}) == {"id": "x"}
    requests = httpx_mock.get_requests()
    assert len(requests) == 2
    assert all(r.content == b'{"a":1}' for r in requests)


def test_post_marked_safe_to_repeat_is_retried_on_500(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(method="POST", url=URL, status_code=500)
    httpx_mock.add_response(method="POST", url=URL, json={})
    make_service().call("POST", "/v1/things", json_body={}, safe_to_repeat=True)
    assert len(httpx_mock.get_requests()) == 2


def test_read_timeout_on_post_is_ambiguous_and_sent_once(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), method="POST", url=URL)
    with pytest.raises(AmbiguousWriteError) as caught:
        make_service().call("POST", "/v1/things", json_body={})
    assert caught.value.status is None and "timed out" in str(caught.value)
    assert len(httpx_mock.get_requests()) == 1


def test_lost_connection_on_post_is_ambiguous(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.RemoteProtocolError("server disconnected"), method="POST", url=URL)
    with pytest.raises(AmbiguousWriteError, match="connection lost"):
        make_service().call("POST", "/v1/things", json_body={})
    assert len(httpx_mock.get_requests()) == 1


def test_read_timeout_on_get_is_retried(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ReadTimeout("slow"), url=URL)
    httpx_mock.add_response(url=URL, json=[1])
    assert make_service().json("GET", "/v1/things") == [1]
    assert len(httpx_mock.get_requests()) == 2


def test_connection_refused_on_post_is_retried_because_nothing_arrived(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), method="POST", url=URL)
    httpx_mock.add_response(method="POST", url=URL, json={"id": "f"})
    assert make_service().json("POST", "/v1/things", json_body={}) == {"id": "f"}
    assert len(httpx_mock.get_requests()) == 2


def test_repeated_connection_refused_makes_the_service_unreachable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("Connection refused"), url=URL, is_reusable=True)
    with pytest.raises(ServiceUnreachable, match="svc is unreachable") as caught:
        make_service(attempts=3).call("GET", "/v1/things")
    assert error_code(caught.value) == 3
    assert len(httpx_mock.get_requests()) == 3


def test_retried_download_starts_the_sink_over() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            def broken() -> Iterator[bytes]:
                yield b"partial-"
                raise httpx.ReadError("connection reset")
            return httpx.Response(200, content=broken())
        return httpx.Response(200, content=b"complete body")

    sink = io.BytesIO()
    make_service(transport=httpx.MockTransport(handler)).call("GET", "/file", sink=sink)
    assert sink.getvalue() == b"complete body"
    assert calls["n"] == 2


def test_error_body_is_not_written_into_the_download_sink(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"{BASE}/file", status_code=404, text="no such attachment")
    sink = io.BytesIO()
    with pytest.raises(NotFoundError):
        make_service().call("GET", "/file", sink=sink)
    assert sink.getvalue() == b""


# -- Retry-After ---------------------------------------------------------------------------------------


def test_429s_do_not_use_up_the_attempts_meant_for_failures(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    for _ in range(6):
        httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "1"})
    httpx_mock.add_response(url=URL, json={"ok": 1})
    assert make_service(attempts=2).json("GET", "/v1/things") == {"ok": 1}
    assert sleeps == [1.0] * 6


def test_a_429_asking_for_longer_than_the_budget_stops_the_run_with_the_time_to_retry(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "7"})
    service = make_service(attempts=1)
    service.retry.total_seconds = 1  # Retry-After (7 s) overruns the budget: the run cannot wait
    before = time.time()
    with pytest.raises(RateLimited) as caught:
        service.call("GET", "/v1/things")
    assert caught.value.retry_after == 7.0 and caught.value.service == "svc"
    assert before + 6 <= timestamp_to_unix(caught.value.until) <= time.time() + 8
    assert "rate limited until " + caught.value.until in str(caught.value)
    assert len(httpx_mock.get_requests()) == 1  # not waited out, not retried


def test_a_429_with_retry_after_an_hour_is_run_level_not_capped_and_retried(httpx_mock: HTTPXMock,
                                                                           sleeps: list[float]) -> None:
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited, match="rate limited until"):
        make_service(max_retry_after=120).call("POST", "/v1/things")
    assert sleeps == [] and len(httpx_mock.get_requests()) == 1


def test_429_retry_after_seconds_is_waited_before_the_retry(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": "7"})
    httpx_mock.add_response(url=URL, json={"ok": 1})
    assert make_service().json("GET", "/v1/things") == {"ok": 1}
    assert sleeps == [7.0]
    assert len(httpx_mock.get_requests()) == 2


def test_429_retry_after_http_date_is_waited_before_the_retry(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    httpx_mock.add_response(url=URL, status_code=429, headers={"Retry-After": when})
    httpx_mock.add_response(url=URL, json={"ok": 1})
    make_service().call("GET", "/v1/things")
    assert len(sleeps) == 1 and 27.0 <= sleeps[0] <= 30.5
    assert len(httpx_mock.get_requests()) == 2


def test_retry_after_is_capped_by_the_policy(httpx_mock: HTTPXMock, sleeps: list[float]) -> None:
    httpx_mock.add_response(url=URL, status_code=503, headers={"Retry-After": "3600"})
    httpx_mock.add_response(url=URL, json={})
    make_service(max_retry_after=5).call("GET", "/v1/things")
    assert sleeps == [5.0]


def test_parse_retry_after_forms() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after("12", now) == 12.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(date, now) == pytest.approx(12.0)
    assert parse_retry_after(email.utils.formatdate(now - 60, usegmt=True), now) == 0.0
    assert parse_retry_after("-4", now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None and parse_retry_after(None, now) is None


# -- redirects and bodies ------------------------------------------------------------------------------


def test_redirect_to_another_host_is_never_followed(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=URL, status_code=307, headers={"Location": "https://evil.example/v1/things"})
    with pytest.raises(ServiceUnreachable) as caught:
        make_service().call("GET", "/v1/things")
    assert "redirect" in str(caught.value) and "evil.example" in str(caught.value)
    assert SECRET not in str(caught.value) and "sk-very-secret" not in str(caught.value)
    requests = httpx_mock.get_requests()
    assert [r.url.host for r in requests] == ["svc.example"]  # one request, none to evil.example
    assert httpx_mock.get_requests(url="https://evil.example/v1/things") == []


def test_html_page_with_200_is_a_transient_error_from_json(httpx_mock: HTTPXMock) -> None:
    page = "<html><head><title>Login</title></head><body>" + "lorem ipsum " * 500 + "</body></html>"
    httpx_mock.add_response(url=URL, text=page, headers={"Content-Type": "text/html"})
    with pytest.raises(TransientHttpError, match="not JSON") as caught:
        make_service().json("GET", "/v1/things")
    assert caught.value.status == 200
    assert len(str(caught.value)) < 200  # a preview, not the whole page


def test_short_truncates_and_flattens() -> None:
    assert short("a\tb\n\nc") == "a b c"
    assert short("x" * 300, 10) == "x" * 9 + "…"


# -- deadline ------------------------------------------------------------------------------------------


def test_deadline_stops_a_body_that_drips_slowly() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        def drip() -> Iterator[bytes]:
            for _ in range(100):
                time.sleep(0.05)
                yield b"."
        return httpx.Response(200, content=drip())

    service = make_service(attempts=1, deadline=0.3, transport=httpx.MockTransport(handler))
    started = time.monotonic()
    with pytest.raises(TransientHttpError, match="timed out"):
        service.call("GET", "/slow")
    assert time.monotonic() - started < 1.5


def test_deadline_on_a_post_is_ambiguous() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        def drip() -> Iterator[bytes]:
            for _ in range(100):
                time.sleep(0.05)
                yield b"."
        return httpx.Response(200, content=drip())

    service = make_service(attempts=3, deadline=0.3, transport=httpx.MockTransport(handler))
    with pytest.raises(AmbiguousWriteError, match="timed out"):
        service.call("POST", "/slow", json_body={})
    assert service.request_count == 1


# -- throttle ------------------------------------------------------------------------------------------


def test_throttle_halves_on_429_and_grows_back_on_success(httpx_mock: HTTPXMock) -> None:
    throttle = Throttle(limit=8)
    httpx_mock.add_response(url=URL, status_code=429)
    httpx_mock.add_response(url=URL, status_code=429)
    httpx_mock.add_response(url=URL, json={})
    make_service(throttle=throttle).call("GET", "/v1/things")
    assert throttle.throttled == 2
    assert throttle.allowed == 2  # 8 → 4 → 2, then one success adds only half a slot
    for _ in range(60):  # about one slot per window of successes
        throttle.on_success()
    assert throttle.allowed == 8  # and never above the limit


def test_throttle_limits_requests_in_flight() -> None:
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.02)
        with lock:
            state["now"] -= 1
        return httpx.Response(200, json={})

    service = make_service(throttle=Throttle(limit=2), transport=httpx.MockTransport(handler))
    threads = [threading.Thread(target=service.call, args=("GET", "/x")) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert state["peak"] == 2
    assert service.request_count == 8


# -- connect timeouts (nothing reached the server) -----------------------------------------------------


def test_connect_timeout_on_post_is_retried_because_nothing_arrived(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectTimeout("connect timed out"), method="POST", url=URL)
    httpx_mock.add_response(method="POST", url=URL, json={"id": "f"}, is_optional=True)
    assert make_service().json("POST", "/v1/things", json_body={}) == {"id": "f"}
    assert len(httpx_mock.get_requests()) == 2


def test_repeated_connect_timeouts_make_the_service_unreachable(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectTimeout("connect timed out"), url=URL, is_reusable=True)
    with pytest.raises(ServiceUnreachable):
        make_service(attempts=3).call("GET", "/v1/things")
    assert len(httpx_mock.get_requests()) == 3


# -- start-up that fails fast ----------------------------------------------------------------------------


def _unused_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("base", [f"http://127.0.0.1:{_unused_loopback_port()}", "http://espocrm.invalid"],
                         ids=["refused", "no-such-name"])
def test_a_wrong_url_at_start_is_unreachable_at_once_not_retried(base: str) -> None:
    """Issue 22: a refused connection or a name the resolver does not know, before the service ever answered,
    is a wrong URL or a service that is down: no retry (it cost ~10 s and 4 warnings per start-up request)."""
    policy = RetryPolicy(attempts=5, wait_initial=0, wait_max=0)
    service = ServiceClient("espocrm", httpx.Client(base_url=base, timeout=5.0), retry=policy)
    with pytest.raises(ServiceUnreachable, match="espocrm is unreachable: cannot connect") as caught:
        service.call("GET", "/api/v1/App/user")
    assert caught.value.service == "espocrm" and error_code(caught.value) == 3
    assert service.request_count == 1


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused") from ConnectionRefusedError(
        errno.ECONNREFUSED, "Connection refused")


def test_refusals_after_the_service_answered_are_retried_as_a_dropped_connection() -> None:
    """Mid-run, a refused connection is a restart or a fail-over: retried like a 502."""
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            return _refused(request)
        return httpx.Response(200, json={"n": calls["n"]})

    service = make_service(attempts=3, transport=httpx.MockTransport(handler))
    assert service.json("GET", "/v1/things") == {"n": 1}
    assert service.json("GET", "/v1/things") == {"n": 4}


def test_refused_outright_reads_the_socket_error_not_the_text() -> None:
    with pytest.raises(httpx.ConnectError) as refused:
        _refused(httpx.Request("GET", URL))
    assert refused_outright(refused.value)
    assert refused_outright(httpx.ConnectError("x").with_traceback(None)) is False
    assert refused_outright(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    assert not refused_outright(TimeoutError("timed out"))
