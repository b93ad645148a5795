"""``stopping.py``: the first SIGTERM/SIGINT asks the run to finish the documents in hand, the second interrupts."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from docsync_cli.sync.stopping import stop_on_signals


@pytest.fixture
def restored_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("restored_handlers")
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_asks_to_stop_the_second_interrupts(signum: signal.Signals) -> None:
    stop = threading.Event()
    stop_on_signals(stop)
    signal.raise_signal(signum)
    assert stop.is_set()
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signum)


@pytest.mark.usefixtures("restored_handlers")
def test_outside_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGTERM)
    worker = threading.Thread(target=stop_on_signals, args=(threading.Event(),))
    worker.start()
    worker.join()
    assert signal.getsignal(signal.SIGTERM) is before
