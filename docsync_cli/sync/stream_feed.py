"""Reading GlobalStream's ``Relate``/``Unrelate`` notes above the stored cursor without ever moving the cursor past a
note that was not read (EspoCRM contract §10.7, §11.2).

GlobalStream answers newest first (``beforeNumber`` pages on; no offset). A page with ``total: -1`` proves that every
note between it and the page before was looked at; ``-2`` (or an empty page) ends the answer. But when the role may
not stream every parent, the server filters, and after 50 rounds of ``maxSize + 1`` notes it stops and answers
``-2`` with a short page: the older notes were never looked at. That early end cannot be told from a real one, so:

* a role that may stream every parent (nothing filtered) never stops early: its ``-2`` is the end;
* an answer over a range of at most ``50 × (maxSize + 1)`` note numbers cannot stop early either, so the range the
  last answer may have left unread is swept upward from the cursor in such windows (a few per run), and the cursor
  moves only as far as the notes are proven read. What is left waits for the next run, and the early end is
  reported (the listing pass is then due sooner, ``plan_feeds.listing_due``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from docsync_cli.crm.answers import StreamNote
from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.schema import ApiUser

ITERATION_LIMIT = 50  # GlobalRecordService's rounds before it gives up (contract §11.2)
SWEEP_WINDOWS = 4  # windows swept per run after a possibly early end


@dataclass
class StreamRead:
    """What one run read: the notes, the new cursor (every note at or below it was read or lies below the old
    cursor) and whether an answer may have ended early with notes left unread (``early``)."""

    notes: list[StreamNote] = field(default_factory=list)
    cursor: int = 0
    early: bool = False


def note_numbers(notes: Sequence[StreamNote]) -> list[int]:
    return [n.number for n in notes if n.number is not None]


def stream_filtered(user: ApiUser | None, parents: Sequence[str]) -> bool:
    """Whether GlobalStream may filter notes of ``parents`` record by record for this role (stream "own"/"team",
    contract §11.2), or the role is unknown: then its ``-2`` may be an early end."""
    if user is None or not user.acl_known:
        return True
    return any(user.limit(parent, "stream") is not None for parent in parents)


def _read_down(espo: EspoClient, cursor: int, types: Sequence[str], parents: Sequence[str], up_to: int | None,
               into: list[StreamNote]) -> tuple[int | None, int | None]:
    """Page newest first over (``cursor``, ``up_to``]; returns the last answer's lower bound (``before``: every note
    from there up was looked at) and the lowest note number the last answer returned."""
    before: int | None = None
    while True:
        page, total = espo.stream_page(cursor, types, parents, before=before, up_to=up_to)
        into.extend(page)
        numbers = note_numbers(page)
        if total == -2 or not page or not numbers:
            return before, min(numbers, default=None)
        before = min(numbers)


def read_since(espo: EspoClient, cursor: int, types: Sequence[str], parents: Sequence[str], *,
               filtered: bool) -> StreamRead:
    """Every note above ``cursor`` that can be read this run. ``filtered``: the role may not stream every parent
    (or that is unknown), so an answer's ``-2`` may be an early end."""
    read = StreamRead()
    window = ITERATION_LIMIT * (espo.page_size + 1)
    before, lowest = _read_down(espo, cursor, types, parents, None, read.notes)
    if not filtered or (before is not None and before - cursor - 1 <= window):
        read.cursor = max(note_numbers(read.notes), default=cursor)  # the -2 was the end: nothing is left
        read.cursor = max(read.cursor, cursor)
        return read
    # Perhaps an early end: (cursor, bound) may hold notes never looked at. Sweep it upward in windows the server
    # cannot cut short; the cursor moves only over swept windows and never beyond a note known to exist.
    bound = lowest if lowest is not None else before
    low, found_before = cursor, len(read.notes)
    for _ in range(SWEEP_WINDOWS if bound is not None else 1):
        high = low + window if bound is None else min(low + window, bound - 1)
        if high <= low:
            break
        _read_down(espo, low, types, parents, high, read.notes)
        low = high
    newest = max([*note_numbers(read.notes), cursor])
    if bound is not None and low >= bound - 1:
        read.cursor = newest  # all of (cursor, bound) swept: everything above the cursor was read
        return read
    read.early = bound is not None or len(read.notes) > found_before  # unread notes are left (or were missed)
    read.cursor = min(low, newest) if bound is None else low
    return read


__all__ = ["ITERATION_LIMIT", "StreamRead", "note_numbers", "read_since", "stream_filtered"]
