"""How search hits are mapped back to CRM documents (``reports.search.Resolver``), with fakes for both services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from docsync_cli.config import load_settings
from docsync_cli.errors import NotFoundError
from docsync_cli.model import CrmDocument, LocalRecord
from docsync_cli.reports.search import Resolver, local_collections, local_file_owners
from docsync_cli.state import StateStore
from docsync_cli.xai import SearchHit


class FakeEspo:
    def __init__(self, docs: dict[str, CrmDocument]) -> None:
        self.docs = docs
        self.asked: list[str] = []

    def get_document(self, doc_id: str) -> CrmDocument:
        self.asked.append(doc_id)
        if doc_id not in self.docs:
            raise NotFoundError("espocrm", "GET", f"Document/{doc_id}", 404)
        return self.docs[doc_id]


class FakeXai:
    def file_name(self, file_id: str) -> str | None:
        return {"file_hand": "handakte.pdf"}.get(file_id)


class FakeServices:
    def __init__(self, docs: dict[str, CrmDocument]) -> None:
        self.espo = FakeEspo(docs)
        self.xai = FakeXai()


def resolver(tmp_path: Path, docs: dict[str, CrmDocument], installation: str | None = None
             ) -> tuple[Resolver, FakeServices]:
    env = {"ESPOCRM_URL": "http://crm.invalid", "ESPOCRM_API_KEY": "k", "XAI_API_KEY": "k",
           "XAI_MANAGEMENT_KEY": "k", "DOCSYNC_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    if installation:
        env["DOCSYNC_SYNC__INSTALLATION_ID"] = installation
    services = FakeServices(docs)
    fake: Any = services
    return Resolver(load_settings(None, env=env), fake), services


def hit(file_id: str, **fields: str) -> SearchHit:
    return SearchHit(file_id, "c", "t", 1.0, ("col",), dict(fields))


def test_owners_from_the_recorded_fields(tmp_path: Path) -> None:
    docs = {"d1": CrmDocument("d1", "Mietvertrag", "", xai_file_id="file_new")}
    res, services = resolver(tmp_path, docs)
    current = res.owner(hit("file_new", managed_by="docsync", crm_document_id="d1"))
    assert (current.managed, current.doc_id, current.name, current.current, current.note) == (
        True, "d1", "Mietvertrag", True, "")
    older = res.owner(hit("file_old", managed_by="docsync", crm_document_id="d1"))
    assert older.current is False and "not the document's current file" in older.note
    gone = res.owner(hit("file_x", managed_by="docsync", crm_document_id="d2"))
    assert (gone.managed, gone.doc_id, gone.name) == (True, "d2", None) and "no longer exists" in gone.note
    assert services.espo.asked == ["d1", "d2"]  # each document is asked for once


def test_fields_are_untrusted_and_foreign_files_are_named(tmp_path: Path) -> None:
    res, services = resolver(tmp_path, {})
    hostile = res.owner(hit("file_hand", managed_by="docsync", crm_document_id="../App/user"))
    assert (hostile.managed, hostile.doc_id, hostile.note) == (False, None, "not managed by docsync: file "
                                                                            "'handakte.pdf'")
    claimed = res.owner(hit("file_y", crm_document_id="d1"))  # no managed_by: not docsync's
    assert claimed.managed is False and claimed.note == "not managed by docsync"
    assert services.espo.asked == []


def test_the_local_state_owns_a_file_whose_fields_were_lost(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(LocalRecord("d7", "att", "s" * 64, "m" * 32, "file_local", ("col_a", "col_b"), None))
    store.close()
    assert local_file_owners(tmp_path / "state") == {"file_local": "d7"}
    assert local_collections(tmp_path / "state") == {"col_a", "col_b"}
    res, _ = resolver(tmp_path, {"d7": CrmDocument("d7", "Vollmacht", "", xai_file_id="file_local")})
    owner = res.owner(hit("file_local"))
    assert (owner.managed, owner.doc_id, owner.current) == (True, "d7", True)
    assert local_file_owners(tmp_path / "nothing") == {} and local_collections(tmp_path / "nothing") == set()


def test_another_installations_file_is_not_taken_for_one_of_ours(tmp_path: Path) -> None:
    docs = {"d1": CrmDocument("d1", "Mietvertrag", "", xai_file_id="file_1")}
    res, services = resolver(tmp_path, docs, installation="kanzlei-berlin")
    other = res.owner(hit("file_9", managed_by="docsync", crm_document_id="d1", installation_id="kanzlei-hamburg"))
    assert (other.managed, other.doc_id, other.note) == (
        False, None, "managed by another docsync installation (kanzlei-hamburg)")
    ours = res.owner(hit("file_1", managed_by="docsync", crm_document_id="d1", installation_id="kanzlei-berlin"))
    legacy = res.owner(hit("file_1", managed_by="docsync", crm_document_id="d1"))  # before installation ids
    assert ours.doc_id == legacy.doc_id == "d1" and services.espo.asked == ["d1"]
    unknown, _ = resolver(tmp_path / "fresh", docs)  # no id known on this host yet: nothing is "another"
    seen = unknown.owner(hit("file_1", managed_by="docsync", crm_document_id="d1", installation_id="x1234"))
    assert seen.doc_id == "d1"
