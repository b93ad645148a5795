"""End to end: `docsync search`, `docsync verify` and the findability probe of `docsync explain`.

The CLI runs as a subprocess against both emulators (one sandbox for the module, the sample firm synced once).
What search returns is decided by the xAI emulator's own text extraction and scoring (xAI contract §10),
not by docsync; expectations come from the corpus files and the emulators' state. Every command's output is
checked for the sandbox keys (see ``Env.run``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docsync_sandbox.seed import Sandbox, corpus_dir
from tests.e2e.cli_env import CliEnv

GUTACHTEN = "Gutachten Bauschaden"  # pdflatex-4-pages.pdf, Müller GmbH only
GUTACHTEN_PHRASE = "Huardest gefburn Kjift"  # words on its first page (the corpus's pdflatex filler text)
BERUFUNG = "Schriftsatz Berufung"  # libreoffice-writer.pdf, Müller GmbH and Schmidt & Partner
FRISTEN = "Aktennotiz Fristen"  # a text file, Müller GmbH and Yilmaz Handel
UNRELATED = "Zebrastreifen Quantenchromodynamik Xylophon"
SEARCH_KEYS = {"version", "query", "scope", "collections", "limit", "unknown_collections", "hits"}
HIT_KEYS = {"rank", "score", "file_id", "collection_ids", "page", "snippet", "managed", "document", "note"}
VERIFY_KEYS = {"version", "top", "threshold_percent", "candidates", "probed", "found", "found_share", "passed",
               "misses", "skipped"}


class Env(CliEnv):
    timeout = 180.0

    def json(self, *args: str, code: int = 0, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
        done = self.run(*args, "--json", extra_env=extra_env)
        assert done.returncode == code, done.stdout + done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def doc(self, name: str) -> dict[str, Any]:
        return self.sandbox.espo.document(self.firm.documents[name])

    def reindex(self, collection_id: str, file_id: str) -> None:
        with httpx.Client(base_url=self.sandbox.xai.management_url, timeout=10,
                          headers={"Authorization": f"Bearer {self.sandbox.mgmt_key}"}) as mgmt:
            assert mgmt.patch(f"/v1/collections/{collection_id}/documents/{file_id}").status_code == 200


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Sandbox() as sandbox:
        firm = sandbox.seed_firm(corpus_dir())
        here = Env(sandbox, firm, tmp_path_factory.mktemp("search") / "state")
        first = here.run("sync", "--no-preview")
        assert first.returncode in (0, 1), first.stderr  # 1: the seeded broken documents fail, by design
        yield here


def test_a_synced_document_is_found_by_a_phrase_from_its_own_text_and_not_by_an_unrelated_one(env: Env) -> None:
    doc = env.doc(GUTACHTEN)
    data = env.json("search", GUTACHTEN_PHRASE)
    assert set(data) == SEARCH_KEYS and data["scope"] == "every collection docsync manages"
    assert sorted(data["collections"]) == sorted(env.firm.collections.values())
    top = data["hits"][0]
    assert set(top) == HIT_KEYS
    assert top["document"] == {"id": doc["id"], "name": GUTACHTEN, "current_file": True}
    assert top["file_id"] == doc["xaiFileId"] and top["managed"] is True and top["note"] == ""
    assert top["collection_ids"] == [env.firm.collections["Müller GmbH"]]
    assert 1 <= top["page"] <= 4 and "Huardest" in top["snippet"]  # a PDF: pages counted from 1
    assert env.json("search", UNRELATED)["hits"] == []

    text = env.run("search", GUTACHTEN_PHRASE, "--account", env.firm.accounts["Müller GmbH"], "--limit", "1")
    assert text.returncode == 0, text.stderr
    assert f"'{GUTACHTEN}' (document {doc['id']})" in text.stdout and ", page " in text.stdout
    assert GUTACHTEN_PHRASE not in text.stderr  # the query is client data: never logged
    other = env.json("search", GUTACHTEN_PHRASE, "--account", env.firm.accounts["Yilmaz Handel"])
    assert other["hits"] == [] and other["collections"] == [env.firm.collections["Yilmaz Handel"]]


def test_scopes_and_usage_errors(env: Env) -> None:
    fristen = env.doc(FRISTEN)
    by_doc = env.json("search", "Berufungsbegründung Stellungnahme", "--id", fristen["id"])
    assert sorted(by_doc["collections"]) == sorted(fristen["xaiCollections"])
    assert by_doc["hits"][0]["document"]["id"] == fristen["id"]
    assert sorted(by_doc["hits"][0]["collection_ids"]) == sorted(fristen["xaiCollections"])
    both = env.run("search", "x", "--account", "a", "--collection", "c")
    assert both.returncode == 2 and "choose one of" in both.stderr
    traversal = env.run("search", "x", "--account", "../Document")
    assert traversal.returncode == 2 and "is not an id" in traversal.stderr
    stale = "collection_00000000-0000-0000-0000-000000000000"
    unknown = env.run("search", "x", "--collection", stale)
    assert unknown.returncode == 2 and "does not know" in unknown.stderr
    # an Account naming a deleted collection does not hide the hits of the others
    extra = env.sandbox.espo.add_account("Altmandant", stale)
    try:
        data = env.json("search", "Berufungsbegründung Stellungnahme")
        assert data["unknown_collections"] == [stale] and stale in data["collections"]
        assert data["hits"][0]["document"]["id"] == fristen["id"]
    finally:
        env.sandbox.espo.set_account_collection(extra, None)


def test_a_file_docsync_does_not_manage_is_shown_as_such(env: Env) -> None:
    collection = env.firm.collections["Schmidt & Partner"]
    env.sandbox.xai.add_foreign_file_to_collection(collection, "handakte.txt", b"Handakte Vollstreckungsbescheid")
    data = env.json("search", "Vollstreckungsbescheid", "--collection", collection)
    assert [(h["managed"], h["document"], h["note"]) for h in data["hits"]] == [
        (False, None, "not managed by docsync: file 'handakte.txt'")]


def test_a_document_removed_from_a_collection_is_no_longer_found_there(env: Env) -> None:
    doc = env.doc(BERUFUNG)
    mueller, schmidt = env.firm.collections["Müller GmbH"], env.firm.collections["Schmidt & Partner"]
    phrase = "consetetur sadipscing elitr"
    found_in = env.json("search", phrase, "--collection", schmidt)["hits"]
    assert doc["id"] in {h["document"]["id"] for h in found_in if h["document"]}
    env.sandbox.espo.unlink(doc["id"], "accounts", env.firm.accounts["Schmidt & Partner"])
    synced = env.run("sync", "--no-preview", "--id", doc["id"])
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert env.doc(BERUFUNG)["xaiCollections"] == [mueller]
    assert doc["id"] not in {h["document"]["id"] for h in env.json("search", phrase, "--collection", schmidt)["hits"]
                             if h["document"]}
    assert doc["id"] in {h["document"]["id"] for h in env.json("search", phrase, "--collection", mueller)["hits"]
                         if h["document"]}


def test_explain_probes_findability(env: Env) -> None:
    doc = env.doc(GUTACHTEN)
    done = env.run("explain", "--id", doc["id"])
    assert done.returncode == 0, done.stderr
    assert f"{env.firm.collections['Müller GmbH']}: found (rank 1)" in done.stdout
    assert "Huardest" in done.stdout and "Huardest" not in done.stderr  # the phrase is shown, never logged
    image = env.run("explain", "--id", env.firm.documents["Foto Zeuge"])
    assert "not probed: no text to search for" in image.stdout
    skipped = env.run("explain", "--id", doc["id"], "--no-probe")
    assert "Findability" not in skipped.stdout


def test_verify_reports_every_document_found_and_writes_the_gauge(env: Env, tmp_path: Path) -> None:
    metrics = tmp_path / "docsync_verify.prom"
    env.sandbox.espo.clear_journal()
    env.sandbox.xai.clear_journal()
    data = env.json("verify", "--metrics-file", str(metrics))
    assert env.sandbox.espo.writes() == [] and env.sandbox.xai.writes() == []  # verify only reads and searches
    assert env.sandbox.xai.requests("POST", "/v1/documents/search")
    assert set(data) == VERIFY_KEYS
    assert data["probed"] >= 8 and data["found"] == data["probed"] and data["found_share"] == 1.0
    assert data["passed"] is True and data["misses"] == []
    skipped = {s["id"] for s in data["skipped"]}
    assert env.firm.documents["Foto Zeuge"] in skipped and env.firm.documents[GUTACHTEN] not in skipped
    text = metrics.read_text()
    assert "docsync_verify_found_ratio 1.0" in text
    assert f"docsync_verify_probed_documents {float(data['probed'])}" in text
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"
    plain = env.run("verify", "--sample", "3")
    assert plain.returncode == 0 and "3 of 3 probed documents found in the top 5 (100.0 %)" in plain.stdout


def test_verify_names_the_miss_when_one_files_indexing_fails(env: Env) -> None:
    doc = env.doc(GUTACHTEN)
    collection = env.firm.collections["Müller GmbH"]
    env.sandbox.xai.lose_index(collection, doc["xaiFileId"])  # PROCESSED, but search no longer finds it
    strict = {"DOCSYNC_VERIFY__MIN_FOUND_PERCENT": "99"}
    try:
        data = env.json("verify", code=1, extra_env=strict)
        assert data["passed"] is False and data["found"] == data["probed"] - 1
        assert [(m["id"], m["name"], [c["collection_id"] for c in m["collections"]]) for m in data["misses"]] == [
            (doc["id"], GUTACHTEN, [collection])]
        assert data["misses"][0]["collections"][0]["rank"] is None
        text = env.run("verify", extra_env=strict)
        assert text.returncode == 1
        assert f"miss  {doc['id']}  '{GUTACHTEN}'" in text.stdout and "BELOW THRESHOLD" in text.stdout
        explained = env.run("explain", "--id", doc["id"])
        assert f"{collection}: NOT found" in explained.stdout
        lenient = env.run("verify", extra_env={"DOCSYNC_VERIFY__MIN_FOUND_PERCENT": "50"})
        assert lenient.returncode == 0 and f"miss  {doc['id']}" in lenient.stdout
    finally:
        env.reindex(collection, doc["xaiFileId"])
    assert env.json("verify")["misses"] == []


def test_verify_without_record_counts_lists_the_candidates_instead_of_probing_none(env: Env) -> None:
    # "Disable record count" (contract §11.2): every total is -1/-2; verify must not read that as "no candidates"
    counted = env.json("verify")
    env.sandbox.espo.count_disabled = True
    try:
        data = env.json("verify")
    finally:
        env.sandbox.espo.count_disabled = False
    assert counted["candidates"] >= 8
    assert data["candidates"] == counted["candidates"] and data["probed"] == counted["probed"]
    assert data["found"] == data["probed"] and data["passed"] is True
