"""``docsync search``, ``docsync verify`` and the findability part of ``docsync explain``.

All three ask xAI's search (``POST /v1/documents/search``, xAI contract §10), which is billed per call, so
none of them runs as part of ``sync``. Hits are shown as CRM documents: a hit's file is mapped back through the
ownership docsync recorded, first the collection document's ``fields`` (``managed_by`` = docsync and
``crm_document_id``), then this host's local state (``xai_file_id`` → document); a file neither claims is shown
as not managed by docsync. ``fields`` are untrusted (anyone with the management key can set them): an id that
does not look like an EspoCRM id is not looked up.

Nothing printed contains a secret (every line goes through ``config.redact``); the query and the probe phrases
are client data and are never logged.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import DocsyncError, NotFoundError, UsageError
from .findability import CollectionProbe, TextReader, document_phrase, probe
from .model import CrmDocument, DateiStatus
from .report_status import STATE_FILE, LinePrinter, get_document, read_local_record, report_services
from .services import Services
from .state import peek_installation_id
from .statedir import state_file_exists
from .xai import MANAGED_BY, SEARCH_MAX_LIMIT, SearchHit

log = logging.getLogger("docsync.search")

SEARCH_JSON_VERSION = 1
COLLECTIONS_PER_CALL = 50  # [I] the contract documents no maximum for source.collection_ids
SNIPPET_CHARS = 160
_CRM_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")  # EspoCRM ids, collection_<uuid>
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")  # incl. bidi overrides


# ---------------------------------------------------------------------------------------------- ownership


@dataclass(frozen=True)
class Owner:
    """Who a hit's file belongs to, as far as docsync can tell."""

    managed: bool
    doc_id: str | None = None
    name: str | None = None
    current: bool = False  # the file is the document's current xaiFileId
    note: str = ""  # e.g. "not managed by docsync", "an older file of the document"


class Resolver:
    """Maps file ids to CRM documents (cached; EspoCRM is asked once per document)."""

    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self._docs: dict[str, CrmDocument | None] = {}
        self._local: dict[str, str] | None = None
        self._foreign: dict[str, str] = {}
        self._installation_id: str | None = None

    def document(self, doc_id: str) -> CrmDocument | None:
        if doc_id not in self._docs:
            try:
                self._docs[doc_id] = self.services.espo.get_document(doc_id)
            except NotFoundError:
                self._docs[doc_id] = None
        return self._docs[doc_id]

    def owner(self, hit: SearchHit) -> Owner:
        crm_id = hit.fields.get("crm_document_id", "")
        theirs = hit.fields.get("installation_id", "")
        ours = self._installation()  # "" while unknown (no sync on this host yet): then nobody is "another"
        if hit.fields.get("managed_by") == MANAGED_BY and theirs and ours and theirs != ours:
            # another docsync on the same xAI team: its crm_document_id names a record of another CRM
            return Owner(False, note=f"managed by another docsync installation ({theirs})")
        if hit.fields.get("managed_by") == MANAGED_BY and _CRM_ID.match(crm_id):
            doc_id: str | None = crm_id
        else:
            doc_id = self._local_owner(hit.file_id)
        if doc_id is None:
            return Owner(False, note=f"not managed by docsync{self._foreign_name(hit.file_id)}")
        doc = self.document(doc_id)
        if doc is None:
            return Owner(True, doc_id, note="its EspoCRM document no longer exists (the next `sync --full` "
                                            "removes the file)")
        current = doc.xai_file_id == hit.file_id
        return Owner(True, doc.id, doc.name, current,
                     "" if current else "not the document's current file (an older version?)")

    def _installation(self) -> str:
        if self._installation_id is None:
            self._installation_id = peek_installation_id(self.settings.state_dir,
                                                         self.settings.sync.installation_id) or ""
        return self._installation_id

    def _local_owner(self, file_id: str) -> str | None:
        if self._local is None:
            self._local = local_file_owners(self.settings.state_dir)
        return self._local.get(file_id)

    def _foreign_name(self, file_id: str) -> str:
        if file_id not in self._foreign:
            name = self.services.xai.file_name(file_id)
            self._foreign[file_id] = f": file {name!r}" if name else ""
        return self._foreign[file_id]


def local_file_owners(state_dir: Path) -> dict[str, str]:
    """xAI file id → document id from this host's ``state.sqlite3`` (read-only; empty without one)."""
    rows = _read_state(state_dir, "SELECT xai_file_id, doc_id FROM documents WHERE xai_file_id IS NOT NULL")
    return {str(file_id): str(doc_id) for file_id, doc_id in rows}


def local_collections(state_dir: Path) -> set[str]:
    """Every collection this host's state says docsync put a document into."""
    found: set[str] = set()
    for (raw,) in _read_state(state_dir, "SELECT DISTINCT collections FROM documents"):
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            continue
        if isinstance(value, list):
            found.update(c for c in value if isinstance(c, str) and c)
    return found


def _read_state(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    path = state_dir / STATE_FILE
    if not state_file_exists(path):
        return []
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            return list(db.execute(sql).fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return []


# ---------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Hit:
    rank: int
    hit: SearchHit
    owner: Owner
    snippet: str


@dataclass
class SearchResult:
    query: str
    scope: str  # what was searched, for people: "account X", "document X", "collection X", "managed"
    collections: list[str]
    limit: int
    hits: list[Hit] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # collections of the scope that xAI does not know


def scope_collections(settings: Settings, services: Services, *, account: str | None, collection: str | None,
                      doc_id: str | None) -> tuple[str, list[str]]:
    """(description, collection ids) for the search scope chosen on the command line."""
    chosen = [name for name, value in (("--account", account), ("--collection", collection), ("--id", doc_id))
              if value]
    if len(chosen) > 1:
        raise UsageError(f"choose one of --account, --collection and --id (got {', '.join(chosen)})")
    for name, value in (("--account", account), ("--collection", collection), ("--id", doc_id)):
        if value and not _CRM_ID.match(value):  # ids go into URL paths: letters, digits, "_" and "-" only
            raise UsageError(f"{name} {value!r} is not an id (letters, digits, '_' and '-' only)")
    if collection:
        return f"collection {collection}", [collection]
    if doc_id:
        doc = get_document(services, doc_id)
        local = read_local_record(settings.state_dir, doc.id)
        ids = sorted(set(doc.xai_collections) | set(local.collections if local else ()))
        if not ids:
            raise UsageError(f"document {doc.id} is in no xAI collection (per the CRM and this host's state)")
        return f"document {doc.id}", ids
    if account:
        rules = [rule for rule in settings.collections.links if rule.link == "accounts"]
        if not rules:
            raise UsageError("--account needs a collections.links rule with link = \"accounts\"")
        ids = []
        for rule in rules:
            try:
                value = services.espo.record_value("Account", account, rule.field)
            except NotFoundError:
                raise UsageError(f"EspoCRM has no Account with id {account!r}") from None
            if value:
                ids.append(value)
        if not ids:
            raise UsageError(f"account {account} names no collection ({', '.join(r.field for r in rules)} empty)")
        return f"account {account}", sorted(set(ids))
    ids_set = set(settings.collections.static) | local_collections(settings.state_dir)
    for rule in settings.collections.links:
        if rule.link == "accounts":
            ids_set.update(services.espo.iter_values("Account", rule.field))
    if not ids_set:
        raise UsageError("no collection to search: docsync manages none yet (no static collection, no account "
                         "names one, no local state); pass --collection ID")
    return "every collection docsync manages", sorted(ids_set)


def run_search(settings: Settings, query: str, *, account: str | None = None, collection: str | None = None,
               doc_id: str | None = None, limit: int = 10) -> SearchResult:
    """Search the chosen scope for ``query`` and map every hit back to its CRM document."""
    if not query.strip():
        raise UsageError("the query is empty")
    limit = max(1, min(limit, SEARCH_MAX_LIMIT))
    with report_services(settings) as services:
        services.espo.learn()  # the attribute names that really exist (e.g. cDateiStatus)
        scope, collections = scope_collections(settings, services, account=account, collection=collection,
                                               doc_id=doc_id)
        result = SearchResult(query, scope, collections, limit)
        raw: list[SearchHit] = []
        for start in range(0, len(collections), COLLECTIONS_PER_CALL):
            raw += _search_batch(services, query, collections[start:start + COLLECTIONS_PER_CALL], limit,
                                 result.unknown)
        if result.unknown and len(result.unknown) == len(collections):
            raise UsageError(f"xAI does not know the collection(s) searched: {', '.join(result.unknown)}")
        raw.sort(key=lambda h: -h.score)  # only re-sorts when several calls were needed
        resolver = Resolver(settings, services)
        for rank, hit in enumerate(raw[:limit], start=1):
            result.hits.append(Hit(rank, hit, resolver.owner(hit), snippet(hit.text, query)))
    log.info("search: %d collection(s), %d hit(s)", len(collections), len(result.hits))
    return result


def _search_batch(services: Services, query: str, collections: list[str], limit: int, unknown: list[str]
                  ) -> list[SearchHit]:
    """One search over ``collections``; when xAI does not know one of them (404), each one on its own, so one
    stale collection id (an Account naming a deleted collection) does not hide the others' hits."""
    try:
        return services.xai.search(query, collections, limit)
    except NotFoundError:
        if len(collections) == 1:
            unknown.append(collections[0])
            return []
    hits: list[SearchHit] = []
    for collection_id in collections:
        hits += _search_batch(services, query, [collection_id], limit, unknown)
    return hits


def snippet(text: str, query: str, width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` around the first query word it contains, on one line."""
    flat = " ".join(_CONTROL.sub(" ", text.replace("\x02", "")).split())
    if len(flat) <= width:
        return flat
    lower = flat.casefold()
    positions = [lower.find(w.casefold()) for w in re.findall(r"\w+", query) if len(w) > 1]
    found = [p for p in positions if p >= 0]
    start = max(0, min(found) - width // 4) if found else 0
    start = min(start, len(flat) - width)
    piece = flat[start:start + width]
    return ("…" if start else "") + piece + ("…" if start + width < len(flat) else "")


def search_json(result: SearchResult) -> dict[str, Any]:
    """``docsync search --json``: stable keys (documented in README; new keys may be added, none renamed)."""
    return {
        "version": SEARCH_JSON_VERSION,
        "query": result.query,
        "scope": result.scope,
        "collections": result.collections,
        "limit": result.limit,
        "unknown_collections": result.unknown,
        "hits": [{
            "rank": h.rank,
            "score": h.hit.score,
            "file_id": h.hit.file_id,
            "collection_ids": list(h.hit.collection_ids),
            "page": h.hit.page_number,
            "snippet": h.snippet,
            "managed": h.owner.managed,
            "document": None if h.owner.doc_id is None else {
                "id": h.owner.doc_id, "name": h.owner.name, "current_file": h.owner.current},
            "note": h.owner.note,
        } for h in result.hits],
    }


def render_search(result: SearchResult, console: Any, settings: Settings) -> None:
    out = LinePrinter(console, settings)
    out.line(f"{len(result.hits)} hit(s) in {result.scope} ({len(result.collections)} collection(s))", "bold")
    if result.unknown:
        out.line(f"  xAI does not know {len(result.unknown)} of them (skipped): {', '.join(result.unknown)}", "red")
    for h in result.hits:
        out.line(f"{h.rank:>3}. {describe(h.owner, h.hit.file_id)}")
        where = ", ".join(h.hit.collection_ids) or "?"
        page = f", page {h.hit.page_number}" if h.hit.page_number else ""
        out.line(f"     score {h.hit.score:.3f}{page}, file {h.hit.file_id}, collection {where}")
        if h.owner.note and h.owner.doc_id is not None:
            out.line(f"     note: {h.owner.note}")
        if h.snippet:
            out.line(f"     “{h.snippet}”")


def describe(owner: Owner, file_id: str) -> str:
    if owner.doc_id is None:
        return f"({owner.note})"
    if owner.name is None:
        return f"document {owner.doc_id} (gone from EspoCRM)"
    return f"{owner.name!r} (document {owner.doc_id})"


# ---------------------------------------------------------------------------------------------- probe


@dataclass
class DocumentProbe:
    doc: CrmDocument
    phrase: str | None
    reason: str  # why it was not probed (no phrase, no collection)
    collections: list[CollectionProbe] = field(default_factory=list)

    @property
    def probed(self) -> bool:
        return bool(self.collections)

    @property
    def found(self) -> bool:
        return self.probed and all(c.found for c in self.collections)


def probe_document(settings: Settings, services: Services, doc: CrmDocument, previews: TextReader,
                   top: int) -> DocumentProbe:
    """Pick a phrase from ``doc``'s own text and search each of its collections for it."""
    collections = list(doc.xai_collections)
    if not doc.xai_file_id or not collections:
        return DocumentProbe(doc, None, "it is in no xAI collection")
    phrase = document_phrase(services, doc, previews, settings.xai.max_file_bytes)
    if phrase.phrase is None:
        return DocumentProbe(doc, None, phrase.reason)
    return DocumentProbe(doc, phrase.phrase, "", probe(services.xai, phrase.phrase, doc.xai_file_id, collections,
                                                       top))


def _preview_service(settings: Settings) -> Any:
    from .preview import PreviewLimits, PreviewService

    limits = PreviewLimits(timeout_seconds=settings.preview.timeout_seconds,
                           memory_bytes=settings.preview.memory_mb * 1024 * 1024)
    # LibreOffice (only for office formats without XML text, e.g. .doc) gets docsync's private profile root
    return PreviewService(limits, workers=1, private_root=settings.state_dir / "libreoffice")


def print_probe(result: DocumentProbe, resolver: Resolver, out: Any, top: int) -> None:
    """The findability lines of ``docsync explain`` (``out`` has ``line(text, style=None)``)."""
    out.line(f"Findability (a phrase from its own text, searched in each of its collections; top {top}):")
    if not result.probed:
        out.line(f"  not probed: {result.reason}")
        return
    out.line(f"  phrase: “{result.phrase}”")  # \w+ words joined by spaces: safe inside double quotes
    out.line(f"  repeat: docsync search --id {result.doc.id} \"{result.phrase}\"")
    for c in result.collections:
        out.line(f"  {c.collection_id}: {_verdict(c, top)}", style=None if c.found else "red")
        if not c.found:
            for line in _came_back(c, resolver):
                out.line(f"      {line}")


def _verdict(c: CollectionProbe, top: int) -> str:
    if c.error:
        return f"cannot search: {c.error}"
    if c.found:
        return f"found (rank {c.rank})"
    if c.rank is not None:
        return f"NOT in the top {top} (rank {c.rank})"
    return "NOT found (the document is not among the results)"


def _came_back(c: CollectionProbe, resolver: Resolver) -> list[str]:
    if c.error:
        return []
    if not c.others:
        return ["nothing came back instead"]
    return ["came back instead:"] + [f"{i}. {describe(resolver.owner(h), h.file_id)}  score {h.score:.3f}"
                                     for i, h in enumerate(c.others, start=1)]


def explain_probe(settings: Settings, services: Services, doc: CrmDocument, out: Any) -> None:
    """Run the findability probe for ``docsync explain`` and print it; problems become output lines."""
    top = settings.verify.top
    try:
        with _preview_service(settings) as previews:
            result = probe_document(settings, services, doc, previews, top)
        print_probe(result, Resolver(settings, services), out, top)
    except DocsyncError as exc:  # explain shows problems instead of failing: the rest is still worth seeing
        out.line(f"Findability: cannot probe: {exc}", style="red")


# ---------------------------------------------------------------------------------------------- verify


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
    f = services.espo.attributes
    return [{"type": "equals", "attribute": f["dateiStatus"], "value": DateiStatus.GESYNCT.value},
            {"type": "isNotNull", "attribute": f["xaiFileId"]}]


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
    with report_services(settings) as services, _preview_service(settings) as previews:
        services.espo.learn()  # the attribute names that really exist (e.g. cDateiStatus)
        where = _gesynct_where(settings, services)
        count = services.espo.count(where)
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


def render_verify(report: VerifyReport, console: Any, settings: Settings) -> None:
    out = LinePrinter(console, settings)
    probed = report.probed
    share = report.share
    if share is None:
        out.line(f"docsync verify: nothing to probe ({report.candidates} Gesynct document(s) with an xAI file, "
                 f"none with text to search for)", "bold")
    else:
        out.line(f"docsync verify: {len(probed) - len(report.misses)} of {len(probed)} probed documents found in "
                 f"the top {report.top} ({share * 100:.1f} %); threshold {report.threshold:.1f} %"
                 + ("" if report.passed else " — BELOW THRESHOLD"), "bold" if report.passed else "bold red")
    for miss in report.misses:
        out.line(f"  miss  {miss.doc.id}  {miss.doc.name!r}")
        instead = report.instead.get(miss.doc.id, {})
        for c in miss.collections:
            if c.found:
                continue
            out.line(f"        {c.collection_id}: {_verdict(c, report.top)}")
            others = instead.get(c.collection_id, [])
            if others:
                out.line("          came back instead: " + "; ".join(describe(o, h.file_id) for h, o in others))
    if report.skipped:
        reasons: dict[str, int] = {}
        for skipped in report.skipped:
            reasons[skipped.reason] = reasons.get(skipped.reason, 0) + 1
        out.line(f"  skipped {len(report.skipped)} without a phrase to probe with (--json lists them): "
                 + "; ".join(f"{n} × {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])))
    if report.misses:
        out.line("  `docsync explain --id ID` shows one miss in detail, `docsync search QUERY --id ID` tries other "
                 "words.")


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
