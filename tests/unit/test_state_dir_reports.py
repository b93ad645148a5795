"""The read-only reports on a state directory the user running them cannot enter.

The first-week mistake the README warns about: a run as root creates ``/var/lib/docsync`` (mode 0700, owned by
root), then the service user runs ``docsync status`` / ``explain`` / ``search`` / ``check``. Each must say who
owns the directory and print the ``chown``, never a traceback (Python's ``Path.is_file()`` raises
PermissionError there instead of answering False).

As root the reports run in a forked child that became ``nobody``; otherwise the directory is made mode 0000.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from docsync_cli.errors import LocalEnvironmentError
from docsync_cli.locks import FileLocks
from docsync_cli.reports.search import local_collections
from docsync_cli.reports.shared import open_history, read_local_record
from docsync_cli.state import StateStore
from docsync_cli.state.history import History
from tests.as_nobody import in_a_child_as_nobody


@pytest.fixture
def locked_out_state_dir() -> Iterator[Path]:
    """A state directory with a run history and a state database in it that this test's reports cannot enter."""
    base = Path(tempfile.mkdtemp(prefix="docsync-lockedout-"))
    base.chmod(0o755)
    state_dir = base / "state"
    state_dir.mkdir(mode=0o700)
    History(state_dir).close()
    StateStore(state_dir).close()
    FileLocks(state_dir).close()
    (state_dir / "docsync.lock").touch()
    if os.geteuid() != 0:
        state_dir.chmod(0o000)
    try:
        yield state_dir
    finally:
        state_dir.chmod(0o700)
        shutil.rmtree(base)


@pytest.mark.parametrize("report", ["history", "local record", "local collections", "lock holder"])
def test_reports_on_a_state_dir_they_cannot_enter_name_the_owner_and_the_fix(
    locked_out_state_dir: Path, report: str
) -> None:
    calls: dict[str, Callable[[], object]] = {
        "history": lambda: open_history(locked_out_state_dir),
        "local record": lambda: read_local_record(locked_out_state_dir, "6b0f2695991ac13d2"),
        "local collections": lambda: local_collections(locked_out_state_dir),
        "lock holder": lambda: FileLocks(locked_out_state_dir).holder(),
    }
    kind, message = in_a_child_as_nobody(calls[report])
    assert kind == LocalEnvironmentError.__name__, f"{report}: {kind}: {message}"
    assert str(locked_out_state_dir) in message
    assert "fix (as root): chown -R " in message and f"chmod 0700 {locked_out_state_dir}" in message
