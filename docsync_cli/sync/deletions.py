"""Deletions: candidates → confirm → retire. Counts, id-range bisection and listings only *nominate* documents
as deleted; a document's files are retired only after ``GET Document/{id}`` answered 404 in this run (EspoCRM
contract §11.2, §11.3).

* **Plain runs, the server counts**: one count against this host's record count (hidden documents left out of
  both); on a mismatch, id-range counts (bisection on the local ids, O(d · log N)) nominate the gone and the
  unseen ids. The server orders and compares ids ignoring case (``utf8mb4_unicode_ci``) and Python does not, so
  the bisection may blame the wrong range: that costs requests (a live candidate is confirmed live), never a
  file. A deletion the bisection misses is found by the next listing pass.
* **The server does not count** ("Disable record count", ``total`` -1/-2): plain runs check no deletions; the
  listing pass compares ids instead (:attr:`DeletionMethod.LISTING`).
* **Listing pass**: every local id the listing did not show (compared ignoring case) is a candidate.

Confirmation: 404 → gone (its files are retired within the caps); 403 ``No 'read' access.`` → hidden from the API
user (a role or team change): its files stay, it is remembered in the state's ``hidden`` table (``docsync
status``, ``explain``, ``check`` name it) and left out of the counts until it is seen again; 200 → live (a
mis-nominated candidate). A candidate that could not be asked (a network error) waits for the next run.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from docsync_cli.crm.client import EspoClient, id_range
from docsync_cli.errors import DocsyncError, RunFatal
from docsync_cli.model import CrmDocument, DeletionMethod, LocalRecord, Presence, RemoteMember, id_key
from docsync_cli.state import StateStore

log = logging.getLogger("docsync.deletions")


@dataclass
class Verdicts:
    """What ``GET Document/{id}`` answered for each candidate."""

    gone: list[str] = field(default_factory=list)
    hidden: dict[str, str] = field(default_factory=dict)  # id -> EspoCRM's reason
    live: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # could not be asked: the next run asks again
    notes: list[str] = field(default_factory=list)


@dataclass
class Found:
    """A plain run's or a listing pass's deletion check."""

    method: DeletionMethod | None = None  # None: not known (the count could not be asked)
    gone: list[LocalRecord] = field(default_factory=list)  # confirmed: 404 in this run
    unseen: list[str] = field(default_factory=list)  # ids the server has and this host does not (plain runs)
    verdicts: Verdicts = field(default_factory=Verdicts)
    notes: list[str] = field(default_factory=list)
    crm_total: int | None = None  # EspoCRM's count of the documents (None: not counted)


def confirm(espo: EspoClient, state: StateStore, candidates: list[str]) -> Verdicts:
    """Ask ``GET Document/{id}`` for each candidate; remember the hidden ones, forget that live ones were."""
    verdicts = Verdicts()
    known_hidden = state.hidden()
    for doc_id in dict.fromkeys(candidates):
        try:
            presence, reason = espo.presence(doc_id)
        except RunFatal:
            raise
        except DocsyncError as exc:
            verdicts.unknown.append(doc_id)
            verdicts.notes.append(f"could not confirm whether {doc_id} was deleted ({exc}); asked again next run")
            continue
        if presence is Presence.GONE:
            verdicts.gone.append(doc_id)
        elif presence is Presence.HIDDEN:
            verdicts.hidden[doc_id] = reason
            if doc_id not in known_hidden:
                state.hide(doc_id, reason)
                log.warning("document %s is hidden from docsync's API user (%s); its files are kept", doc_id,
                            reason)
        else:
            verdicts.live.append(doc_id)
    visible = [d for d in verdicts.live + verdicts.gone if d in known_hidden]
    if visible:
        state.unhide(visible)
    if verdicts.live:
        log.info("%d deletion candidates are live in EspoCRM (not deleted)", len(verdicts.live))
    return verdicts


def confirm_unlisted(espo: EspoClient, state: StateStore, docs: Iterable[CrmDocument],
                     local: Mapping[str, LocalRecord], remote: Iterable[RemoteMember]) -> Verdicts:
    """``--full``: the documents this host or the managed collections know that the listing did not show are
    candidates (compared ignoring case); each is confirmed before a file of it may be retired."""
    listed = {id_key(doc.id) for doc in docs}
    candidates = [i for i in sorted({*local, *(m.crm_document_id for m in remote)}) if id_key(i) not in listed]
    return confirm(espo, state, candidates)


class DeletionCheck:
    """Nominates deletion candidates for one run and confirms them (see the module docstring)."""

    def __init__(self, espo: EspoClient, state: StateStore) -> None:
        self.espo = espo
        self.state = state

    def count_method(self) -> tuple[int | None, DeletionMethod]:
        """The server's Document count and the method it allows (None, LISTING: the server does not count)."""
        total = self.espo.count_between(None, None)
        return total, DeletionMethod.COUNTS if total is not None else DeletionMethod.LISTING

    def after_listing(self) -> Found:
        """A listing pass saw every id (:meth:`StateStore.listed`): the local ids it did not see are candidates."""
        found = Found()
        try:
            _, found.method = self.count_method()
        except RunFatal:
            raise
        except DocsyncError as exc:
            found.notes.append(f"cannot count EspoCRM documents ({exc})")
        self._settle(found, self.state.unlisted())
        return found

    def by_counts(self, seen: list[str]) -> Found:
        """A plain run: a count compared with this host's records (``seen``: the ids the feeds returned)."""
        found = Found()
        if self.state.hidden():
            self.state.unhide(seen)  # listed by a feed: visible again
        known = self.state.records_for(seen)
        unseen_candidates = sorted(i for i in seen if i not in known)
        try:
            crm_total, found.method = self.count_method()
            found.crm_total = crm_total
            if crm_total is None:
                return found  # no counts: the listing pass compares ids
            local_total = self.state.count_between() + len(unseen_candidates)
            if crm_total == local_total:
                return found
            gone: list[str] = []
            unseen: list[str] = []
            self._bisect(None, None, crm_total, local_total, unseen_candidates, gone, unseen)
        except RunFatal:
            raise
        except DocsyncError as exc:
            found.notes.append(f"cannot count EspoCRM documents ({exc}); deletions are checked next run")
            return found
        found.unseen = unseen
        self._settle(found, gone)
        return found

    def _settle(self, found: Found, candidates: list[str]) -> None:
        found.verdicts = confirm(self.espo, self.state, candidates)
        found.notes += found.verdicts.notes
        records = self.state.records_for(found.verdicts.gone)
        found.gone = [records[i] for i in found.verdicts.gone if i in records]
        if found.gone:
            log.info("%d documents are gone from EspoCRM (confirmed: 404)", len(found.gone))

    def _bisect(self, low: str | None, high: str | None, crm_n: int, local_n: int, extra: list[str],
                gone: list[str], unseen: list[str]) -> None:
        """Id-range counts down to one page; the leaf lists the range. The server's range is in its collation,
        the local one in Python's: where they differ, candidates are nominated wrongly (and confirmed)."""
        if crm_n == local_n:
            return  # (a deletion and a creation in the same range cancel out: the next listing pass sees it)
        if crm_n <= self.espo.page_size or local_n <= 1:
            remote = {id_key(str(r["id"])): str(r["id"])
                      for r in self.espo.iter_keyset("Document", id_range(low, high), [])}
            mine = {id_key(i): i for i in [*self.state.ids_between(low, high), *in_range(extra, low, high)]}
            gone += sorted(mine[k] for k in mine.keys() - remote.keys())
            unseen += sorted(remote[k] for k in remote.keys() - mine.keys())
            return
        stored = self.state.count_between(low, high)
        if stored >= 2:
            middle = self.state.ids_between(low, high, offset=stored // 2, limit=1)[0]
        else:
            merged = sorted(set(self.state.ids_between(low, high)) | set(in_range(extra, low, high)))
            middle = merged[len(merged) // 2]
        left_local = self.state.count_between(low, middle) + len(in_range(extra, low, middle))
        left_crm = self.espo.count_between(low, middle)
        if left_crm is None:
            raise _NoCount
        self._bisect(low, middle, left_crm, left_local, extra, gone, unseen)
        self._bisect(middle, high, crm_n - left_crm, local_n - left_local, extra, gone, unseen)


class _NoCount(DocsyncError):
    def __init__(self) -> None:
        super().__init__("EspoCRM stopped counting Documents (total -1/-2)")


def in_range(ids: list[str], low: str | None, high: str | None) -> list[str]:
    """The ids of the sorted ``ids`` with ``low <= id < high`` (None: an open end)."""
    start = bisect.bisect_left(ids, low) if low is not None else 0
    stop = bisect.bisect_left(ids, high) if high is not None else len(ids)
    return ids[start:stop]
