"""Stateful property test (reliability.md G.38, after vdirsyncer's ``SyncMachine``).

Hypothesis drives random CRM edits (add a document, replace its file, link or unlink an account, point an
account at another collection, delete a document), transient faults for the next run (5xx, dropped connections,
an upload applied but its answer lost), and ``sync --full`` runs of the real engine in-process (stamina in
testing mode: no backoff sleeps). After every run that had no fault injected, the invariants of reliability.md
(c) must hold in the emulators' state, and a second run right after must make zero writes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import stamina
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from docsync_cli.errors import UnsafePlan
from docsync_sandbox.http import Drop, FaultAction, Respond
from docsync_sandbox.seed import Sandbox
from tests.faults import faults_of

from .helpers import clear_journals, pdf_bytes, run_engine, sandbox_running, write_summary
from .invariants import assert_invariants

ACCOUNTS = ("A", "B")
XAI_ERROR = '{"code": "unavailable", "error": "try again"}'
# (emulator, method, path regex, action) — each fires once in the next run and is healed by a retry or a lookup
FAULTS: dict[str, tuple[str, str, str, FaultAction]] = {
    "503 on the CRM listing": ("espo", "GET", r"/api/v1/Document", Respond(503, "unavailable")),
    "502 on a download": ("espo", "GET", r"/api/v1/Attachment/file/.+", Respond(502, "<html>bad gateway</html>")),
    "503 on a CRM update": ("espo", "PUT", r"/api/v1/Document/.+", Respond(503, "unavailable")),
    "503 on an upload": ("xai", "POST", r"/v1/files", Respond(503, XAI_ERROR)),
    "upload applied, answer lost": ("xai", "POST", r"/v1/files", Drop(after_apply=True)),
    "dropped collection add": ("xai", "POST", r"/v1/collections/[^/]+/documents/[^/]+", Drop()),
    "500 on a collection listing": ("xai", "GET", r"/v1/collections/[^/]+/documents", Respond(500, XAI_ERROR)),
    "504 on a status poll": ("xai", "GET", r".*/documents:batchGet", Respond(504, XAI_ERROR)),
    "500 on a file delete": ("xai", "DELETE", r"/v1/files/.+", Respond(500, XAI_ERROR)),
    "503 on a membership removal": ("xai", "DELETE", r"/v1/collections/.+", Respond(503, XAI_ERROR)),
}


class SyncMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._running = sandbox_running()
        self.sandbox: Sandbox = self._running.__enter__()
        self._tmp = Path(tempfile.mkdtemp(prefix="docsync-machine-"))
        self.state_dir = self._tmp / "state"
        self._testing = stamina.set_testing(True, attempts=3)
        self.accounts: dict[str, str] = {}
        self.collections: list[str] = []
        self.docs: list[str] = []
        self.faulted = False
        self.versions = 0

    @initialize()
    def firm(self) -> None:
        for name in ACCOUNTS:
            collection_id = self.sandbox.xai.create_collection(f"Mandant {name}")
            self.collections.append(collection_id)
            self.accounts[name] = self.sandbox.espo.add_account(f"Mandant {name}", collection_id)
        self.collections.append(self.sandbox.xai.create_collection("Spare"))  # accounts may move here

    def teardown(self) -> None:
        self._testing.__exit__(None, None, None)
        self._running.__exit__(None, None, None)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _content(self) -> bytes:
        self.versions += 1
        return pdf_bytes(f"version {self.versions}")

    # -- CRM edits ----------------------------------------------------------------------------------

    @rule(accounts=st.sets(st.sampled_from(ACCOUNTS)))
    def add_document(self, accounts: set[str]) -> None:
        n = len(self.docs) + 1
        self.docs.append(
            self.sandbox.espo.add_document(
                f"Dokument {n}",
                self._content(),
                f"doc-{n}.pdf",
                datei_status="Neu",
                accounts=[self.accounts[a] for a in sorted(accounts)],
            )
        )

    @precondition(lambda self: self.docs)
    @rule(data=st.data())
    def replace_file(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(self.docs))
        self.sandbox.espo.replace_file(doc_id, self._content())
        if data.draw(st.booleans(), label="workflow marks it Geändert"):
            self.sandbox.espo.user_update(doc_id, dateiStatus="Geändert")

    @precondition(lambda self: self.docs)
    @rule(data=st.data(), account=st.sampled_from(ACCOUNTS), linked=st.booleans())
    def link_or_unlink(self, data: st.DataObject, account: str, linked: bool) -> None:
        doc_id = data.draw(st.sampled_from(self.docs))
        (self.sandbox.espo.link if linked else self.sandbox.espo.unlink)(doc_id, "accounts", self.accounts[account])

    @rule(account=st.sampled_from(ACCOUNTS), data=st.data())
    def move_account_to_collection(self, account: str, data: st.DataObject) -> None:
        self.sandbox.espo.set_account_collection(self.accounts[account], data.draw(st.sampled_from(self.collections)))

    @precondition(lambda self: self.docs)
    @rule(data=st.data())
    def delete_document(self, data: st.DataObject) -> None:
        doc_id = data.draw(st.sampled_from(self.docs))
        self.docs.remove(doc_id)
        self.sandbox.espo.delete_document(doc_id)

    # -- faults and runs ----------------------------------------------------------------------------

    @rule(name=st.sampled_from(sorted(FAULTS)))
    def inject_fault(self, name: str) -> None:
        emulator, method, path, action = FAULTS[name]
        target = self.sandbox.espo if emulator == "espo" else self.sandbox.xai
        faults_of(target).add(action, method=method, path=path, times=1)
        self.faulted = True

    @rule()
    def sync(self) -> None:
        result = run_engine(self.sandbox, self.state_dir, full=True)
        refused = result.error if result.error is not None else (
            result.summary.fatal if result.summary is not None else None)
        if isinstance(refused, UnsafePlan):
            # Many documents deleted at once: the guard refuses; the operator confirms with --force-delete.
            assert result.exit_code == 4
            result = run_engine(self.sandbox, self.state_dir, full=True, force_delete=True)
        faulted, self.faulted = self.faulted, False
        self.sandbox.espo.faults.clear()
        self.sandbox.xai.faults.clear()
        if faulted:
            assert result.exit_code in (0, 1, 3), result
            return
        assert result.exit_code == 0, result
        assert_invariants(self.sandbox, all_synced=True)
        clear_journals(self.sandbox)
        again = run_engine(self.sandbox, self.state_dir, full=True)
        assert again.exit_code == 0, again
        assert write_summary(self.sandbox) == [], "a second clean run wrote"

    @invariant()
    def nothing_lost_in_the_crm(self) -> None:
        assert sorted(d["id"] for d in self.sandbox.espo.documents()) == sorted(self.docs)


SyncMachine.TestCase.settings = settings(
    max_examples=15, stateful_step_count=8, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_sync_machine = SyncMachine.TestCase
