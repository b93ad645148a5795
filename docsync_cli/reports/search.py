"""``docsync search``, and how a hit's file is mapped back to its CRM document (also for verify and explain).

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

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docsync_cli.config import Settings
from docsync_cli.errors import NotFoundError, UsageError
from docsync_cli.model import CrmDocument
from docsync_cli.reports.shared import get_document, read_local_record, report_services
from docsync_cli.state import ReadOnlyState, peek_installation_id
from docsync_cli.sync.services import Services
from docsync_cli.xai.answers import SearchHit
from docsync_cli.xai.client import MANAGED_BY, SEARCH_MAX_LIMIT

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
    state = ReadOnlyState(state_dir)
    return state.file_owners() if state.exists() else {}


def local_collections(state_dir: Path) -> set[str]:
    """Every collection this host's state says docsync put a document into."""
    state = ReadOnlyState(state_dir)
    return state.collections() if state.exists() else set()


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


def describe(owner: Owner, file_id: str) -> str:
    if owner.doc_id is None:
        return f"({owner.note})"
    if owner.name is None:
        return f"document {owner.doc_id} (gone from EspoCRM)"
    return f"{owner.name!r} (document {owner.doc_id})"
