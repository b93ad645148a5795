"""``docsync verify``: probe a random sample of Gesynct documents (is each found by a phrase from its own text?)
and judge the found share against ``verify.min_found_percent``.

Costs one xAI search call per collection probed, so it never runs as part of ``sync``. Nothing printed contains a
secret (every line goes through ``config.redact``); the probe phrases are client data and are never logged.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from docsync_cli.config import Settings
from docsync_cli.crm import queries
from docsync_cli.reports.probe import DocumentProbe, preview_service, probe_document
from docsync_cli.reports.search import SEARCH_JSON_VERSION, Owner, Resolver
from docsync_cli.reports.shared import report_services
from docsync_cli.sync.services import Services
from docsync_cli.xai.answers import SearchHit

log = logging.getLogger("docsync.search")


@dataclass
class VerifyReport:
    top: int
    threshold: float
    wanted: int
    candidates: int  # Gesynct documents with an xAI file
    probes: list[DocumentProbe] = field(default_factory=list)
    skipped: list[DocumentProbe] = field(default_factory=list)
    # document id → collection id → what came back instead of it, with the owners resolved
    instead: dict[str, dict[str, list[tuple[SearchHit, Owner]]]] = field(default_factory=dict)
    duration_seconds: float = 0.0
    finished_unixtime: float = 0.0

    @property
    def probed(self) -> list[DocumentProbe]:
        return [p for p in self.probes if p.probed]

    @property
    def misses(self) -> list[DocumentProbe]:
        return [p for p in self.probed if not p.found]

    @property
    def share(self) -> float | None:
        """Found / probed (0..1), None when nothing could be probed."""
        probed = self.probed
        return (len(probed) - len(self.misses)) / len(probed) if probed else None

    @property
    def passed(self) -> bool:
        share = self.share
        return share is None or share * 100 >= self.threshold


def _gesynct_where(settings: Settings, services: Services) -> list[dict[str, Any]]:
    return queries.synced_with_file(services.espo.attributes)


def sample_candidates(count: int, want: int, rng: random.Random) -> Iterable[int]:
    """Offsets to try, in random order: every one when there are few, else a random draw of 4 x ``want``."""
    if count <= want * 4:
        offsets = list(range(count))
        rng.shuffle(offsets)
        return offsets
    return rng.sample(range(count), want * 4)


def run_verify(settings: Settings, sample: int | None = None, rng: random.Random | None = None) -> VerifyReport:
    """Probe a random sample of Gesynct documents that have text (see :mod:`.findability`)."""
    started = time.monotonic()
    want = sample or settings.verify.sample
    rng = rng or random.SystemRandom()
    top = settings.verify.top
    with report_services(settings) as services, preview_service(settings) as previews:
        services.espo.learn()  # the attribute names that really exist (e.g. cDateiStatus)
        where = _gesynct_where(settings, services)
        count = services.espo.count(where)
        if count < 0:  # "Disable record count" (-1/-2, contract §11.2): count them by listing their ids instead
            count = sum(1 for _ in services.espo.iter_keyset("Document", where, ["id"]))
        report = VerifyReport(top, settings.verify.min_found_percent, want, count)
        for offset in sample_candidates(count, want, rng):
            if len(report.probed) >= want:
                break
            doc = services.espo.document_at(where, offset)
            if doc is None:
                continue
            result = probe_document(settings, services, doc, previews, top)
            (report.probes if result.probed else report.skipped).append(result)
        resolver = Resolver(settings, services)
        for miss in report.misses:
            report.instead[miss.doc.id] = {c.collection_id: [(h, resolver.owner(h)) for h in c.others]
                                           for c in miss.collections if not c.found}
    report.duration_seconds = time.monotonic() - started
    report.finished_unixtime = time.time()
    log.info("verify: %d probed, %d missed", len(report.probed), len(report.misses))
    return report


def verify_json(report: VerifyReport) -> dict[str, Any]:
    """``docsync verify --json`` (stable keys, documented in README)."""
    return {
        "version": SEARCH_JSON_VERSION,
        "top": report.top,
        "threshold_percent": report.threshold,
        "candidates": report.candidates,
        "probed": len(report.probed),
        "found": len(report.probed) - len(report.misses),
        "found_share": report.share,
        "passed": report.passed,
        "misses": [{
            "id": m.doc.id, "name": m.doc.name,
            "collections": [{
                "collection_id": c.collection_id, "rank": c.rank, "error": c.error,
                "came_back": [{"file_id": h.file_id, "document_id": o.doc_id, "managed": o.managed}
                              for h, o in report.instead.get(m.doc.id, {}).get(c.collection_id, [])],
            } for c in m.collections if not c.found],
        } for m in report.misses],
        "skipped": [{"id": p.doc.id, "reason": p.reason} for p in report.skipped],
    }
