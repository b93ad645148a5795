"""Confirmed deletions (issue 21, ``sync/deletions.py``) through the engine over the emulators: counts, bisection
and listings only nominate; a document's files are retired only after ``GET Document/{id}`` answered 404 in the
run. EspoCRM contract §11.2/§11.3: ids compare and order ignoring case, "Disable record count", short pages with
``total: -1``, a record hidden from the role is 403 (not 404)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina

from docsync_cli.state import StateStore
from docsync_sandbox.seed import Sandbox
from tests.reliability.helpers import pdf_bytes, run_engine, sandbox_running


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with stamina.set_testing(True, attempts=2), sandbox_running() as sandbox:
        yield sandbox


def seed(box: Sandbox, ids: list[str | None]) -> list[str]:
    collection = box.xai.create_collection("Mandant A")
    account = box.espo.add_account("Mandant A", collection)
    return [box.espo.add_document(f"Dokument {n}", pdf_bytes(f"doc {n}"), f"d{n}.pdf", accounts=[account],
                                  record_id=record_id) for n, record_id in enumerate(ids)]


def file_of(box: Sandbox, doc_id: str) -> str:
    value = box.espo.records["Document"][doc_id][box.espo.attr("xaiFileId")]
    assert isinstance(value, str) and value
    return value


def next_run(state_dir: Path, *, listing: bool) -> None:
    """Make the next plain run a listing pass, or a run of the change feeds and the count check."""
    store = StateStore(state_dir)
    try:
        store.set_meta({"last_listing": "0" if listing else repr(time.time())})
    finally:
        store.close()


def plain(box: Sandbox, state_dir: Path, *, listing: bool) -> None:
    next_run(state_dir, listing=listing)
    result = run_engine(box, state_dir, full=False)
    assert result.error is None and result.exit_code == 0, (result.error, result.summary)


def hidden_of(state_dir: Path) -> dict[str, tuple[str, float]]:
    store = StateStore(state_dir)
    try:
        return store.hidden()
    finally:
        store.close()


def test_a_hidden_document_keeps_its_files_until_it_is_really_deleted(box: Sandbox, tmp_path: Path) -> None:
    docs = seed(box, [None, None, None])
    state = tmp_path / "state"
    plain(box, state, listing=True)
    files = {d: file_of(box, d) for d in docs}
    box.espo.hide_document(docs[1])  # a role or team change: 403 No 'read' access., absent from lists
    for listing in (False, True, False):  # the count check and a listing pass both nominate it
        plain(box, state, listing=listing)
        assert files[docs[1]] in box.xai.files(), "a hidden document's file was retired"
        assert hidden_of(state)[docs[1]][0] == "No 'read' access."
    box.espo.unhide_document(docs[1])
    plain(box, state, listing=False)
    assert hidden_of(state) == {}
    box.espo.hide_document(docs[1])
    plain(box, state, listing=True)
    box.espo.delete_document(docs[1])  # deleted while hidden: 404 at the next listing pass
    plain(box, state, listing=True)
    assert files[docs[1]] not in box.xai.files()
    assert {files[docs[0]], files[docs[2]]} <= set(box.xai.files())


def test_ids_the_server_orders_differently_never_cost_a_live_file(box: Sandbox, tmp_path: Path) -> None:
    # imported records with upper-case and punctuated ids: MariaDB orders them ignoring case, Python does not
    ids: list[str | None] = ["Z0aa", "b1", "C2", "_d3", "-e4", "F5", "g6", "H7", "i8", "J9", "k10", "L11"]
    docs = seed(box, ids)
    box.espo.max_size_limit = 2  # small pages: the count check bisects by id range
    state = tmp_path / "state"
    plain(box, state, listing=True)
    files = {d: file_of(box, d) for d in docs}
    for gone in (docs[3], docs[7]):
        box.espo.delete_document(gone)
    box.espo.add_document("Neu", pdf_bytes("new"), "n.pdf", record_id="a-new")  # a creation beside them
    plain(box, state, listing=False)
    live = [d for d in docs if d not in (docs[3], docs[7])]
    assert {files[d] for d in live} <= set(box.xai.files()), "a live document's file was retired"
    plain(box, state, listing=True)  # whatever the bisection missed, the listing pass finds
    assert files[docs[3]] not in box.xai.files() and files[docs[7]] not in box.xai.files()
    assert {files[d] for d in live} <= set(box.xai.files())


def test_without_counting_the_listing_pass_finds_deletions(box: Sandbox, tmp_path: Path) -> None:
    docs = seed(box, [None] * 5)
    box.espo.count_disabled = True  # "Disable record count": total -1/-2 everywhere
    state = tmp_path / "state"
    plain(box, state, listing=True)
    files = {d: file_of(box, d) for d in docs}
    box.espo.delete_document(docs[2])
    plain(box, state, listing=False)  # no counts: plain runs leave deletions to the listing pass
    assert files[docs[2]] in box.xai.files()
    store = StateStore(state)
    try:
        assert '"deletions": "listing"' in (store.meta("feeds") or "")
    finally:
        store.close()
    plain(box, state, listing=True)
    assert files[docs[2]] not in box.xai.files()
    assert {files[d] for d in docs if d != docs[2]} <= set(box.xai.files())


def test_short_pages_with_minus_one_are_not_the_end_of_the_listing(box: Sandbox, tmp_path: Path) -> None:
    docs = seed(box, [None] * 9)
    box.espo.max_size_limit = 4
    state = tmp_path / "state"
    plain(box, state, listing=True)
    files = {d: file_of(box, d) for d in docs}
    box.espo.short_pages = True  # pages of about half maxSize with total -1 while more exist
    box.espo.count_disabled = True
    box.espo.delete_document(docs[0])
    plain(box, state, listing=True)
    assert files[docs[0]] not in box.xai.files()
    assert {files[d] for d in docs[1:]} <= set(box.xai.files())
    box.espo.clear_journal()
    plain(box, state, listing=True)
    assert len(box.espo.requests("GET", f"/api/v1/Document/{docs[1]}")) == 0  # listed: never a candidate


def test_full_keeps_the_files_of_hidden_documents(box: Sandbox, tmp_path: Path) -> None:
    docs = seed(box, [None, None])
    state = tmp_path / "state"
    plain(box, state, listing=True)
    kept = file_of(box, docs[0])
    box.espo.hide_document(docs[0])
    result = run_engine(box, state, full=True)
    assert result.error is None, result.error
    assert kept in box.xai.files()
    assert docs[0] in hidden_of(state)


class Collected:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str, style: str | None = None) -> None:
        self.lines.append(text)


def test_status_explain_and_check_name_a_hidden_document_and_the_method(box: Sandbox, tmp_path: Path) -> None:
    from docsync_cli.config import load_settings
    from docsync_cli.errors import UsageError
    from docsync_cli.reports.check import run_checks
    from docsync_cli.reports.explain import explain_document
    from docsync_cli.reports.status import collect_status
    from docsync_cli.reports.status_feeds import feeds_explained
    from tests.reliability.helpers import cli_env

    docs = seed(box, [None, None])
    state = tmp_path / "state"
    plain(box, state, listing=True)
    box.espo.hide_document(docs[0])
    plain(box, state, listing=True)
    settings = load_settings(None, env=cli_env(box, state))
    data = collect_status(settings)
    assert [(h["id"], h["reason"]) for h in data["hidden"]] == [(docs[0], "No 'read' access.")]
    assert data["feeds"]["deletions"] == "counts"
    assert any(line.startswith("Deletions: counts") for line in feeds_explained(data["feeds"]))
    out = Collected()
    with pytest.raises(UsageError):
        explain_document(settings, docs[0], out, probe=False)
    assert out.lines[0].startswith(f"Document {docs[0]}: hidden from docsync since ")
    assert file_of(box, docs[0]) in out.lines[1] and "is kept" in out.lines[1]
    out = Collected()
    run_checks(lambda: settings, out)
    hidden = [line for line in out.lines if "documents hidden from docsync" in line]
    assert hidden and "1 document(s)" in hidden[0]
    assert any("set Document read (and edit) to 'all'" in line for line in out.lines)
    box.espo.count_disabled = True
    plain(box, state, listing=False)
    data = collect_status(settings)
    assert data["feeds"]["deletions"] == "listing"
    assert any(line.startswith("Deletions: listing — EspoCRM does not count") for line in
               feeds_explained(data["feeds"]))
