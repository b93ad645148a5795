"""``docsync_cli.state.directory``: the state directory's problem as structured parts, and the one message a run fails
with. The reports on a directory the user cannot enter are in test_state_dir_reports.py."""

from __future__ import annotations

from pathlib import Path

from docsync_cli.state.directory import StateDirProblem, state_dir_problem


def test_a_problem_reads_as_one_message_with_its_fix() -> None:
    state_dir = Path("/var/lib/docsync")
    owned = StateDirProblem(state_dir, "is owned by root (uid 0), not by docsync (uid 990) who runs docsync",
                            "chown -R docsync:docsync /var/lib/docsync && chmod 0700 /var/lib/docsync")
    assert str(owned) == ("the state directory /var/lib/docsync is owned by root (uid 0), not by docsync (uid 990) "
                          "who runs docsync; fix (as root): chown -R docsync:docsync /var/lib/docsync && chmod 0700 "
                          "/var/lib/docsync")
    entry = StateDirProblem(state_dir, "is owned by root (uid 0) and not writable for docsync (uid 990)", "chown",
                            state_dir / "state.sqlite3")
    assert entry.subject == "/var/lib/docsync/state.sqlite3 in the state directory"
    assert str(entry).startswith("/var/lib/docsync/state.sqlite3 in the state directory is owned by root")
    assert str(StateDirProblem(state_dir, "is not a directory")) == "the state directory /var/lib/docsync is not " \
        "a directory"


def test_a_file_where_the_directory_should_be_has_no_command_to_fix_it(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the state directory should be")
    assert state_dir_problem(blocked) == StateDirProblem(
        blocked, "is not a directory; remove it or set DOCSYNC_STATE_DIR elsewhere")
    assert state_dir_problem(tmp_path) is None
    assert state_dir_problem(tmp_path / "new" / "state") is None  # the first run creates it
