"""``docsync adopt``: take over the xAI files the CRM names (``xaiFileId``) for its documents, for firms moving
from an earlier sync system. Until a file is adopted, ``sync`` leaves it alone and adds no second copy of the
same content (``uploads.Uploads.waits_for_adopt``).

A file is adopted only when

* exactly one CRM document names it,
* no installation owns it (another docsync's ``installation_id`` in its collection fields),
* it sits only in collections docsync manages (configured ones, the CRM's ``xaiCollections``, the collections of
  the document's linked records, those of this host's records),
* its bytes, downloaded once, hash to that document's ``xaiSyncedHash``.

Adopting records it in this installation's ownership record and writes docsync's ``fields`` onto its collection
memberships; from then on it is docsync's like any of its own uploads (a changed document's old file is retired).
Every refusal is listed with its reason. ``--dry-run`` checks everything (the download included) and writes
nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from docsync_cli.config import Settings
from docsync_cli.crm.client import EspoClient
from docsync_cli.model import CrmDocument, EngineSettings, RunOptions
from docsync_cli.state import StateStore
from docsync_cli.sync.run import SyncRun
from docsync_cli.sync.services import engine_settings, open_services
from docsync_cli.xai.client import XaiClient, is_service_id

log = logging.getLogger("docsync.adopt")


@dataclass(frozen=True)
class Refusal:
    file_id: str
    doc_ids: tuple[str, ...]
    reason: str


@dataclass
class AdoptReport:
    dry_run: bool
    adopted: list[tuple[str, str]] = field(default_factory=list)  # (file id, document id)
    refused: list[Refusal] = field(default_factory=list)
    already: int = 0  # files the CRM names that are docsync's already


class Adopter:
    def __init__(self, espo: EspoClient, xai: XaiClient, state: StateStore, settings: EngineSettings) -> None:
        self.espo = espo
        self.xai = xai
        self.state = state
        self.settings = settings
        self.installation = state.installation_id

    def run(self, *, dry_run: bool) -> AdoptReport:
        report = AdoptReport(dry_run)
        docs = list(self.espo.iter_documents())
        named: dict[str, list[CrmDocument]] = {}
        for doc in docs:
            if doc.xai_file_id and is_service_id(doc.xai_file_id):
                named.setdefault(doc.xai_file_id, []).append(doc)
        owned = self.state.owned_files()
        candidates = {f: ds for f, ds in named.items() if f not in owned}
        report.already = len(named) - len(candidates)
        if not candidates:
            return report
        managed = set(self.settings.static_collections)
        for doc in docs:
            managed.update(doc.xai_collections)
        for record in self.state.records().values():
            managed.update(record.collections)
        where = self._memberships(set(candidates))
        for file_id, holders in sorted(candidates.items()):
            reason = self._refusal(file_id, holders, where.get(file_id, {}), managed)
            if reason is not None:
                report.refused.append(Refusal(file_id, tuple(sorted(d.id for d in holders)), reason))
                continue
            doc = holders[0]
            if not dry_run:
                self._adopt(file_id, doc, sorted(where.get(file_id, {})))
            report.adopted.append((file_id, doc.id))
        return report

    def _memberships(self, files: set[str]) -> dict[str, dict[str, dict[str, str]]]:
        """file id → collection id → the member's fields, for the candidates, over every collection of the
        team (a file may also sit in a collection docsync does not manage)."""
        where: dict[str, dict[str, dict[str, str]]] = {}
        for collection_id in self.xai.all_collection_ids():
            for member in self.xai.iter_documents(collection_id):
                if member.file_id in files:
                    where.setdefault(member.file_id, {})[collection_id] = dict(member.fields)
        return where

    def _refusal(self, file_id: str, holders: list[CrmDocument], memberships: dict[str, dict[str, str]],
                 managed: set[str]) -> str | None:
        """Why ``file_id`` is not adopted, or None when it may be (the download is the last check)."""
        if len(holders) > 1:
            return f"named by {len(holders)} CRM documents; exactly one may name a file"
        doc = holders[0]
        others = sorted({f["installation_id"] for f in memberships.values()
                         if f.get("installation_id") and f["installation_id"] != self.installation})
        if others:
            return f"owned by another docsync installation ({', '.join(others)})"
        if not doc.xai_synced_hash:
            return "the document has no xaiSyncedHash to compare the file's bytes with"
        mine = managed | self._linked_collections(doc)
        outside = sorted(set(memberships) - mine)
        if outside:
            return f"it also sits in {', '.join(outside)}, which docsync does not manage"
        sha256 = self.xai.file_sha256(file_id)
        if sha256 is None:
            return "no such file in xAI"
        if sha256 != doc.xai_synced_hash:
            return (f"its bytes do not hash to the document's xaiSyncedHash ({sha256[:12]}… ≠ "
                    f"{doc.xai_synced_hash[:12]}…)")
        return None

    def _linked_collections(self, doc: CrmDocument) -> set[str]:
        found: set[str] = set()
        for rule in self.settings.links:
            found.update(v for v in self.espo.related_values(doc.id, rule.link, rule.field) if is_service_id(v))
        return found

    def _adopt(self, file_id: str, doc: CrmDocument, collections: list[str]) -> None:
        """Make ``file_id`` this installation's upload for ``doc``: its memberships carry docsync's fields, and
        the ownership record names it."""
        assert doc.xai_synced_hash is not None
        for collection_id in collections:
            self.xai.ensure_fields(collection_id)
            self.xai.add_document(collection_id, file_id, doc.id, doc.xai_synced_hash, self.installation)
        self.state.own(file_id, doc.id, doc.xai_synced_hash)
        self.state.adopt_settled(doc.id)
        log.info("adopted xAI file %s for %s", file_id, doc.id)


def run_adopt(settings: Settings, *, dry_run: bool, wait: float | None = None) -> AdoptReport:
    """``docsync adopt``: under the run lock, with this host's state, like a ``sync`` run."""
    command = "adopt" + (" --dry-run" if dry_run else "")
    with (SyncRun(settings, RunOptions(dry_run=dry_run), command=command, wait=wait, previews=False) as run,
          open_services(settings) as services):
        assert run.state is not None
        services.espo.learn()
        adopter = Adopter(services.espo, services.xai, run.state, engine_settings(settings, None, run.temp_dir))
        return adopter.run(dry_run=dry_run)
