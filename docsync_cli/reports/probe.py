"""The findability probe shared by ``docsync verify`` and ``docsync explain``: a phrase from a document's own
text (:mod:`..findability`) searched in each of its collections (one billed search call each).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from docsync_cli.config import Settings
from docsync_cli.model import CrmDocument
from docsync_cli.reports.findability import CollectionProbe, TextReader, document_phrase, probe
from docsync_cli.sync.services import Services

if TYPE_CHECKING:
    from docsync_cli.preview import PreviewService


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


def preview_service(settings: Settings) -> PreviewService:
    """A one-worker preview service for reading a document's first text (limits from ``settings.preview``)."""
    from docsync_cli.preview import PreviewService

    limits = settings.preview.limits()
    # LibreOffice (only for office formats without XML text, e.g. .doc) gets docsync's private profile root
    return PreviewService(limits, workers=1, private_root=settings.state_dir / "libreoffice")


def verdict(c: CollectionProbe, top: int) -> str:
    if c.error:
        return f"cannot search: {c.error}"
    if c.found:
        return f"found (rank {c.rank})"
    if c.rank is not None:
        return f"NOT in the top {top} (rank {c.rank})"
    return "NOT found (the document is not among the results)"

