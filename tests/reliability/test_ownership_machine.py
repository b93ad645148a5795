"""Stateful property test of issue 11: two docsync installations (two CRMs, two state dirs) share one xAI team and
its client collections, next to a person's hand-made collection and files that merely look like docsync's.
Hypothesis drives random CRM edits in either CRM, including hostile values people type into docsync's fields
(foreign and other installations' file ids, path-like ids, control characters, NUL, absurd lengths), EspoCRM's
"Duplicate", servers echoing keys back, and ``sync --full`` runs of either installation (in-process engine).

After every run of an installation, checked through the emulators' state:

* no file that this installation did not upload was deleted, moved into or out of a collection, or re-labelled;
* every "Gesynct" document of its CRM points at a live file with the attachment's bytes that sits in exactly its
  required collections, carrying this installation's ownership fields; no two "Gesynct" documents share a file;
* no key appears in the run's results, in any CRM field or in any state file.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import stamina
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from docsync_cli.errors import UnsafePlan
from docsync_cli.state import installation_id
from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.http import Respond
from docsync_sandbox.seed import Sandbox
from tests.faults import faults_of

from .helpers import pdf_bytes, run_engine, sandbox_running
from .invariants import required_collections

SIDES = ("prod", "other")
HOSTILE_TEXT = st.sampled_from(["a\x00b", "\x1b[31mrot\x1b[0m", "\u202egpj.exe", "x" * 5000, "c/../../v1/files",
                                "crm-backup-20240101-", "line\r\nX-Header: 1"])


class OwnershipMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._running = sandbox_running()
        self.sandbox: Sandbox = self._running.__enter__()
        self._tmp = Path(tempfile.mkdtemp(prefix="docsync-ownership-"))
        self._testing = stamina.set_testing(True, attempts=2)
        self.crm: dict[str, EspoEmulator] = {"prod": self.sandbox.espo, "other": self.sandbox.second_crm()}
        self.state = {side: self._tmp / side for side in SIDES}
        self.accounts: dict[str, list[str]] = {side: [] for side in SIDES}
        self.docs: dict[str, list[str]] = {side: [] for side in SIDES}
        self.uploaded: dict[str, set[str]] = {side: set() for side in SIDES}  # file ids each side's runs made
        self.versions = 0

    @initialize()
    def firm(self) -> None:
        xai = self.sandbox.xai
        shared = [xai.create_collection(f"Mandant {n}") for n in ("A", "B")]
        for side in SIDES:
            for n, collection_id in zip("AB", shared, strict=True):
                self.accounts[side].append(self.crm[side].add_account(f"{side} {n}", collection_id))
        handbook = xai.create_collection("Handbuch (von Hand)")
        self.foreign = [
            xai.add_foreign_file_to_collection(handbook, "crm-backup-20240101-Protokoll.pdf", pdf_bytes("hand 1")),
            xai.add_foreign_file_to_collection(shared[0], "Vollmacht.pdf", pdf_bytes("hand 2")),
            xai.add_file("crm-archiv-deadbeef-Altakte.pdf", pdf_bytes("hand 3")),
        ]
        xai.age_files(7200)

    def teardown(self) -> None:
        self._testing.__exit__(None, None, None)
        self._running.__exit__(None, None, None)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _content(self) -> bytes:
        self.versions += 1
        return pdf_bytes(f"version {self.versions}")

    def _keys(self) -> list[str]:
        return [self.sandbox.espo_key, self.sandbox.xai_key, self.sandbox.mgmt_key, self.crm["other"].api_key]

    # -- CRM edits -------------------------------------------------------------------------------------------

    @rule(side=st.sampled_from(SIDES), accounts=st.sets(st.sampled_from((0, 1))), name=st.one_of(
        st.just("Akte"), HOSTILE_TEXT))
    def add_document(self, side: str, accounts: set[int], name: str) -> None:
        n = len(self.docs[side]) + 1
        self.docs[side].append(self.crm[side].add_document(
            f"{name} {n}", self._content(), f"{name[:40]}-{n}.pdf",
            accounts=[self.accounts[side][a] for a in sorted(accounts)]))

    @precondition(lambda self: self.docs["prod"] or self.docs["other"])
    @rule(data=st.data())
    def replace_file(self, data: st.DataObject) -> None:
        side, doc_id = self._pick(data)
        self.crm[side].replace_file(doc_id, self._content())
        if data.draw(st.booleans(), label="workflow marks it Geändert"):
            self.crm[side].user_update(doc_id, dateiStatus="Geändert")

    @precondition(lambda self: self.docs["prod"] or self.docs["other"])
    @rule(data=st.data())
    def duplicate(self, data: st.DataObject) -> None:
        side, doc_id = self._pick(data)
        self.docs[side].append(self.crm[side].duplicate_document(doc_id))

    @precondition(lambda self: self.docs["prod"] or self.docs["other"])
    @rule(data=st.data(), account=st.sampled_from((0, 1)), linked=st.booleans())
    def link_or_unlink(self, data: st.DataObject, account: int, linked: bool) -> None:
        side, doc_id = self._pick(data)
        (self.crm[side].link if linked else self.crm[side].unlink)(doc_id, "accounts", self.accounts[side][account])

    @precondition(lambda self: self.docs["prod"] or self.docs["other"])
    @rule(data=st.data())
    def hostile_edit(self, data: st.DataObject) -> None:
        """A person (or a copy-paste) puts something into docsync's fields."""
        side, doc_id = self._pick(data)
        files = sorted(self.sandbox.xai.files())
        collections = sorted(self.sandbox.xai.collection_ids())
        field = data.draw(st.sampled_from(["xaiFileId", "xaiCollections", "name", "dateiStatus"]))
        value: Any
        if field == "xaiFileId":
            value = data.draw(st.one_of(st.sampled_from(files), HOSTILE_TEXT) if files else HOSTILE_TEXT)
        elif field == "xaiCollections":
            value = [data.draw(st.one_of(st.sampled_from(collections), HOSTILE_TEXT,
                                         st.builds(lambda c, f: f"{c}/documents/{f}?x=", st.sampled_from(collections),
                                                   st.sampled_from(files or ["file_x"]))))]
        elif field == "name":
            value = data.draw(HOSTILE_TEXT)
        else:
            value = data.draw(st.sampled_from(["Gesynct", "Neu", "Geändert", "Fehler", ""]))
        self.crm[side].user_update(doc_id, **{field: value})

    @precondition(lambda self: self.docs["prod"] or self.docs["other"])
    @rule(data=st.data())
    def delete_document(self, data: st.DataObject) -> None:
        side, doc_id = self._pick(data)
        self.docs[side].remove(doc_id)
        self.crm[side].delete_document(doc_id)

    @rule()
    def a_server_echoes_the_keys(self) -> None:
        echo = f'{{"error": "refused Bearer {self.sandbox.xai_key} / {self.sandbox.mgmt_key}"}}'
        faults_of(self.sandbox.xai).add(Respond(422, echo), method="POST", path=r"/v1/files", times=1)

    def _pick(self, data: st.DataObject) -> tuple[str, str]:
        side = data.draw(st.sampled_from([s for s in SIDES if self.docs[s]]))
        return side, data.draw(st.sampled_from(self.docs[side]))

    # -- runs and checks ----------------------------------------------------------------------------------------

    @rule(side=st.sampled_from(SIDES))
    def sync(self, side: str) -> None:
        xai = self.sandbox.xai
        before = self._foreign_view(side)
        existing = set(xai.files())
        result = run_engine(self.sandbox, self.state[side], full=True, crm=self.crm[side])
        if isinstance(result.error or (result.summary.fatal if result.summary else None), UnsafePlan):
            result = run_engine(self.sandbox, self.state[side], full=True, force_delete=True, crm=self.crm[side])
        xai.faults.clear()
        assert result.exit_code in (0, 1), result
        self.uploaded[side] |= set(xai.files()) - existing
        after = self._foreign_view(side)
        for file_id, view in before.items():
            assert after.get(file_id) == view, f"{side} touched {file_id} it did not upload: {view} -> " \
                                               f"{after.get(file_id)}"
        self._check_synced(side)
        self._check_no_keys(side, result)

    def _foreign_view(self, side: str) -> dict[str, tuple[bool, dict[str, dict[str, str]]]]:
        """file id → (exists, collection id → fields) for every file this side did not upload."""
        xai = self.sandbox.xai
        files = xai.files()
        view: dict[str, tuple[bool, dict[str, dict[str, str]]]] = {}
        members = {c: xai.collection_documents(c) for c in xai.collection_ids()}
        for file_id in set(files) - self.uploaded[side]:
            held = {c: dict(m[file_id]["fields"]) for c, m in members.items() if file_id in m}
            view[file_id] = (True, held)
        return view

    def _check_synced(self, side: str) -> None:
        xai, crm = self.sandbox.xai, self.crm[side]
        mine = installation_id(self.state[side])
        files = xai.files()
        members = {c: xai.collection_documents(c) for c in xai.collection_ids()}
        seen: dict[str, str] = {}
        for doc in crm.documents():
            if doc.get("dateiStatus") != "Gesynct":
                continue
            required = required_collections(self.sandbox, doc, crm)
            file_id = doc.get("xaiFileId")
            if not required:
                assert not file_id, f"{doc['id']}: in no collection but points at {file_id}"
                continue
            assert file_id in files, f"{doc['id']}: Gesynct, file {file_id!r} missing"
            assert file_id in self.uploaded[side], f"{doc['id']}: Gesynct on a file {side} did not upload"
            assert file_id not in seen, f"{doc['id']} and {seen.get(str(file_id))} share {file_id}"
            seen[str(file_id)] = str(doc["id"])
            assert files[file_id]["sha256"] == doc.get("sha")
            held = {c for c, m in members.items() if file_id in m}
            assert held == required, f"{doc['id']}: in {held}, required {required}"
            for c in held:
                fields = members[c][file_id]["fields"]
                assert (fields.get("crm_document_id"), fields.get("installation_id")) == (doc["id"], mine)

    def _check_no_keys(self, side: str, result: Any) -> None:
        texts = [str(result.error or "")]
        if result.summary is not None:
            texts += [r.detail for r in result.summary.results] + list(result.summary.notes)
            texts.append(str(result.summary.fatal or ""))
        texts += [repr(doc) for s in SIDES for doc in self.crm[s].documents()]
        stored = b"".join(p.read_bytes() for p in self.state[side].rglob("*") if p.is_file())
        for key in self._keys():
            assert all(key not in text for text in texts), f"key in output/fields after {side}'s run"
            assert key.encode() not in stored, "key in a state file"


OwnershipMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=10, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_ownership_machine = OwnershipMachine.TestCase
