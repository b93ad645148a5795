"""``transport.throttle.Throttle``: requests in flight (AIMD), the request-rate cap after an overload and the
shared ``Retry-After`` pause. The rate tests read the clock from a fake; the thread tests use real threads."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from docsync_cli.transport import throttle as throttle_module
from docsync_cli.transport.throttle import Throttle


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """``clock.now`` is what the throttle's ``time.monotonic()`` answers."""
    fake = SimpleNamespace(now=0.0)
    monkeypatch.setattr(throttle_module, "time", SimpleNamespace(monotonic=lambda: fake.now))
    return fake


def send(throttle: Throttle, clock: SimpleNamespace, times: list[float]) -> None:
    for moment in times:
        clock.now = moment
        with throttle.slot():
            pass


def test_a_429_holds_back_the_other_threads_too() -> None:
    throttle = Throttle(limit=4)
    paused_at = time.monotonic()
    throttle.on_throttled(retry_after=0.3)
    entered: list[float] = []

    def other_thread() -> None:
        with throttle.slot():
            entered.append(time.monotonic() - paused_at)

    worker = threading.Thread(target=other_thread)
    worker.start()
    worker.join(5)
    assert entered and entered[0] >= 0.29  # however late the thread started, not before Retry-After passed
    with throttle.slot():  # the thread that got the 429 already slept through Retry-After itself
        pass


def test_throttle_never_drops_below_its_minimum() -> None:
    throttle = Throttle(limit=4, minimum=1)
    for _ in range(10):
        throttle.on_throttled()
    assert throttle.allowed == 1


def test_429s_of_requests_already_under_way_cut_the_concurrency_only_once() -> None:
    throttle = Throttle(limit=8)
    seen: list[int] = []

    all_in_flight = threading.Barrier(4)

    def request_then_429() -> None:
        with throttle.slot():
            all_in_flight.wait(5)  # all four are under way before the first 429 arrives
        throttle.on_throttled()
        seen.append(throttle.allowed)

    workers = [threading.Thread(target=request_then_429) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert throttle.throttled == 4
    assert throttle.allowed == 4  # halved once, not 8 → 4 → 2 → 1 → 1


def test_a_429_after_a_sample_of_requests_caps_the_rate_at_half_what_was_sent(clock: SimpleNamespace) -> None:
    throttle = Throttle(limit=8)
    send(throttle, clock, [n / 10 for n in range(10)])  # 10 requests in one second
    clock.now = 1.0
    throttle.on_throttled()
    assert throttle._rate == pytest.approx(5.0) and throttle.allowed == 4
    send(throttle, clock, [1.0])
    assert throttle._next_start == pytest.approx(1.2)  # the next request may start 1/5 s later


def test_a_429_before_eight_requests_cuts_the_concurrency_but_sets_no_rate(clock: SimpleNamespace) -> None:
    throttle = Throttle(limit=8)
    send(throttle, clock, [0.0, 0.1, 0.2])
    throttle.on_throttled()
    assert throttle._rate is None and throttle.allowed == 4


def test_the_rate_grows_per_success_and_doubles_after_a_quiet_second(clock: SimpleNamespace) -> None:
    throttle = Throttle(limit=8)
    send(throttle, clock, [n / 10 for n in range(10)])
    clock.now = 1.0
    throttle.on_throttled()
    throttle.on_success()  # right after the cut: +10 %
    assert throttle._rate == pytest.approx(5.5)
    clock.now = 2.5  # more than quiet_seconds without a 429: +10 %, then doubled
    throttle.on_success()
    assert throttle._rate == pytest.approx(12.1)
    clock.now = 3.0  # only half a second since that probe: +10 % only
    throttle.on_success()
    assert throttle._rate == pytest.approx(13.31)


def test_far_above_any_limit_seen_the_rate_cap_is_lifted(clock: SimpleNamespace) -> None:
    throttle = Throttle(limit=8)
    send(throttle, clock, [n / 10 for n in range(10)])
    clock.now = 1.0
    throttle.on_throttled()
    while throttle._rate is not None:
        clock.now += 2.0
        throttle.on_success()
    assert throttle.allowed == 8  # and the concurrency is back at the limit with it


@pytest.mark.parametrize(("min_rate", "expected"), [(0.5, 20 / 12 / 2), (2.0, 2.0)])
def test_a_second_overload_halves_the_lower_of_the_cap_and_the_rate_sent(clock: SimpleNamespace, min_rate: float,
                                                                         expected: float) -> None:
    throttle = Throttle(limit=8, min_rate=min_rate)
    send(throttle, clock, [n / 10 for n in range(10)])
    clock.now = 1.0
    throttle.on_throttled()  # 10/s sent: capped at 5/s
    send(throttle, clock, [1.0 + n for n in range(1, 11)])  # then 10 requests spread over 10 seconds
    clock.now = 12.0
    throttle.on_throttled()
    assert throttle._rate == pytest.approx(expected)  # min(5, 20 sent in 12 s)/2, but never below min_rate


def test_retry_after_holds_back_everyone_but_the_thread_that_slept_through_it(clock: SimpleNamespace) -> None:
    throttle = Throttle(limit=4)
    throttle.on_throttled(retry_after=5.0)
    assert throttle._pause_until == 5.0
    send(throttle, clock, [0.0])  # this thread (the one that got the 429) already waits in its retry loop
