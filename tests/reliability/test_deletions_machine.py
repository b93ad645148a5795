"""Stateful property test of issue 21's deletion half: Hypothesis adds documents with random id casing (imported
ids that MariaDB orders ignoring case and Python does not), deletes, hides and restores them, turns "Disable
record count" and short pages with ``total: -1`` on and off, and runs plain ``sync`` runs (the change feeds and the
count check, or a listing pass) through the in-process engine over the emulators.

After every run: no file of a document that still exists in EspoCRM (hidden ones included) was retired; after a
listing pass, every document deleted before it has its file retired.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import stamina
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from docsync_cli.state import StateStore
from docsync_sandbox.seed import Sandbox

from .helpers import pdf_bytes, run_engine, sandbox_running

ID_STEMS = st.sampled_from(["Imp", "imp", "IMP", "_x", "-y", "9z", "Zed", "zED", None])


class DeletionsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._running = sandbox_running()
        self.sandbox: Sandbox = self._running.__enter__()
        self._testing = stamina.set_testing(True, attempts=2)
        self._testing.__enter__()
        self._tmp = Path(tempfile.mkdtemp(prefix="docsync-deletions-"))
        self.state_dir = self._tmp / "state"
        self.live: list[str] = []
        self.hidden: set[str] = set()
        self.deleted: dict[str, str | None] = {}  # doc id -> its xAI file when it was deleted
        self.made = 0

    def teardown(self) -> None:
        self._testing.__exit__(None, None, None)
        self._running.__exit__(None, None, None)
        shutil.rmtree(self._tmp, ignore_errors=True)

    @initialize()
    def firm(self) -> None:
        espo = self.sandbox.espo
        espo.max_size_limit = 3  # small pages: bisection and paging are exercised with a handful of records
        collection = self.sandbox.xai.create_collection("Mandant A")
        self.account = espo.add_account("Mandant A", collection)
        for _ in range(5):
            self._add(None)
        self._run(listing=True)

    def _add(self, stem: str | None) -> None:
        self.made += 1
        record_id = None if stem is None else f"{stem}{self.made:03d}"
        doc_id = self.sandbox.espo.add_document(f"Dokument {self.made}", pdf_bytes(f"doc {self.made}"),
                                                f"d{self.made}.pdf", accounts=[self.account], record_id=record_id)
        self.live.append(doc_id)

    def _file(self, doc_id: str) -> str | None:
        value = self.sandbox.espo.records["Document"][doc_id].get(self.sandbox.espo.attr("xaiFileId"))
        return value if isinstance(value, str) and value else None

    def _run(self, *, listing: bool) -> None:
        store = StateStore(self.state_dir)
        try:
            store.set_meta({"last_listing": "0" if listing else repr(time.time())})
        finally:
            store.close()
        before = {d: self._file(d) for d in self.live}
        result = run_engine(self.sandbox, self.state_dir, full=False, force_delete=True)
        assert result.error is None, result.error
        files = self.sandbox.xai.files()
        for doc_id, file_id in before.items():  # hidden or not, a document that exists keeps its file
            assert file_id is None or file_id in files, f"the file of live document {doc_id} was retired"
        if listing and result.exit_code == 0:
            for doc_id, file_id in self.deleted.items():
                assert file_id is None or file_id not in files, f"deleted {doc_id} still has its file"

    @rule(stem=ID_STEMS)
    def add(self, stem: str | None) -> None:
        self._add(stem)

    @precondition(lambda self: len(self.live) > 1)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(self.live))
        self.deleted[doc_id] = self._file(doc_id)
        self.live.remove(doc_id)
        self.hidden.discard(doc_id)
        self.sandbox.espo.delete_document(doc_id)

    @precondition(lambda self: len(self.live) > len(self.hidden))
    @rule(data=st.data())
    def hide(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(sorted(set(self.live) - self.hidden)))
        self.hidden.add(doc_id)
        self.sandbox.espo.hide_document(doc_id)

    @precondition(lambda self: bool(self.hidden))
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(sorted(self.hidden)))
        self.hidden.discard(doc_id)
        self.sandbox.espo.unhide_document(doc_id)

    @rule(count_disabled=st.booleans(), short_pages=st.booleans())
    def server(self, count_disabled: bool, short_pages: bool) -> None:
        self.sandbox.espo.count_disabled = count_disabled
        self.sandbox.espo.short_pages = short_pages

    @rule(listing=st.booleans())
    def sync(self, listing: bool) -> None:
        self._run(listing=listing)


DeletionsMachine.TestCase.settings = settings(
    max_examples=12, stateful_step_count=10, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
test_deletions_machine = DeletionsMachine.TestCase
