"""Logging: one handler for every log line, docsync's and third-party libraries' alike, as text or JSON, redacted.

The handler sits on the root logger, so a library logger (``stamina``, ``httpx``, ``redis``, ``filelock``) cannot
bypass it: its lines get the same format and the same redaction (``config.redact``, once the settings are known)
as docsync's own. stamina's generic ``stamina.retry_scheduled`` line is replaced by :func:`log_retry`, which says
which request is retried, which attempt comes next and how long it waits.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from docsync_cli.timestamps import log_timestamp

if TYPE_CHECKING:
    from docsync_cli.config import Settings

retry_log = logging.getLogger("docsync.http")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {"time": log_timestamp(record.created),
                                "level": record.levelname.lower(), "logger": record.name,
                                "message": record.getMessage()}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


class Redactor(logging.Filter):
    """Every line (message and traceback) goes through the one secret scrubber (``secrets.scrub``): the configured
    keys once the settings are known, echoed-key shapes (``xai-…``, ``Bearer …``) always."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: Settings | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        from docsync_cli.config import secret_values
        from docsync_cli.secrets import scrub

        extra = secret_values(self.settings) if self.settings is not None else []
        record.msg, record.args = scrub(record.getMessage(), extra), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, extra)
        return True


REDACTOR = Redactor()


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the line (a redirected or captured stderr too)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def install_redaction(settings: Settings) -> None:
    REDACTOR.settings = settings


def setup(verbose: int, log_format: str) -> None:
    """Route every logger through one stderr handler; docsync at INFO off a terminal (journald), else WARNING."""
    handler = StderrHandler(sys.stderr)
    handler.addFilter(REDACTOR)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)
    ours = logging.getLogger("docsync")
    ours.handlers.clear()
    ours.propagate = True
    interactive = sys.stderr.isatty()
    ours.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if (verbose or not interactive) else logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    import stamina.instrumentation

    stamina.instrumentation.set_on_retry_hooks([log_retry])


def log_retry(details: Any) -> None:
    """stamina's retry hook: which request failed how, which attempt comes next, and the wait before it."""
    cause = details.caused_by
    method, path, service = (getattr(cause, name, None) for name in ("method", "path", "service"))
    if method and path:
        status = getattr(cause, "status", None)
        detail = getattr(cause, "detail", "")
        why = ": ".join(part for part in (f"HTTP {status}" if status else "", detail) if part) or type(cause).__name__
        what = f"{service} {method} {path} failed ({why})"
    else:
        what = f"{details.name} failed ({type(cause).__name__}: {cause})"
    retry_log.warning("retry scheduled: %s; attempt %d in %.1f s (waited %.1f s so far)", what,
                      details.retry_num + 1, details.wait_for, details.waited_so_far)
