"""The change feeds of a plain run: what changed in EspoCRM since the last run, at a cost of O(changes).

EspoCRM contract §2.5 and §10.5-10.7. One plain run asks:

* **Documents** where ``modifiedAt >= W - 2 min`` *or* the record says it needs work (``dateiStatus`` Neu,
  Geändert, Fehler or empty; ``xaiSyncStatus`` not synced) — one ``or`` group, keyset-paged by
  (``modifiedAt``, ``id``), ``X-No-Total``. ``W`` (the watermark) is the server's clock (HTTP ``Date``) at the
  start of the last complete run (its first answer, never a later page), so the host's clock never matters; the
  overlap is widened by how far the ``Date`` clock was measured ahead of the ``modifiedAt`` clock
  (``crm/clock.py``). If the server's clock now reads earlier than ``W``, ``W`` is not trusted: a listing pass
  runs now.
* **Linked records** (Accounts) where ``modifiedAt >= W - 2 min`` whose collection id changed → their documents
  (``linkedWith``).
* **Link changes**: ``Relate``/``Unrelate`` Stream notes from ``GlobalStream`` after the stored ``Note.number``
  cursor, when the API user's role has that scope (found out once per run: 403 = no scope). Without it, link
  changes wait for the next listing pass.
* **Deletions**: one count-only request against this host's record count; on a mismatch, id-range counts
  nominate candidates, each confirmed by ``GET Document/{id}`` (``sync/deletions.py``; the listing pass
  compares ids instead, and is the only check when the server does not count).

A **listing pass** (every ``sync.listing_interval_seconds``, the first run, every ``--full``) lists every Document
instead (with ``accountsIds`` when the admin set ``noLoad: false`` on ``Document.accounts``), lists the linked
records that carry a collection, and compares each document's collections with the ones it was synced into.

Every record the feeds return is handed to the planner, which decides from the record and this host's memory
whether it needs work (``plan.why_work``): docsync's own write-backs move ``modifiedAt`` and come back in the
next feed, and the planner finds them in step (it knows what it wrote). The watermark, the note cursor and the
linked records' collections are stored only when the run completed (:meth:`ChangeFeed.commit`): a run that stops
early is asked again from the old watermark.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from docsync_cli.crm import queries
from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.role import stream_gaps
from docsync_cli.errors import AuthError, DocsyncError, HttpError, RunFatal
from docsync_cli.model import CrmDocument, EngineSettings, LocalRecord
from docsync_cli.state import StateStore, StreamFeed
from docsync_cli.sync.deletions import DeletionCheck
from docsync_cli.sync.plan import why_work
from docsync_cli.sync.plan_feeds import (
    clock_set_back,
    edited_since_sync,
    feed_since,
    link_drift,
    listing_due,
    next_watermark,
    stored_skew,
)
from docsync_cli.sync.stream_feed import StreamRead, note_numbers, read_since, stream_filtered
from docsync_cli.xai.client import XaiClient

log = logging.getLogger("docsync.changes")
LINK_ENTITIES = {"accounts": "Account", "contacts": "Contact", "leads": "Lead", "opportunities": "Opportunity"}
STREAM_TYPES = ("Relate", "Unrelate")
STREAM_REASON = "linked records changed (Stream notes)"


@dataclass
class Changes:
    docs: dict[str, CrmDocument] = field(default_factory=dict)  # candidates, by id
    touched: dict[str, str] = field(default_factory=dict)  # document id -> why its links need a check
    gone: list[LocalRecord] = field(default_factory=list)  # local records of documents deleted (404) in EspoCRM
    hidden: dict[str, str] = field(default_factory=dict)  # candidates that exist but are hidden (403): kept
    crm_total: int | None = None
    listing: bool = False  # this run made a listing pass
    notes: list[str] = field(default_factory=list)
    pending: dict[str, str] = field(default_factory=dict)  # meta values stored once the run completed
    pending_linked: dict[str, tuple[dict[str, str | None], bool]] = field(default_factory=dict)
    feeds: dict[str, Any] = field(default_factory=dict)  # what `docsync status` shows
    expected: dict[str, frozenset[str]] = field(default_factory=dict)  # --full: collections from the links
    started: str | None = None  # the server's time at the start of this run: the next watermark
    watermark_before: str | None = None  # the stored watermark this run started from
    skew_used: float | None = None  # the clocks' offset (s) the feeds allowed for, as stored by the last run

    def add(self, doc: CrmDocument, touched: str | None = None) -> None:
        self.docs[doc.id] = doc
        if touched is not None:
            self.touched.setdefault(doc.id, touched)


class ChangeFeed:
    def __init__(self, espo: EspoClient, xai: XaiClient, state: StateStore, settings: EngineSettings,
                 wall: Callable[[], float]) -> None:
        self.espo = espo
        self.xai = xai
        self.state = state
        self.settings = settings
        self.wall = wall
        self._entities: dict[str, str] = {}  # link -> entity, as the metadata says (listing pass)
        self.deletions = DeletionCheck(espo, state)

    # -- one run ---------------------------------------------------------------------------------------

    def gather(self, *, full: bool = False, keep_all: bool = False) -> Changes:
        """Everything that may need work. ``keep_all`` (``--full``) returns every listed document."""
        changes = Changes()
        now = self.wall()
        watermark = self.state.meta("watermark")
        changes.watermark_before = watermark
        changes.skew_used = stored_skew(self.state.meta("clock_skew"))
        set_back = clock_set_back(watermark, self.espo.clock.started_at)
        if set_back:
            note = (f"EspoCRM's clock reads {self.espo.clock.started_at}, before the watermark {watermark}: it was "
                    "set back (or had jumped ahead), so the watermark is not trusted; listing every document now")
            log.warning("%s", note)
            changes.notes.append(note)
        try:
            previous = json.loads(self.state.meta("feeds") or "{}")
        except ValueError:
            previous = {}
        previous = previous if isinstance(previous, dict) else {}
        gaps = [gap.what for gap in stream_gaps(self.espo.api_user, self.linked_entities())]
        sooner = bool(gaps) or previous.get("stream_early_end") is True
        last = self.state.meta("last_listing")
        listing = full or watermark is None or set_back or listing_due(
            float(last) if last else None, now, self.settings.partial_listing_interval_seconds if sooner
            else self.settings.listing_interval_seconds)
        changes.feeds = {**previous, "checked_at": now, "clock_set_back": set_back, "stream_partial": gaps,
                         "listing_sooner": sooner}
        if listing:
            self._resolve_link_entities(changes)
        self._stream(changes, listing)
        if listing:
            self._listing_pass(changes, keep_all)
            changes.pending["last_listing"] = repr(now)
        else:
            assert watermark is not None
            self._document_feed(changes, watermark)
            self._linked_feed(changes, watermark)
        changes.started = self.espo.clock.started_at  # the first answer of the run (App/user, else the feed's)
        if not keep_all:
            self._deletions(changes)
        self.state.set_meta({"feeds": json.dumps(changes.feeds)})
        return changes

    def commit(self, changes: Changes) -> None:
        """The run completed: later runs start from this one's watermark, cursor and linked records, and with the
        offset between EspoCRM's clocks its write-backs measured."""
        for entity, (values, replace) in changes.pending_linked.items():
            self.state.set_linked(entity, values, replace=replace)
        skew = self.espo.clock.skew
        if skew is not None:
            changes.pending["clock_skew"] = repr(skew)
        if changes.started is not None:
            changes.pending["watermark"] = next_watermark(
                changes.started, changes.watermark_before, listing=changes.listing, skew_used=changes.skew_used,
                skew_now=skew)
        if changes.pending:
            self.state.set_meta(changes.pending)

    # -- feeds -----------------------------------------------------------------------------------------

    def _document_feed(self, changes: Changes, watermark: str) -> None:
        where = queries.changed_since_or_needing_work(feed_since(watermark, changes.skew_used),
                                                      self.espo.attributes)
        for record in self.espo.iter_keyset("Document", where, self.espo.list_attributes, by="modifiedAt"):
            changes.add(self.espo.to_document(record))
        local = self.state.records_for(list(changes.docs))
        for doc in list(changes.docs.values()):
            edited = edited_since_sync(doc, local.get(doc.id))
            if edited is not None:
                changes.add(doc, edited)

    def _link_rules(self) -> list[tuple[str, str, str]]:
        """(link, Document's foreign entity, collection field) of the configured link rules. The entity is read
        from the metadata by the listing pass and remembered (a custom link may point anywhere)."""
        rules = []
        for rule in self.settings.links:
            entity = self._entities.get(rule.link) or self.state.meta(f"link_entity:{rule.link}")
            rules.append((rule.link, entity or LINK_ENTITIES.get(rule.link, rule.link[:1].upper() + rule.link[1:]),
                          rule.field))
        return rules

    def _resolve_link_entities(self, changes: Changes) -> None:
        for rule in self.settings.links:
            try:
                entity = self.espo.link_entity(rule.link)
            except RunFatal:
                raise
            except DocsyncError:
                continue
            if entity:
                self._entities[rule.link] = entity
                changes.pending[f"link_entity:{rule.link}"] = entity

    def _linked_feed(self, changes: Changes, watermark: str) -> None:
        since = feed_since(watermark, changes.skew_used)
        for link, entity, attr in self._link_rules():
            known = self.state.linked(entity)
            updates: dict[str, str | None] = {}
            try:
                records = list(self.espo.iter_keyset(
                    entity, queries.changed_since(since), [attr], by="modifiedAt"))
            except RunFatal:
                raise
            except DocsyncError as exc:
                changes.notes.append(f"cannot list {entity} changes ({exc}); the next listing pass checks them")
                continue
            for record in records:
                value = record.get(attr)
                collection = value.strip() if isinstance(value, str) and value.strip() else None
                if collection == known.get(str(record["id"])):
                    continue
                updates[str(record["id"])] = collection
                where = queries.linked_to(link, str(record["id"]))
                for doc in self.espo.iter_keyset("Document", where, self.espo.list_attributes):
                    changes.add(self.espo.to_document(doc), f"a linked {entity}'s collection changed")
            if updates:
                changes.pending_linked[entity] = (updates, False)

    def _stream(self, changes: Changes, listing: bool) -> None:
        cursor_text = self.state.meta("note_cursor")
        stored = int(cursor_text) if cursor_text else None
        parents = self.linked_entities()
        user = self.espo.api_user
        if user is not None and "GlobalStream" in user.disabled_scopes:
            changes.feeds["stream"] = StreamFeed.NO_ACCESS  # the role says so (App/user): no request to be refused
            return
        filtered = stream_filtered(user, parents)
        try:
            if listing or stored is None:  # a new cursor: the listing pass covers what came before
                newest, _ = self.espo.stream_page(None, STREAM_TYPES, parents)
                read = StreamRead(cursor=max(note_numbers(newest), default=stored or 0))
            else:
                read = read_since(self.espo, stored, STREAM_TYPES, parents, filtered=filtered)
        except AuthError as exc:
            if exc.status != 403:
                raise
            changes.feeds["stream"] = StreamFeed.NO_ACCESS  # the role lacks the GlobalStream scope
            return
        except RunFatal:
            raise
        except HttpError as exc:
            changes.feeds["stream"] = (StreamFeed.NO_ACCESS if exc.status == 403 else
                                       StreamFeed.UNAVAILABLE.because(exc.status))
            return
        except DocsyncError as exc:
            changes.feeds["stream"] = StreamFeed.UNAVAILABLE.because(exc)
            return
        changes.feeds["stream"] = StreamFeed.ACTIVE
        changes.feeds["stream_early_end"] = read.early
        if read.early:
            changes.notes.append("GlobalStream ended early (total -2 after its 50 rounds of filtering): the notes "
                                 "not read are asked again next run, and the listing pass comes sooner")
        changes.pending["note_cursor"] = str(read.cursor)
        doc_ids = sorted({n.document_id for n in read.notes if n.document_id is not None})
        for doc in self._documents(doc_ids):
            changes.add(doc, STREAM_REASON)

    def linked_entities(self) -> list[str]:
        """The entity types the configured link rules lead to (e.g. ``["Account"]``), without a request."""
        return sorted({entity for _, entity, _ in self._link_rules()})

    def _documents(self, doc_ids: list[str]) -> Iterable[CrmDocument]:
        for start in range(0, len(doc_ids), queries.IDS_PER_QUERY):
            where = queries.with_ids(doc_ids[start:start + queries.IDS_PER_QUERY])
            for record in self.espo.iter_keyset("Document", where, self.espo.list_attributes):
                yield self.espo.to_document(record)

    # -- listing pass ----------------------------------------------------------------------------------

    def _override_active(self) -> bool:
        try:
            return self.espo.accounts_override()
        except RunFatal:
            raise
        except DocsyncError:
            return False

    def _listing_pass(self, changes: Changes, keep_all: bool) -> None:
        changes.listing = True
        override = any(link == "accounts" for link, _, _ in self._link_rules()) and self._override_active()
        changes.feeds["accounts_override"] = override
        select = self.espo.list_attributes + (["accountsIds"] if override else [])
        maps: dict[str, dict[str, str]] = {}
        via_links: dict[str, set[str]] = {}  # document id -> collections, for rules not carried by the listing
        links_known = True
        for link, entity, attr in self._link_rules():
            try:
                values = {str(r["id"]): str(r[attr]).strip() for r in self.espo.iter_keyset(
                    entity, queries.has_value(attr), [attr])
                    if isinstance(r.get(attr), str) and r[attr].strip()}
                maps[link] = values
                changes.pending_linked[entity] = (dict(values), True)
                if override and link == "accounts":
                    continue
                for record_id, collection in values.items():
                    where = queries.linked_to(link, record_id)
                    for doc in self.espo.iter_keyset("Document", where, []):
                        via_links.setdefault(str(doc["id"]), set()).add(collection)
            except RunFatal:
                raise
            except DocsyncError as exc:
                links_known = False
                changes.notes.append(f"cannot list {entity} records ({exc}); link changes not checked this pass")
        static = frozenset(self.settings.static_collections)
        page: list[CrmDocument] = []

        def flush() -> None:
            self.state.listed([d.id for d in page])
            local = self.state.records_for([d.id for d in page])
            for doc in page:
                expected = set(static) | via_links.get(doc.id, set())
                if override and doc.accounts is not None:
                    expected |= {maps["accounts"][a] for a in doc.accounts if a in maps["accounts"]}
                drift = link_drift(local.get(doc.id), frozenset(expected)) if links_known else None
                if keep_all and links_known:
                    changes.expected[doc.id] = frozenset(expected)
                if keep_all or drift is not None or why_work(doc, local.get(doc.id), full=False,
                                                             explicit=False) is not None:
                    changes.add(doc, drift)
            page.clear()

        total = 0
        self.state.listing_started()
        for record in self.espo.iter_keyset("Document", [], select):
            page.append(self.espo.to_document(record))
            total += 1
            if len(page) >= 500:
                flush()
        flush()
        changes.crm_total = total

    # -- deletions (sync/deletions.py: candidates → confirm) ------------------------------------------

    def _deletions(self, changes: Changes) -> None:
        """Plain runs: counts nominate; a listing pass: the ids it did not see. Only a 404 confirms."""
        if changes.listing:
            found = self.deletions.after_listing()
        else:
            found = self.deletions.by_counts(list(changes.docs))
            if found.unseen:
                for doc in self._documents(found.unseen):
                    changes.add(doc)
        changes.notes += found.notes
        changes.crm_total = changes.crm_total if changes.crm_total is not None else found.crm_total
        changes.gone = found.gone
        changes.hidden = found.verdicts.hidden
        if found.method is not None:
            changes.feeds["deletions"] = found.method.value

    def owned(self, record: LocalRecord) -> bool:
        """Only a file this installation recorded as its own upload for this document is retired."""
        if not record.xai_file_id:
            return True
        return self.state.owner(record.xai_file_id) == record.doc_id
