"""Is a synced document findable? A distinctive phrase from its own text, searched in its collections.

* :func:`pick_phrase` (pure): the most distinctive run of words at the start of a text — long, rare-in-the-
  document words, no stop words — or ``None`` when there is too little text to probe with.
* :func:`document_phrase`: downloads the document's file from EspoCRM into a private temp file (removed
  afterwards) and reads its first text in the sandboxed render worker (:meth:`~.preview.PreviewService.text`:
  the first page of a PDF, an office document's XML text or the LibreOffice conversion of its first page, the
  first lines of a text file; nothing for images), then picks the phrase.
* :func:`probe`: one search per collection (``XaiClient.search``; billed, so only on request) and where the
  document's own file ranks among the distinct files that came back.

Nothing here logs the phrase or the text (both are client data).
"""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from docsync_cli.crm.download import FileTooLarge, HashingWriter, private_temp_file
from docsync_cli.errors import DocsyncError, NotFoundError, PreviewError, RunFatal
from docsync_cli.model import CrmDocument
from docsync_cli.sync.services import Services
from docsync_cli.xai.answers import SearchHit
from docsync_cli.xai.client import XaiClient

WINDOW = 8  # words in a probe phrase
MIN_WORDS = 3  # fewer meaningful words than this: no phrase
CHUNKS_PER_RANK = 4  # ask for top * this many chunks, so top distinct files can be ranked
_WORD = re.compile(r"\w+")
_STOP_WORDS = """
aber alle als also am an auch auf aus bei bin bis da das dass dem den der des die dies doch du durch ein eine
einem einen einer eines er es für hat hatte ich ihr im in ist ja kann mit nach nicht noch nur oder sein sich sie
sind so über um und uns von vor war was wie wir wird zu zum zur
a about an and are as at be been but by for from had has have he her his i if in into is it its not of on or
our she so than that the their them then there these they this to was we were which who will with you
"""
_STOP = frozenset(_STOP_WORDS.split())


# ---------------------------------------------------------------------------------------------- phrase


def pick_phrase(text: str, window: int = WINDOW) -> str | None:
    """The run of up to ``window`` consecutive words with the highest distinctiveness, or ``None``.

    A word's weight is its length (capped) divided by how often it recurs in the text; stop words, one- and
    two-letter words and lone digits weigh nothing. PDFium's hyphenation marker is dropped first so the
    words match what a search service indexed."""
    words = _WORD.findall(text.replace("\x02", ""))
    if not words:
        return None
    counts: dict[str, int] = {}
    for word in words:
        counts[word.casefold()] = counts.get(word.casefold(), 0) + 1

    def weight(word: str) -> float:
        folded = word.casefold()
        if folded in _STOP or len(folded) < 3 or (folded.isdigit() and len(folded) < 2):
            return 0.0
        return min(len(folded), 12) / (1.0 + math.log(counts[folded]))

    weights = [weight(w) for w in words]
    if sum(1 for w in weights if w > 0) < MIN_WORDS:
        return None
    size = min(window, len(words))
    best_start, best = 0, -1.0
    current = sum(weights[:size])
    for start in range(len(words) - size + 1):
        if start:
            current += weights[start + size - 1] - weights[start - 1]
        if current > best + 1e-9:
            best_start, best = start, current
    chosen = words[best_start:best_start + size]
    if sum(1 for w in chosen if weight(w) > 0) < MIN_WORDS:
        return None
    return " ".join(chosen)


@dataclass(frozen=True)
class Phrase:
    """A probe phrase, or why there is none (``phrase`` is None, ``reason`` says why)."""

    phrase: str | None
    reason: str = ""


class TextReader(Protocol):
    """What the probe needs of :class:`~.preview.PreviewService` (so this module imports without Pillow)."""

    def text(self, source: Path, filename: str) -> str: ...


def document_phrase(services: Services, doc: CrmDocument, previews: TextReader, max_bytes: int) -> Phrase:
    """Download ``doc``'s file and pick a phrase from its first text (see the module docstring).

    Only run-fatal errors (authentication, an unreachable service) propagate; any other failure is the reason
    there is no phrase."""
    if not doc.file_id:
        return Phrase(None, "no file attached")
    try:
        with downloaded(services, doc, max_bytes) as path:
            text = previews.text(path, doc.file_name or doc.name)
    except PreviewError as exc:
        return Phrase(None, f"cannot read its text: {exc} ({exc.code})")
    except RunFatal:
        raise
    except DocsyncError as exc:  # the download failed after retries: skip this document, not the command
        return Phrase(None, f"cannot download its file: {exc}")
    if not text.strip():
        return Phrase(None, "no text to search for (an image, or a scan without a text layer)")
    phrase = pick_phrase(text)
    return Phrase(phrase, "" if phrase else "too little text for a distinctive phrase")


@contextlib.contextmanager
def downloaded(services: Services, doc: CrmDocument, max_bytes: int) -> Iterator[Path]:
    """``doc``'s attachment in a private temp file, removed afterwards; PreviewError when it cannot be had."""
    if not doc.file_id:
        raise PreviewError(f"document {doc.id} has no file attached", "no_file")
    path, handle = private_temp_file(Path(tempfile.gettempdir()), suffix=Path(doc.file_name or "").suffix[:16])
    try:
        writer = HashingWriter(handle, max_bytes=max_bytes)
        try:
            services.espo.download(doc.file_id, writer)  # type: ignore[arg-type]
        except NotFoundError:
            raise PreviewError(f"the attachment {doc.file_id} does not exist in EspoCRM (404)",
                               "file_missing") from None
        except FileTooLarge as exc:
            raise PreviewError(f"the file is larger than xAI's upload limit of {exc.limit:,} bytes",
                               "too_large") from None
        handle.close()
        yield path
    finally:
        handle.close()
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- probe


@dataclass(frozen=True)
class CollectionProbe:
    """The outcome of searching one collection for the phrase."""

    collection_id: str
    rank: int | None  # 1-based rank of the document's file among the distinct files returned; None: absent
    found: bool  # rank <= top
    others: tuple[SearchHit, ...] = ()  # the best hit of each other file that ranked above or instead of it
    error: str = ""  # the search itself failed (then found is False)


def probe(xai: XaiClient, phrase: str, file_id: str, collection_ids: list[str] | tuple[str, ...],
          top: int) -> list[CollectionProbe]:
    """Search each collection for ``phrase`` and report where ``file_id`` ranks (one search call each).

    A failing search of one collection is reported in its :class:`CollectionProbe` (``error``); a run-fatal
    error (authentication, an unreachable service) propagates: it would fail every collection."""
    results: list[CollectionProbe] = []
    for collection_id in collection_ids:
        try:
            hits = xai.search(phrase, [collection_id], limit=top * CHUNKS_PER_RANK)
        except RunFatal:
            raise
        except DocsyncError as exc:  # e.g. 404: the collection does not exist
            results.append(CollectionProbe(collection_id, None, False, error=str(exc)))
            continue
        ranked = best_per_file(hits)
        files = [hit.file_id for hit in ranked]
        rank = files.index(file_id) + 1 if file_id in files else None
        others = tuple(hit for hit in ranked[:top] if hit.file_id != file_id)
        results.append(CollectionProbe(collection_id, rank, rank is not None and rank <= top, others))
    return results


def best_per_file(hits: list[SearchHit]) -> list[SearchHit]:
    """The first (best) hit of each file, in rank order."""
    seen: set[str] = set()
    out: list[SearchHit] = []
    for hit in hits:
        if hit.file_id not in seen:
            seen.add(hit.file_id)
            out.append(hit)
    return out
