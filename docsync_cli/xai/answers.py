"""The typed answers of the xAI Files and Management APIs (``docs/contracts.md``, xAI §5, §6, §7, §10) and their
lenient parsers: what :class:`.client.XaiClient` returns. No I/O; malformed parts are dropped or defaulted,
never trusted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docsync_cli.model import UNKNOWN


@dataclass(frozen=True)
class XaiFile:
    """A file of the Files API (``GET /v1/files``, the answer of an upload; contract §5), checked for shape."""

    id: str
    name: str
    size: int | None = None  # bytes; None when the answer did not say, -1 when it said something unreadable
    created_at: float | None = None  # Unix time, None when the answer did not say


@dataclass(frozen=True)
class CollectionMember:
    """A file's document in a collection (contract §7): its processing status and its ``fields`` (string →
    string, §9; untrusted: anyone with the management key can set them)."""

    file_id: str  # "" when the answer did not name it
    status: str  # DOCUMENT_STATUS_*; UNKNOWN when the answer had none
    error_message: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class XaiCollection:
    """A collection of the Management API (get §6.3, one entry of the list §6.2): its id, its name
    (``collection_name``; "" when it has none) and the keys of its ``field_definitions`` (§9)."""

    id: str
    name: str = ""
    field_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class SearchHit:
    """One chunk a search returned (``POST /v1/documents/search``, contract §10), already checked for shape.

    ``page_number`` is what the service said (``None`` when it said nothing); ``fields`` are the collection
    document's user fields, untrusted (anyone with the management key can set them)."""

    file_id: str
    chunk_id: str
    text: str
    score: float
    collection_ids: tuple[str, ...]
    fields: dict[str, str] = field(default_factory=dict)
    page_number: int | None = None


def parse_file(answer: dict[str, Any]) -> XaiFile:
    size, created = answer.get("bytes"), answer.get("created_at")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
        size = -1  # said, but unreadable: matches no real size
    return XaiFile(id=str(answer["id"]), name=str(answer.get("filename") or ""), size=size,
                   created_at=created if isinstance(created, int | float) and not isinstance(created, bool) else None)


def parse_member(doc: dict[str, Any], file_id: str = "") -> CollectionMember:
    meta = doc.get("file_metadata")
    listed = meta.get("file_id") if isinstance(meta, dict) else None
    raw_fields = doc.get("fields")
    fields = {str(k): v for k, v in raw_fields.items() if isinstance(v, str)} if isinstance(raw_fields, dict) else {}
    return CollectionMember(file_id=listed if isinstance(listed, str) and listed else file_id,
                            status=str(doc.get("status") or UNKNOWN), error_message=str(doc.get("error_message") or ""),
                            fields=fields)


def parse_collection(answer: dict[str, Any], collection_id: str = "") -> XaiCollection:
    """A collection from its protobuf-JSON shape; ``collection_id`` stands in when the answer names none."""
    listed = answer.get("collection_id")
    definitions = answer.get("field_definitions")
    keys = tuple(d["key"] for d in definitions if isinstance(d, dict) and isinstance(d.get("key"), str)) \
        if isinstance(definitions, list) else ()
    return XaiCollection(id=listed if isinstance(listed, str) and listed else collection_id,
                         name=str(answer.get("collection_name") or answer.get("name") or ""), field_keys=keys)


def parse_collections(answer: Any) -> list[XaiCollection]:
    """The collections of one list page (§6.2) that name their id; an answer without a list has none."""
    found = answer.get("collections") if isinstance(answer, dict) else None
    if not isinstance(found, list):
        return []
    return [parse_collection(c) for c in found if isinstance(c, dict) and isinstance(c.get("collection_id"), str)
            and c["collection_id"]]


def parse_search_hit(match: Any) -> SearchHit | None:
    if not isinstance(match, dict) or not isinstance(match.get("file_id"), str) or not match["file_id"]:
        return None
    score = match.get("score")
    page = match.get("page_number")
    raw_fields = match.get("fields")
    fields = {str(k): v for k, v in raw_fields.items() if isinstance(v, str)} if isinstance(raw_fields, dict) else {}
    collections = match.get("collection_ids")
    return SearchHit(
        file_id=match["file_id"],
        chunk_id=str(match.get("chunk_id") or ""),
        text=match["chunk_content"] if isinstance(match.get("chunk_content"), str) else "",
        score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else 0.0,
        collection_ids=tuple(c for c in collections if isinstance(c, str)) if isinstance(collections, list) else (),
        fields=fields,
        page_number=page if isinstance(page, int) and not isinstance(page, bool) else None,
    )
