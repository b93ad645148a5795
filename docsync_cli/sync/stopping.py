"""How a run stops on a signal: SIGTERM (systemd stop) or SIGINT first asks the run to start no new document and
finish the ones in hand (then the lock is released and the run recorded); a second signal interrupts at once.

Standard library only.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger("docsync")


def stop_on_signals(stop: threading.Event) -> None:
    """From now on SIGTERM and SIGINT set ``stop``; when it is already set they raise ``KeyboardInterrupt``.
    Only the main thread can install signal handlers; elsewhere (e.g. a test's thread) nothing changes."""
    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.warning("stop requested (signal %d): finishing the documents in hand", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
