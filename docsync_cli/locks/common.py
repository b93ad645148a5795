"""What both lock backends share: who holds a lock (pid, host, since, nonce), the logger and the wording.

Imports only the standard library and ``timestamps``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass, field

from docsync_cli.timestamps import utc_timestamp

logger = logging.getLogger("docsync.locks")  # inside the "docsync" logger that logs.setup configures

POLL_SECONDS = 0.2
NEVER_UNLOCKED = "docsync never runs unlocked"


@dataclass(frozen=True)
class Identity:
    """A lock holder: this process on this host since a moment, plus a nonce telling two holds apart."""

    pid: int
    host: str
    since: str
    nonce: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def here(cls) -> Identity:
        return cls(pid=os.getpid(), host=socket.gethostname(), since=utc_timestamp())

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"

    def to_json(self) -> str:
        data = {"pid": self.pid, "host": self.host, "since": self.since, "nonce": self.nonce}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Identity | None:
        try:
            data = json.loads(text)
            return cls(pid=int(data["pid"]), host=str(data["host"]), since=str(data["since"]),
                       nonce=str(data.get("nonce", "")))
        except (ValueError, TypeError, KeyError):
            return None


def describe_record(record: Identity) -> str:
    """Describe a holder record, flagging one that is certainly stale (same host, process gone)."""
    text = record.describe()
    if record.host == socket.gethostname() and not pid_alive(record.pid):
        return f"unknown holder (the record names {text}, which has exited; the lock was probably just taken)"
    return text


def pid_alive(pid: int) -> bool:
    """Whether a process of this host with that pid exists (one owned by another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
