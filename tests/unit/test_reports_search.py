"""``reports/search.py``: how search hits are mapped back to CRM documents (``Resolver``) and which collections a
search scope means (``scope_collections``), with fakes for both services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from docsync_cli.config import load_settings
from docsync_cli.errors import NotFoundError, UsageError
from docsync_cli.model import CrmDocument, LocalRecord
from docsync_cli.reports.search import Resolver, local_collections, local_file_owners
from docsync_cli.state import StateStore
from docsync_cli.xai.answers import SearchHit


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


# -- the search scope ------------------------------------------------------------------------------------


class ScopeEspo(FakeEspo):
    def __init__(self, docs: dict[str, CrmDocument], accounts: dict[str, str]) -> None:
        super().__init__(docs)
        self.accounts = accounts  # account id -> its collection id ("" = none)

    def learn(self) -> None:
        pass

    def record_value(self, entity: str, record_id: str, field: str) -> str:
        assert (entity, field) == ("Account", "xaiCollectionId")
        if record_id not in self.accounts:
            raise NotFoundError("espocrm", "GET", f"Account/{record_id}", 404)
        return self.accounts[record_id]

    def iter_values(self, entity: str, field: str) -> list[str]:
        return [value for value in self.accounts.values() if value]


def scope(tmp_path: Path, docs: dict[str, CrmDocument] | None = None, accounts: dict[str, str] | None = None,
          static: str = "", **chosen: str | None) -> tuple[str, list[str]]:
    from docsync_cli.reports.search import scope_collections

    env = {"ESPOCRM_URL": "http://crm.invalid", "ESPOCRM_API_KEY": "k", "XAI_API_KEY": "k",
           "XAI_MANAGEMENT_KEY": "k", "DOCSYNC_STATE_DIR": str(tmp_path / "state"), "HOME": str(tmp_path)}
    if static:
        env["DOCSYNC_COLLECTIONS__STATIC"] = static
    services = FakeServices({})
    services.espo = ScopeEspo(docs or {}, accounts or {})
    fake: Any = services
    return scope_collections(load_settings(None, env=env), fake, account=chosen.get("account"),
                             collection=chosen.get("collection"), doc_id=chosen.get("doc_id"))


def test_one_scope_at_a_time_and_only_ids(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="choose one of --account, --collection and --id"):
        scope(tmp_path, account="a1", collection="col")
    with pytest.raises(UsageError, match="is not an id"):
        scope(tmp_path, collection="../v1/files")


def test_a_collection_scope_is_taken_as_given(tmp_path: Path) -> None:
    assert scope(tmp_path, collection="col_x") == ("collection col_x", ["col_x"])


def test_a_document_scope_joins_the_crm_and_the_local_state(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.save(LocalRecord("d1", "att", None, None, "file_1", ("col_local", "col_a"), None, None, False, None))
    store.close()
    docs = {"d1": CrmDocument("d1", "Akte", "", xai_collections=("col_a", "col_crm"))}
    assert scope(tmp_path, docs, doc_id="d1") == ("document d1", ["col_a", "col_crm", "col_local"])


def test_an_unknown_document_or_account_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="EspoCRM has no Document with id 'nope'"):
        scope(tmp_path, doc_id="nope")
    with pytest.raises(UsageError, match="EspoCRM has no Account with id 'nope'"):
        scope(tmp_path, account="nope")
    with pytest.raises(UsageError, match="names no collection"):
        scope(tmp_path, accounts={"a1": ""}, account="a1")


def test_the_default_scope_is_every_managed_collection(tmp_path: Path) -> None:
    got = scope(tmp_path, accounts={"a1": "col_1", "a2": "", "a3": "col_3"}, static="col_static")
    assert got == ("every collection docsync manages", ["col_1", "col_3", "col_static"])
    with pytest.raises(UsageError, match="no collection to search"):
        scope(tmp_path)
