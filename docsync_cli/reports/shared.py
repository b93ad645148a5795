"""What the read-only report modules share: the quick service clients, one Document by id, this host's local
record of a document and its run history (read-only: a state directory that does not exist yet is not created).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from docsync_cli.config import Settings
from docsync_cli.errors import NotFoundError, RejectedError, UsageError
from docsync_cli.model import CrmDocument, LocalRecord
from docsync_cli.state import ReadOnlyState
from docsync_cli.state.directory import state_file_exists
from docsync_cli.state.history import FILE_NAME as HISTORY_FILE
from docsync_cli.state.history import History
from docsync_cli.sync.services import Services, open_services
from docsync_cli.transport.http import RetryPolicy

# Reports answer quickly: two tries, short waits (a sync uses the configured, patient policy).
REPORT_RETRY = RetryPolicy(attempts=2, total_seconds=20.0, wait_initial=0.3, wait_max=2.0, max_retry_after=5.0)


# ---------------------------------------------------------------------------------------------- shared helpers


@contextlib.contextmanager
def report_services(settings: Settings) -> Iterator[Services]:
    """The service clients with the quick :data:`REPORT_RETRY` policy (reports must not hang for minutes)."""
    with open_services(settings, retry=REPORT_RETRY) as services:
        yield services


def get_document(services: Services, doc_id: str) -> CrmDocument:
    """The Document ``doc_id`` read with the CRM's real attribute names; a usage error when there is none."""
    services.espo.learn()  # the attribute names that really exist (e.g. cDateiStatus); cached for the run
    try:
        return services.espo.get_document(doc_id)
    except NotFoundError:
        raise UsageError(f"EspoCRM has no Document with id {doc_id!r}") from None
    except RejectedError as exc:
        if exc.status != 403:
            raise
        raise UsageError(f"the EspoCRM API user may not read Document {doc_id!r} ({exc.detail}): its role or the "
                         "record's teams hide it from docsync") from None


class Lines(Protocol):
    """Where a report writes its lines as it goes (the CLI layer's ``ui.LinePrinter``: literal, unwrapped,
    secret-free). ``style`` is a presentation hint ("bold", "red", ...), never part of the text."""

    def line(self, text: str, style: str | None = None) -> None: ...


def read_local_record(state_dir: Path, doc_id: str) -> LocalRecord | None:
    """This host's record of ``doc_id`` from ``state.sqlite3``; None when there is none (or no state file yet).

    Opens the database read-only, so a report never creates or changes the state directory."""
    return read_local_records(state_dir, [doc_id]).get(doc_id)


def read_local_records(state_dir: Path, doc_ids: list[str]) -> dict[str, LocalRecord]:
    """:func:`read_local_record` for several documents at once (missing ones are left out)."""
    state = ReadOnlyState(state_dir)
    if not doc_ids or not state.exists():
        return {}
    return state.records(doc_ids)


def open_history(state_dir: Path) -> History | None:
    """The run history of ``state_dir``, or None when no run has written one yet (nothing is created)."""
    if not state_file_exists(state_dir / HISTORY_FILE):
        return None
    return History(state_dir)


