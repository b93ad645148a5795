"""This host's memory between runs: ``state.sqlite3`` in the state dir (``0600``).

* ``documents``: per document, what the last run that touched it synced (attachment id, hashes, xAI file,
  collections, the record's ``modifiedAt`` right after docsync's own write) or why it failed. The planner uses
  it to notice a replaced file without downloading every document on every run.
* ``cleanups``: the break half of make-before-break, journalled before the write-back that makes it due
  (take file F out of collection C, or delete F when C is empty); finished right after the write-back, or by
  the next run after a crash — after checking the CRM really moved on.
* ``uploads``: the intent journal. A row is written *before* ``POST /v1/files`` and completed with the file id
  after it; an upload whose answer was lost (or a crash in between) is found again by its marked name on the
  next attempt instead of being uploaded twice.

* ``meta`` and ``linked``: the change feeds' bookkeeping (the watermark, the last listing pass, the note cursor,
  which feeds the CRM offers; the collection of each linked record, as last seen).
* ``owned``: the ownership record: every xAI file this installation uploaded (or adopted after verifying it), and
  the CRM document it was uploaded for. docsync deletes, removes or reuses a file only when this record (or the
  collection document's ``fields``: this installation's id and that very document id) says it is its own.

The installation id (``installation-id`` in the state dir, generated once; ``sync.installation_id`` overrides it
so several hosts of one installation share it) is what docsync writes into each collection document's ``fields``.

Every write is one short transaction, so a crash leaves the previous state intact. State files are opened without
following symlinks. :class:`StateStore` (``store.py``) is the writer a run holds; :class:`ReadOnlyState`
(``reader.py``) is how the read-only reports look at the same file without ever creating or changing it; the
installation id lives in ``installation.py``.
"""

from docsync_cli.state.installation import (
    INSTALLATION_FILE,
    INSTALLATION_ID,
    installation_id,
    peek_installation_id,
    private_file,
    remember_installation_id,
)
from docsync_cli.state.reader import ReadOnlyState
from docsync_cli.state.store import DOCUMENT_COLUMNS, SCHEMA, STATE_FILE, StateStore, StreamFeed

__all__ = ["DOCUMENT_COLUMNS", "INSTALLATION_FILE", "INSTALLATION_ID", "SCHEMA", "STATE_FILE", "ReadOnlyState",
           "StateStore", "StreamFeed", "installation_id", "peek_installation_id", "private_file",
           "remember_installation_id"]
