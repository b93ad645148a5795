"""Run a call as another user: in a forked child that drops to ``nobody`` when the tests run as root (otherwise it
keeps this user, whom the test has locked out some other way), and report how the call ended."""

from __future__ import annotations

import os
from collections.abc import Callable

NOBODY = 65534


def in_a_child_as_nobody(call: Callable[[], object]) -> tuple[str, str]:
    """(exception type name, message) that ``call`` ended with in the child, or ("returned", what it returned if
    that was a string, else "")."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        text = "returned:"
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            value = call()
            if isinstance(value, str):
                text += value
        except BaseException as exc:
            text = f"{type(exc).__name__}:{exc}"
        finally:
            os.write(write_fd, text.encode())
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    kind, _, message = text.partition(":")
    return kind, message
