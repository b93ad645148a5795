"""``reports/verify.py`` and ``reports/probe.py``: how verify scores a sample (found share, threshold, misses,
what came back instead), the ``--json`` shape, sampling without repeats, a probe's verdict per collection, and
which documents are not probed and why."""

from __future__ import annotations

import random
from pathlib import Path

from docsync_cli.config import load_settings
from docsync_cli.model import CrmDocument
from docsync_cli.reports.findability import CollectionProbe
from docsync_cli.reports.probe import DocumentProbe, probe_document, verdict
from docsync_cli.reports.search import Owner
from docsync_cli.reports.verify import VerifyReport, sample_candidates, verify_json
from docsync_cli.xai.answers import SearchHit


def doc(doc_id: str, **changes: object) -> CrmDocument:
    values: dict[str, object] = {"xai_file_id": f"file_{doc_id}", "xai_collections": ("col_a",)}
    values |= changes
    return CrmDocument(doc_id, f"Doc {doc_id}", "2026-01-02 03:04:05", **values)  # type: ignore[arg-type]


def found(collection_id: str = "col_a", rank: int = 1) -> CollectionProbe:
    return CollectionProbe(collection_id, rank, True)


def hit(file_id: str) -> SearchHit:
    return SearchHit(file_id, "chunk", "text", 0.5, ("col_a",))


def missed(collection_id: str = "col_a", rank: int | None = None, others: tuple[SearchHit, ...] = (),
           error: str = "") -> CollectionProbe:
    return CollectionProbe(collection_id, rank, False, others, error)


def report_of(*probes: DocumentProbe, threshold: float = 90.0) -> VerifyReport:
    report = VerifyReport(top=5, threshold=threshold, wanted=len(probes), candidates=len(probes))
    for probe in probes:
        (report.probes if probe.probed else report.skipped).append(probe)
    return report


# -- scoring ---------------------------------------------------------------------------------------------


def test_a_document_is_found_only_when_every_collection_finds_it() -> None:
    assert DocumentProbe(doc("a"), "phrase", "", [found("col_a"), found("col_b")]).found
    assert not DocumentProbe(doc("a"), "phrase", "", [found("col_a"), missed("col_b")]).found
    not_probed = DocumentProbe(doc("a"), None, "no text to search for")
    assert not not_probed.probed and not not_probed.found


def test_the_share_counts_probed_documents_only() -> None:
    report = report_of(*(DocumentProbe(doc(f"f{i}"), "p", "", [found()]) for i in range(9)),
                       DocumentProbe(doc("m"), "p", "", [missed()]),
                       DocumentProbe(doc("s"), None, "no text to search for"))
    assert len(report.probed) == 10 and [m.doc.id for m in report.misses] == ["m"]
    assert report.share == 0.9
    assert report.passed  # 90 % meets a 90 % threshold
    assert not report_of(*report.probes, threshold=90.1).passed


def test_verify_json_lists_misses_with_what_came_back_and_the_skipped() -> None:
    miss = DocumentProbe(doc("m"), "p", "", [found("col_a"), missed("col_b", rank=7, others=(hit("file_x"),))])
    report = report_of(DocumentProbe(doc("f"), "p", "", [found()]), miss,
                       DocumentProbe(doc("s"), None, "it is in no xAI collection"), threshold=75.0)
    report.instead = {"m": {"col_b": [(hit("file_x"), Owner(True, "d9", "Other", True))]}}
    data = verify_json(report)
    assert {k: data[k] for k in ("top", "threshold_percent", "candidates", "probed", "found", "found_share",
                                 "passed")} == {"top": 5, "threshold_percent": 75.0, "candidates": 3, "probed": 2,
                                                "found": 1, "found_share": 0.5, "passed": False}
    assert data["misses"] == [{"id": "m", "name": "Doc m", "collections": [{
        "collection_id": "col_b", "rank": 7, "error": "",
        "came_back": [{"file_id": "file_x", "document_id": "d9", "managed": True}]}]}]
    assert data["skipped"] == [{"id": "s", "reason": "it is in no xAI collection"}]


# -- sampling ----------------------------------------------------------------------------------------------


def test_sampling_is_a_permutation_when_few_and_never_repeats_when_many() -> None:
    rng = random.Random(3)
    few = list(sample_candidates(8, 2, rng))
    assert sorted(few) == list(range(8))  # 8 <= 4 x 2: every offset, in random order
    assert list(sample_candidates(0, 5, rng)) == []
    many = list(sample_candidates(9, 2, rng))  # 9 > 4 x 2: a draw of 8 distinct offsets
    assert len(many) == 8 and len(set(many)) == 8 and set(many) <= set(range(9))


# -- a probe's verdict -----------------------------------------------------------------------------------


def test_the_verdict_of_one_collection() -> None:
    assert verdict(found(rank=2), 5) == "found (rank 2)"
    assert verdict(missed(rank=8), 5) == "NOT in the top 5 (rank 8)"
    assert verdict(missed(), 5) == "NOT found (the document is not among the results)"
    assert verdict(missed(error="HTTP 500"), 5) == "cannot search: HTTP 500"


def test_a_document_without_an_xai_file_or_collection_is_not_probed(tmp_path: Path) -> None:
    settings = load_settings(None, env={"ESPOCRM_URL": "http://crm.example", "ESPOCRM_API_KEY": "k1",
                                        "XAI_API_KEY": "k2", "XAI_MANAGEMENT_KEY": "k3",
                                        "DOCSYNC_STATE_DIR": str(tmp_path)})
    for lonely in (doc("a", xai_file_id=None), doc("b", xai_collections=())):
        result = probe_document(settings, None, lonely, None, 5)  # type: ignore[arg-type]  # never asked
        assert (result.phrase, result.reason, result.probed) == (None, "it is in no xAI collection", False)
