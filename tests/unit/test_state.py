"""``state.py``: this host's memory between runs (real SQLite in ``tmp_path``): the document rows, the upload
intent journal, the ownership record, the cleanup journal, the change feeds' bookkeeping, the installation id,
and the read-only view the reports use."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.errors import LocalEnvironmentError
from docsync_cli.model import LocalRecord
from docsync_cli.state import (
    STATE_FILE,
    ReadOnlyState,
    StateStore,
    installation_id,
    peek_installation_id,
    remember_installation_id,
)


def record(doc_id: str, **changes: object) -> LocalRecord:
    values: dict[str, object] = {"doc_id": doc_id, "file_id": f"att-{doc_id}", "sha256": "s" * 64, "md5": "m" * 32,
                                 "xai_file_id": f"file_{doc_id}", "collections": ("col_a", "col_b"),
                                 "crm_modified_at": "2026-01-02 03:04:05", "failure_code": None,
                                 "failure_transient": False, "preview_sha": "s" * 64}
    values |= changes
    return LocalRecord(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore(tmp_path / "state")
    yield opened
    opened.close()


# -- the writer ---------------------------------------------------------------------------------------


def test_the_state_file_is_private_and_the_directory_is_made(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    StateStore(state).close()
    assert stat.S_IMODE((state / STATE_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_saved_row_reads_back_field_for_field(store: StateStore) -> None:
    saved = record("d1", failure_code="too_large", failure_transient=True, pending=True, preview_failed="boom")
    store.save(saved)
    assert store.record("d1") == saved
    assert store.records() == {"d1": saved}
    assert store.record("nope") is None


def test_saving_again_replaces_the_row(store: StateStore) -> None:
    store.save(record("d1"))
    store.save(record("d1", xai_file_id="file_new", collections=()))
    got = store.record("d1")
    assert got is not None and got.xai_file_id == "file_new" and got.collections == ()


def test_records_for_reads_only_the_asked_ones_across_chunks(store: StateStore) -> None:
    store.add_many([record(f"d{i:04d}") for i in range(1200)])
    found = store.records_for([f"d{i:04d}" for i in range(0, 1200, 2)] + ["missing"])
    assert len(found) == 600 and "d0001" not in found and "missing" not in found


def test_id_ranges_count_and_list_in_id_order(store: StateStore) -> None:
    store.add_many([record(d) for d in ("b", "a", "d", "c")])
    assert store.count_between() == 4
    assert store.count_between("b", "d") == 2
    assert store.ids_between("b", None) == ["b", "c", "d"]
    assert store.ids_between(None, None, offset=1, limit=2) == ["b", "c"]


def test_forget_drops_the_records(store: StateStore) -> None:
    store.add_many([record("d1"), record("d2")])
    store.forget(["d1"])
    assert set(store.records()) == {"d2"}


def test_the_upload_intent_journal(store: StateStore) -> None:
    store.upload_started("d1", "sha1", "docsync-d1-sha1.pdf")
    assert store.upload_intent("d1", "sha1") == ("docsync-d1-sha1.pdf", None)
    assert store.open_upload_names() == {"docsync-d1-sha1.pdf": "d1"}  # the answer never came (yet)
    store.upload_started("d1", "sha1", "another name")  # a second start keeps the first intent
    assert store.upload_intent("d1", "sha1") == ("docsync-d1-sha1.pdf", None)
    store.upload_done("d1", "sha1", "file_1")
    assert store.upload_intent("d1", "sha1") == ("docsync-d1-sha1.pdf", "file_1")
    assert store.open_upload_names() == {}
    assert store.owner("file_1") == "d1"  # a finished upload is recorded as ours
    store.upload_settled("d1", "sha1")
    assert store.upload_intent("d1", "sha1") is None


def test_settling_without_a_hash_forgets_every_intent_of_the_document(store: StateStore) -> None:
    store.upload_started("d1", "sha1", "n1")
    store.upload_started("d1", "sha2", "n2")
    store.upload_started("d2", "sha1", "n3")
    store.upload_settled("d1")
    assert store.upload_intent("d1", "sha1") is None and store.upload_intent("d1", "sha2") is None
    assert store.upload_intent("d2", "sha1") == ("n3", None)


def test_the_ownership_record(store: StateStore) -> None:
    store.own("file_1", "d1", "sha1")
    store.own("file_2", "d1", None)
    store.own("file_3", "d2", "sha3")
    assert store.owner("file_1") == "d1"
    assert store.owner("file_x") is None
    assert store.owned_files("d1") == {"file_1": "d1", "file_2": "d1"}
    assert store.owned_files() == {"file_1": "d1", "file_2": "d1", "file_3": "d2"}
    store.disown("file_1")
    assert store.owner("file_1") is None


def test_the_cleanup_journal_orders_removals_before_the_file_deletion(store: StateStore) -> None:
    store.cleanup_planned("d1", [("file_1", ""), ("file_1", "col_b"), ("file_1", "col_a")])
    assert store.cleanups() == [("d1", "file_1", "col_a"), ("d1", "file_1", "col_b"), ("d1", "file_1", "")]
    store.cleanup_done("file_1", "col_a")
    assert store.cleanups() == [("d1", "file_1", "col_b"), ("d1", "file_1", "")]


def test_watermark_and_cursors(store: StateStore) -> None:
    assert store.meta("watermark") is None
    store.set_meta({"watermark": "2026-01-02 03:04:05", "note_cursor": "17"})
    store.set_meta({"note_cursor": "18"})
    assert store.meta("watermark") == "2026-01-02 03:04:05"
    assert store.meta("note_cursor") == "18"


def test_linked_records_collections(store: StateStore) -> None:
    store.set_linked("Account", {"a1": "col_1", "a2": "col_2", "a3": None})
    assert store.linked("Account") == {"a1": "col_1", "a2": "col_2"}
    store.set_linked("Account", {"a2": None})  # the account no longer names a collection
    assert store.linked("Account") == {"a1": "col_1"}
    store.set_linked("Account", {"a9": "col_9"}, replace=True)
    assert store.linked("Account") == {"a9": "col_9"}
    assert store.linked("Contact") == {}


def test_an_older_state_file_gains_the_new_columns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / STATE_FILE)
    db.execute("CREATE TABLE documents (doc_id TEXT PRIMARY KEY, file_id TEXT, sha256 TEXT, md5 TEXT,"
               " xai_file_id TEXT, collections TEXT NOT NULL DEFAULT '[]', crm_modified_at TEXT, failure_code TEXT,"
               " failure_transient INTEGER NOT NULL DEFAULT 0, preview_sha TEXT, updated REAL NOT NULL)")
    db.execute("INSERT INTO documents (doc_id, collections, updated) VALUES ('old', '[\"c\"]', 0)")
    db.commit()
    db.close()
    store = StateStore(state)
    try:
        got = store.record("old")
    finally:
        store.close()
    assert got is not None and got.collections == ("c",) and not got.pending and got.preview_failed is None


def test_an_unusable_state_directory_is_a_local_environment_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(LocalEnvironmentError, match=r"failed while it tried to open state\.sqlite3"):
        StateStore(tmp_path / "file" / "state")


# -- the installation id --------------------------------------------------------------------------------


def test_the_installation_id_is_made_once_and_kept(tmp_path: Path) -> None:
    assert peek_installation_id(tmp_path) is None
    made = installation_id(tmp_path)
    assert installation_id(tmp_path) == made == peek_installation_id(tmp_path)
    assert peek_installation_id(tmp_path, "configured-id") == "configured-id"
    remember_installation_id(tmp_path, "shared-install")
    assert installation_id(tmp_path) == "shared-install"


def test_a_damaged_installation_id_is_refused(tmp_path: Path) -> None:
    (tmp_path / "installation-id").write_text("?\n")
    with pytest.raises(OSError, match="does not hold an installation id"):
        installation_id(tmp_path)
    assert peek_installation_id(tmp_path) is None


# -- the read-only view ----------------------------------------------------------------------------------


def test_the_read_only_view_of_a_missing_state_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "never-ran"
    assert ReadOnlyState(state).exists() is False
    assert not state.exists()


def test_the_read_only_view_reads_what_a_run_wrote(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = StateStore(state)
    saved = record("d1", collections=("col_a",))
    store.save(saved)
    store.save(record("d2", xai_file_id=None, collections=("col_b", "col_a")))
    store.set_meta({"watermark": "2026-01-02 03:04:05", "last_listing": "1767225600.0"})
    store.close()
    before = (state / STATE_FILE).read_bytes()
    view = ReadOnlyState(state)
    assert view.exists()
    assert view.records(["d1", "missing"]) == {"d1": saved}
    assert view.file_owners() == {"file_d1": "d1"}
    assert view.collections() == {"col_a", "col_b"}
    assert view.meta() == {"watermark": "2026-01-02 03:04:05", "last_listing": "1767225600.0"}
    assert (state / STATE_FILE).read_bytes() == before  # nothing written (SQLite may add its -shm/-wal files)


def test_the_read_only_view_of_an_older_file_without_the_tables_reads_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    sqlite3.connect(state / STATE_FILE).close()  # an empty database: no tables at all
    view = ReadOnlyState(state)
    assert view.exists()
    assert view.meta() == {}
    assert view.file_owners() == {}
    assert view.collections() == set()


def test_hidden_documents_are_remembered_and_left_out_of_the_counts(store: StateStore) -> None:
    store.add_many([record(d) for d in ("a", "b", "c")])
    store.hide("b", "No 'read' access.")
    store.hide("b", "again")  # the first time is kept
    assert store.hidden()["b"][0] == "No 'read' access."
    assert store.count_between() == 2 and store.ids_between(None, None) == ["a", "c"]
    store.unhide(["B"])  # seen again, whatever the case of the id
    assert store.hidden() == {} and store.count_between() == 3
    store.hide("c", "No 'read' access.")
    store.forget(["c"])
    assert store.hidden() == {}


def test_a_listing_pass_compares_ids_ignoring_case(store: StateStore) -> None:
    store.add_many([record(d) for d in ("Abc", "def", "GHI")])
    store.hide("GHI", "No 'read' access.")
    store.listing_started()
    store.listed(["abc", "ghi"])
    assert store.unlisted() == ["def"]
    assert store.hidden() == {}  # listed: visible again
    store.listing_started()
    assert store.unlisted() == ["Abc", "GHI", "def"]
