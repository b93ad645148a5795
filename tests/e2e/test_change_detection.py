"""Issue 20, end to end (the real engine in-process against both emulators, as ``test_change_feeds.py``): the
situations in which the change feeds used to miss an edit until the next listing pass (EspoCRM contract §10.5,
§10.7, §11.2), each now seen by the next plain run, or reported partial with a listing pass due sooner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from docsync_cli.state import StateStore
from docsync_sandbox.http import Callback, Request
from docsync_sandbox.seed import Sandbox
from tests.e2e.test_change_feeds import Firm
from tests.e2e.test_sync_cli import docsync
from tests.fakes import FakeClock
from tests.faults import faults_of


@pytest.fixture
def firm(tmp_path: Path) -> Iterator[Firm]:
    with Sandbox() as box:
        clock = FakeClock(datetime(2026, 5, 4, 9, 0, 0, tzinfo=UTC))
        box.espo.clock = clock
        yield Firm(box, tmp_path / "state", clock)


def meta(firm: Firm, key: str) -> str | None:
    state = StateStore(firm.state_dir)
    try:
        return state.meta(key)
    finally:
        state.close()


def seed(firm: Firm, count: int = 3) -> tuple[str, list[str]]:
    collection = firm.box.xai.create_collection("Mandant A")
    account = firm.box.espo.add_account("A", collection)
    docs = [firm.box.espo.add_document(f"D{n}", f"Inhalt {n}.\n".encode(), f"d{n}.txt", accounts=[account])
            for n in range(count)]
    first = firm.run()
    assert {r.outcome for r in first.results} == {"synced"}, first.results
    return collection, sorted(docs)


def in_step(firm: Firm, doc: str, content: bytes) -> bool:
    record = firm.box.espo.document(doc)
    return record["dateiStatus"] == "Gesynct" and firm.box.xai.file_bytes(record["xaiFileId"]) == content


# -- bullet 1: a watermark that is provably safe --------------------------------------------------------


def test_a_save_after_its_page_in_a_long_listing_pass_is_seen_by_the_next_plain_run(firm: Firm) -> None:
    # The watermark was the Date of the pass's LAST page: a record saved after its page was read, during a pass
    # longer than the overlap, lay below it.
    firm.box.espo.max_size_limit = 2
    _, docs = seed(firm, 6)
    fired: list[str] = []

    def slow_pass(request: Request) -> None:
        params = json.loads(request.arg("searchParams") or "{}")
        if not fired and params.get("orderBy") == "id" and params.get("where") == []:  # the pass's first page
            fired.append(docs[0])
            firm.box.espo.replace_file(docs[0], b"Neu, nach seiner Seite.\n")
            firm.clock.advance(600)  # the rest of the pass takes ten minutes

    faults_of(firm.box.espo).add(Callback(slow_pass, when="after"), method="GET", path="/api/v1/Document")
    firm.wall += 3600  # the listing pass is due
    firm.run()
    assert fired and not in_step(firm, docs[0], b"Neu, nach seiner Seite.\n")
    firm.run()  # a plain run
    assert in_step(firm, docs[0], b"Neu, nach seiner Seite.\n")


def test_a_date_clock_ahead_of_modified_at_is_measured_and_widens_the_overlap(firm: Firm) -> None:
    firm.box.espo.date_skew = 600.0  # a proxy's Date ten minutes ahead of the database's modifiedAt
    _, docs = seed(firm)
    assert float(meta(firm, "clock_skew") or "nan") == pytest.approx(600, abs=1)
    firm.box.espo.replace_file(docs[1], b"Zweite Fassung.\n")
    firm.run()
    assert in_step(firm, docs[1], b"Zweite Fassung.\n")
    status = docsync(firm.box, firm.state_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    feeds = json.loads(status.stdout)["feeds"]
    assert feeds["clock_skew_seconds"] == pytest.approx(600, abs=1) and feeds["clock_set_back"] is False
    assert "Date +600 s against modifiedAt" in docsync(firm.box, firm.state_dir, "status").stdout


def test_a_clock_that_jumped_ahead_and_was_corrected_is_distrusted_and_listed_now(firm: Firm) -> None:
    _, docs = seed(firm)
    firm.clock.advance(3600)  # the server's clock jumps an hour ahead during a run ...
    firm.run()
    firm.clock.advance(-3600)  # ... and NTP corrects it
    firm.box.espo.replace_file(docs[2], b"Nach der Korrektur.\n")  # stamped below the watermark
    firm.clock.advance(300)
    summary = firm.run()
    assert summary.plan is not None
    assert any("not trusted" in note for note in summary.notes)
    assert in_step(firm, docs[2], b"Nach der Korrektur.\n")


# -- bullet 2: the stream cursor never moves past notes it did not read; short pages keep paging ---------------


def stream_firm(firm: Firm, read: str = "all") -> tuple[str, str, list[str]]:
    """The role streams only its own accounts (§11.2: GlobalStream filters, and may stop early). Returns the
    collection of the API user's own account, that account and three documents not linked to it."""
    espo = firm.box.espo
    espo.global_stream = True
    espo.account_read, espo.account_stream = read, "own"
    espo.max_size_limit = 2  # 50 rounds of 3 notes: an early end after 150 filtered notes
    collection = firm.box.xai.create_collection("Mandant")
    mine = espo.add_account("Mine", collection, assigned_user_id=espo.api_user_id)
    docs = sorted(espo.add_document(f"D{n}", f"Inhalt {n}.\n".encode(), f"d{n}.txt") for n in range(3))
    firm.run()
    return collection, mine, docs


def hidden_notes(firm: Firm, doc: str, count: int) -> None:
    for n in range(count):  # notes of accounts the role may not stream: each a parent the server refuses
        firm.box.espo.link(doc, "accounts", firm.box.espo.add_account(f"Hidden {n}"))


def test_notes_below_an_early_end_are_read_and_the_cursor_does_not_skip_them(firm: Firm) -> None:
    collection, mine, docs = stream_firm(firm)
    firm.box.espo.link(docs[0], "accounts", mine)  # the oldest note: below the server's 50 rounds
    hidden_notes(firm, docs[2], 200)
    firm.box.espo.link(docs[1], "accounts", mine)  # the newest note: in the first answer
    firm.run()
    assert firm.members(collection) == {docs[0], docs[1]}
    assert int(meta(firm, "note_cursor") or 0) == max(n["number"] for n in firm.box.espo.stream.notes)


def test_a_first_answer_emptied_by_the_early_end_still_finds_the_note_below(firm: Firm) -> None:
    collection, mine, docs = stream_firm(firm)
    firm.box.espo.link(docs[0], "accounts", mine)
    hidden_notes(firm, docs[2], 200)  # the first answer: -2 and no note at all
    firm.run()
    assert firm.members(collection) == {docs[0]}
    assert int(meta(firm, "note_cursor") or 0) < max(n["number"] for n in firm.box.espo.stream.notes)
    firm.run()  # nothing read is read again as new, and nothing above the cursor is lost
    firm.box.espo.link(docs[1], "accounts", mine)
    firm.run()
    assert firm.members(collection) == {docs[0], docs[1]}


def test_short_pages_with_minus_one_keep_the_document_feed_paging(firm: Firm) -> None:
    _, docs = seed(firm, 6)
    firm.box.espo.max_size_limit = 4
    firm.box.espo.short_pages = True  # §11.2: about half of maxSize with total -1 while more exist
    for n, doc in enumerate(docs):
        firm.box.espo.replace_file(doc, f"Neu {n}.\n".encode())
    firm.run()
    assert all(in_step(firm, doc, f"Neu {n}.\n".encode()) for n, doc in enumerate(docs))


# -- bullet 3: feeds that know when they are blind -------------------------------------------------------------


def test_a_role_that_streams_only_its_own_accounts_is_a_partial_feed_and_lists_sooner(firm: Firm) -> None:
    _, _, docs = stream_firm(firm, read="all")
    status = docsync(firm.box, firm.state_dir, "status", "--json")
    feeds = json.loads(status.stdout)["feeds"]
    assert feeds["stream"] == "active"
    assert feeds["stream_partial"] == ["Account stream is 'own': notes only for those Account records"]
    text = docsync(firm.box, firm.state_dir, "status").stdout
    assert "Stream notes (GlobalStream): partial — Account stream is 'own'" in text and "every 15 min" in text
    check = docsync(firm.box, firm.state_dir, "check").stdout
    assert "partial: Account stream is 'own'" in check and "Account stream 'all'" in check
    # a link to an account the role may not stream writes a note it never sees: the listing pass, due sooner
    theirs_collection = firm.box.xai.create_collection("Fremd")
    theirs = firm.box.espo.add_account("Theirs", theirs_collection)
    firm.box.espo.link(docs[0], "accounts", theirs)
    firm.run()
    firm.wall += 900 - 61  # 15 minutes after the last listing pass, well before the hour
    firm.run()
    assert docs[0] in firm.members(theirs_collection)


def test_a_relink_on_8_4_to_9_0_writes_no_note_so_the_listing_pass_comes_sooner(firm: Firm) -> None:
    espo = firm.box.espo
    espo.global_stream = True
    espo.relate_note_dedup = True  # App/user says 9.0.3
    collection = firm.box.xai.create_collection("Mandant")
    account = espo.add_account("A", collection)
    doc = espo.add_document("D", b"Inhalt.\n", "d.txt", accounts=[account])
    firm.run()
    espo.unlink(doc, "accounts", account)
    firm.run()
    assert firm.members(collection) == set()
    espo.link(doc, "accounts", account)  # no second Relate note for the pair
    firm.run()
    feeds = json.loads(docsync(firm.box, firm.state_dir, "status", "--json").stdout)["feeds"]
    assert any("9.0.3 writes no second note" in gap for gap in feeds["stream_partial"])
    firm.wall += 900
    firm.run()
    assert firm.members(collection) == {doc}


# -- bullet 4: the write-back guard that always works -----------------------------------------------------------


@pytest.mark.parametrize("guarded", [True, False], ids=["file-edit", "no-file-edit"])
def test_a_file_replaced_during_the_sync_is_never_recorded_as_synced(firm: Firm, guarded: bool) -> None:
    # §11.2: without field-level edit on `file`, EspoCRM drops the fileId docsync sends with its write-back (200)
    espo = firm.box.espo
    if not guarded:
        espo.read_only_fields = {"file"}
    _, docs = seed(firm, 2)
    replaced: list[str] = []

    def replace(request: Request) -> None:
        if not replaced:
            replaced.append(espo.replace_file(docs[0], b"Ersetzt waehrend der Synchronisierung.\n"))

    espo.replace_file(docs[0], b"Zweite Fassung.\n")
    faults_of(espo).add(Callback(replace, when="after"), method="GET", path="/api/v1/Attachment/file/.*")
    firm.run()
    assert replaced
    record = espo.document(docs[0])
    assert not (record["dateiStatus"] == "Gesynct" and record["xaiSyncStatus"] == "synced"
                and firm.box.xai.file_bytes(record["xaiFileId"]) != b"Ersetzt waehrend der Synchronisierung.\n")
    firm.run()
    assert in_step(firm, docs[0], b"Ersetzt waehrend der Synchronisierung.\n")
