"""``changes.ChangeFeed``'s deletion check against the EspoCRM emulator (contract §2.3 counts, §10.5 soft delete):
a count compared with this host's records, then id-range counts to find exactly the gone and the unseen
documents, in O(d · log N) requests rather than a listing of everything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.config import load_settings
from docsync_cli.model import EngineSettings, LocalRecord
from docsync_cli.state import StateStore
from docsync_cli.sync.gather import ChangeFeed
from docsync_cli.sync.services import open_services
from docsync_sandbox.seed import Sandbox


@pytest.fixture
def box() -> Iterator[Sandbox]:
    with Sandbox() as sandbox:
        yield sandbox


def test_bisection_finds_the_gone_and_the_unseen(box: Sandbox, tmp_path: Path) -> None:
    espo = box.espo
    docs = espo.bulk_seed(400, values=lambda n, doc_id: {"dateiStatus": "Gesynct", "xaiSyncStatus": "synced",
                                                          "modifiedAt": "2026-01-01 00:00:00"})
    state = StateStore(tmp_path / "state")
    state.add_many([LocalRecord(doc_id=d, file_id=None, sha256=None, md5=None, xai_file_id=None, collections=(),
                                crm_modified_at="2026-01-01 00:00:00") for d in docs])
    state.set_meta({"watermark": "2026-01-01 01:00:00", "last_listing": "1e12"})
    gone = [docs[7], docs[201], docs[202], docs[399]]
    for doc_id in gone:
        espo.delete_document(doc_id)
    espo.restore_document(docs[202])  # deleted and silently restored: not gone
    settings = load_settings(None, env=box.environment(tmp_path / "state"))
    with open_services(settings) as services:
        services.espo.page_size = 5  # small pages: a listing of everything would take 80 requests
        espo.clear_journal()
        changes = ChangeFeed(services.espo, services.xai, state, EngineSettings(), lambda: 1e12).gather()
    assert sorted(r.doc_id for r in changes.gone) == sorted([docs[7], docs[201], docs[399]])
    document_requests = len(espo.requests("GET", "/api/v1/Document"))
    assert document_requests <= 3 * 8 + 2, document_requests  # ~log2(400/5) counts per gone document
    state.close()


def test_an_unseen_document_is_handed_to_the_planner(box: Sandbox, tmp_path: Path) -> None:
    espo = box.espo
    docs = espo.bulk_seed(50, values=lambda n, doc_id: {"dateiStatus": "Gesynct", "modifiedAt": "2026-01-01 00:00:00"})
    state = StateStore(tmp_path / "state")
    state.add_many([LocalRecord(doc_id=d, file_id=None, sha256=None, md5=None, xai_file_id=None, collections=(),
                                crm_modified_at="2026-01-01 00:00:00") for d in docs[:-1]])
    state.set_meta({"watermark": "2026-01-01 01:00:00", "last_listing": "1e12"})
    settings = load_settings(None, env=box.environment(tmp_path / "state"))
    with open_services(settings) as services:
        changes = ChangeFeed(services.espo, services.xai, state, EngineSettings(), lambda: 1e12).gather()
    assert list(changes.docs) == [docs[-1]] and changes.gone == []
    state.close()
