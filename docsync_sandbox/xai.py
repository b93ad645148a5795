"""A local emulator of xAI's Files API (``api.x.ai``) and Management API (``management-api.x.ai``).

It follows the xAI contract in ``docs/contracts.md`` (cited below as §n). Two listeners share one state:

* ``"api"`` — Files API + search, ``Authorization: Bearer <api_key>``; OpenAI-style JSON (Unix-int timestamps,
  ``"object": "file"``, int ``bytes``) (§2, §5, §10).
* ``"management"`` — collections and documents, ``Bearer <management_key>``; protobuf-JSON (RFC 3339 timestamps
  with microseconds and ``Z``, int64 as JSON strings, enums as full proto names) (§2, §6, §7).

Each listener accepts only its own key. Errors use ``{"code": "<gRPC description>", "error": "<message>"}`` on both
hosts (§3), including the rate limiter's 429.

Decisions where ``docs/contracts.md`` and xAI's public documentation are silent or vague, marked [I] (an
emulator decision: a choice, not a fact about xAI; [?→I]: an open question decided this way). The tests cite the
same marks:

* Wrong key on the api host → **400** ``{"code": "Client specified an invalid argument", "error": "Incorrect API
  key provided: xa***yz. You can obtain an API key from https://console.x.ai."}`` (§15); on the management host
  [I] 401 by default, 400 with ``management_bad_key_status=400`` (§15: "expect it to answer either way").
  A missing or malformed ``Authorization`` header → 401 on both. ``denied_permissions`` (e.g.
  ``{"RemoveFileFromCollection"}``) makes the management key lack a permission: 403 for those calls only (§15).
* [I] ``GET /v1/files`` defaults to ``order=asc`` (the proto default) and ``sort_by=created_at``; ``limit``
  defaults to 100 and has no maximum (§4 documents none); ``limit < 1`` → 400.
* [I] Files pagination is a keyset cursor equal to the last item's id (§5.2 example). A token is *always* returned
  (§5.2): the last id on the page, or the request's own token (``""`` if none) on an empty page. A token naming a
  file that has since been deleted still works (the emulator remembers sort keys of deleted ids).
* [I] Management pagination tokens are opaque (base64 of the keyset position) and are *omitted* on the last page
  (§6.2). A page that is exactly full and has nothing after it also omits the token.
* [?→I] ``DELETE /v1/files/{id}`` cascades: the file is removed from every collection that held it (§13.3).
  Expired files (``expires_after``) behave the same way once ``expires_at`` is reached: 404 and dropped from
  every collection (checked lazily on each request).
* [I] ``DELETE`` of an unknown/already-deleted file → 404 (§5.4). Removing a non-member document → 404 (§7.7);
  the underlying file stays in ``/v1/files``. Deleting a collection keeps its files (§6.5).
* [I] ``format=text`` on ``/content`` returns the bytes decoded as UTF-8 with replacement characters
  (``text/plain``); no real text extraction.
* [I] ``content_type`` of a file = the multipart part's ``Content-Type`` unless it is missing or
  ``application/octet-stream``, in which case it is guessed from the filename.
* [I] Collection names need not be unique (§6.1). ``index_configuration``, ``chunk_configuration`` and
  ``metric_space`` are stored as given (snake_case or lowerCamelCase accepted) with xAI-like defaults.
* [I] ``COLLECTIONS_SORT_BY_AGE``/``DOCUMENTS_SORT_BY_AGE`` ascending = oldest first; document AGE is the file's
  ``created_at``; NAME sorts are case-sensitive with creation order as the tie-break.
* [I] ``FIELD_DEFINITION_ADD`` of a *new* key with ``required=true`` → 400; turning an existing key required is
  allowed only if every document already has a value (else 400); turning it ``unique`` only if the values are
  already distinct (else 409). ``FIELD_DEFINITION_DELETE`` of an unknown key is a no-op.
* [I] Add document: undeclared key → 400 "Unknown field …"; required missing → 400; non-string value → 400;
  unique clash with another member → 409 (§7.1). Re-adding a member → 200 ``{}``; ``fields`` are replaced when
  the body has them (and kept otherwise); indexing restarts only when the fields actually changed.
* [I] Processing: PROCESSING until ``processing_delay`` seconds after add/reindex, then PROCESSED (with
  ``last_indexed_at``) or FAILED with ``error_message`` for unparseable content (empty file; ``.pdf`` without
  ``%PDF``; ``.docx/.xlsx/.pptx/.odt`` that is not a zip; a name containing ``test-failed``). Status is computed
  from the clock on read, no background threads. ``force_status`` overrides this until the next add/reindex.
* [I] ``file_metadata.upload_status`` is ``"Complete"``; ``processing_status`` mirrors ``status``
  (processing/complete/failed); ``hash`` is the SHA-256 hex of the content (§13.8).
* [I] ``documents:batchGet`` takes repeated and/or comma-separated ``file_ids``; unknown ids are omitted; more than
  100 ids → 400; none → 400 (§7.5).
* [I] List-document filters: ``name``/``content_type`` are case-insensitive substring matches with ``:``,
  ``status`` and ``fields.<key>`` are exact (``fields.<key>`` on an undeclared key simply matches nothing).
  Filtering on a field the listing does not know → 400.
* [I] ``POST /v1/collections/{cid}/documents`` (direct multipart upload, §7.2) creates the file and adds it,
  answering with the DocumentMetadata.
* [I] Search (§10) is Okapi BM25 keyword scoring over the text "processing" extracted (:mod:`.xai_text`: PDF
  pages via PDFium, office XML, UTF-8 text; images none), split into ~1000-char chunks cut at whitespace, of
  PROCESSED members of the named collections only; the ``filter`` applies exact matches on bare field keys.
  ``page_number`` is 1-based for PDF pages and 0 for formats without pages. A chunk of a file that is in
  several of the named collections is one match listing all of them in ``collection_ids``. Missing ``query``
  or ``source.collection_ids`` → 400; a wrong JSON type → 422; no JSON body / Content-Type → 415 (§3);
  ``limit`` 1..100 (default 10; more → 400); an unknown collection → 404. ``lose_index`` simulates a silent
  indexing failure: the member stays PROCESSED but search no longer finds it until it is reindexed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import mimetypes
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from docsync_sandbox import xai_filter, xai_text
from docsync_sandbox.http import App, EmulatorBase, HttpError, JournalEntry, Request, Response

__all__ = ["GRPC_CODES", "XaiEmulator"]

GRPC_CODES: dict[int, str] = {
    400: "Client specified an invalid argument",
    401: "The request does not have valid authentication credentials",
    403: "The caller does not have permission to execute the specified operation",
    404: "Some requested entity was not found",
    405: "The operation is not implemented or is not supported/enabled in this service",
    409: "Some entity that we attempted to create already exists",
    413: "Client specified an invalid argument",
    415: "Client specified an invalid argument",
    422: "Client specified an invalid argument",
    429: "Too many requests",
    500: "Internal error",
    503: "The service is currently unavailable",
}

PROCESSING = "DOCUMENT_STATUS_PROCESSING"
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
FAILED = "DOCUMENT_STATUS_FAILED"
_STATUSES = {
    "DOCUMENT_STATUS_UNKNOWN", PROCESSING, PROCESSED, FAILED,
    "DOCUMENT_STATUS_CHUNKED", "DOCUMENT_STATUS_EMBEDDING", "DOCUMENT_STATUS_WRITING",
}
_PROCESSING_STATUS = {PROCESSING: "processing", PROCESSED: "complete", FAILED: "failed"}
_METRICS = {"HNSW_METRIC_UNKNOWN", "HNSW_METRIC_COSINE", "HNSW_METRIC_EUCLIDEAN", "HNSW_METRIC_INNER_PRODUCT"}
_ZIP_SUFFIXES = (".docx", ".xlsx", ".pptx", ".odt")
_EXPIRES_MIN, _EXPIRES_MAX = 3600, 2_592_000
_MAX_PAGE = 100
_CHUNK_CHARS = 1000
_SEARCH_DEFAULT_LIMIT = 10  # §10
_SEARCH_MAX_LIMIT = 100  # [I] no maximum is documented; a stricter emulator is the safe side
_RETRIEVAL_TYPES = {"hybrid", "semantic", "keyword"}
_RETRIEVAL_ONEOF = {"hybrid_retrieval", "semantic_retrieval", "keyword_retrieval", "hybridRetrieval",
                    "semanticRetrieval", "keywordRetrieval"}


def rfc3339(ts: float) -> str:
    """Unix seconds → ``2025-09-16T18:36:09.790629Z`` (§2)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(obj: Any) -> Any:
    """Convert lowerCamelCase JSON names to snake_case, recursively (§2: both are accepted)."""
    if isinstance(obj, dict):
        return {_snake(str(k)): _snake_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------------------------------
# State


@dataclass(frozen=True)
class _Chunk:
    index: int
    page_number: int
    text: str
    terms: tuple[str, ...]


@dataclass
class _File:
    id: str
    filename: str
    data: bytes
    content_type: str
    purpose: str
    created_at: float
    expires_at: float | None
    sha256: str
    seq: int
    chunks: list[_Chunk] | None = None  # what "processing" read out of the content (search, §10); lazy

    def wire(self) -> dict[str, Any]:
        """The Files API object (§5.1)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": int(self.created_at),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "filename": self.filename,
            "purpose": self.purpose,
        }


@dataclass
class _FieldDef:
    key: str
    required: bool = False
    unique: bool = False
    inject_into_chunk: bool = False
    description: str = ""

    def wire(self) -> dict[str, Any]:
        return {"key": self.key, "required": self.required, "unique": self.unique,
                "inject_into_chunk": self.inject_into_chunk, "description": self.description}


@dataclass
class _Document:
    file_id: str
    fields: dict[str, str]
    added_at: float
    started: float  # when the current indexing run started (add / reindex)
    forced_status: str | None = None
    forced_error: str = ""
    forced_at: float = 0.0
    previous_indexed_at: float | None = None
    index_lost: bool = False  # processing "succeeded" but search finds nothing (lose_index); reindex heals


@dataclass
class _Collection:
    id: str
    name: str
    description: str
    created_at: float
    seq: int
    index_configuration: dict[str, Any]
    chunk_configuration: dict[str, Any]
    metric_space: str
    field_definitions: list[_FieldDef] = field(default_factory=list)
    documents: dict[str, _Document] = field(default_factory=dict)

    def field_def(self, key: str) -> _FieldDef | None:
        return next((d for d in self.field_definitions if d.key == key), None)


@dataclass
class _Status:
    status: str
    error_message: str
    last_indexed_at: float | None


def _default_chunk_configuration() -> dict[str, Any]:
    return {
        "tokens_configuration": {"max_chunk_size_tokens": 1024, "chunk_overlap_tokens": 200,
                                 "encoding_name": "o200k_base"},
        "strip_whitespace": True,
        "inject_name_into_chunks": False,
    }


def _parse_failure(filename: str, data: bytes) -> str:
    """Why the (pretend) parser cannot index this content, or ``""`` if it can."""
    lower = filename.lower()
    if "test-failed" in lower:
        return f"Failed to process document {filename!r}: simulated failure (test-failed)"
    if not data:
        return f"Failed to parse {filename!r}: the file is empty"
    if lower.endswith(".pdf") and not data.startswith(b"%PDF"):
        return f"Failed to parse {filename!r}: not a valid PDF (missing %PDF header)"
    if lower.endswith(_ZIP_SUFFIXES) and not data.startswith(b"PK\x03\x04"):
        return f"Failed to parse {filename!r}: not a valid Office/ODF document (not a zip archive)"
    return ""


_TERM = re.compile(r"\w+")


def _terms(text: str) -> tuple[str, ...]:
    """Search terms: case-folded word characters, one-character tokens dropped."""
    return tuple(t for t in _TERM.findall(text.casefold()) if len(t) > 1)


def _chunk_pages(pages: list[tuple[int, str]]) -> list[_Chunk]:
    """Split each page's text into chunks of at most ~``_CHUNK_CHARS`` characters, cut at whitespace."""
    chunks: list[_Chunk] = []
    for page_number, raw in pages:
        text = raw.replace("\x02", "")  # PDFium's marker of a hyphenated line break
        start = 0
        while start < len(text):
            end = min(len(text), start + _CHUNK_CHARS)
            if end < len(text):
                half = start + _CHUNK_CHARS // 2
                cut = max(text.rfind(" ", half, end), text.rfind("\n", half, end))
                end = cut if cut > start else end
            piece = text[start:end].strip()
            if piece:
                chunks.append(_Chunk(len(chunks), page_number, piece, _terms(piece)))
            start = end
    return chunks


def _bm25(query: tuple[str, ...], docs: list[tuple[str, ...]], k1: float = 1.2, b: float = 0.75) -> list[float]:
    """Okapi BM25 of each term list in ``docs`` for ``query`` (0.0 when no query term occurs)."""
    if not docs or not query:
        return [0.0] * len(docs)
    wanted = set(query)
    average = sum(len(d) for d in docs) / len(docs) or 1.0
    df = dict.fromkeys(wanted, 0)
    counts: list[dict[str, int]] = []
    for terms in docs:
        tf: dict[str, int] = {}
        for term in terms:
            if term in wanted:
                tf[term] = tf.get(term, 0) + 1
        for term in tf:
            df[term] += 1
        counts.append(tf)
    idf = {t: math.log(1 + (len(docs) - df[t] + 0.5) / (df[t] + 0.5)) for t in wanted}
    scores: list[float] = []
    for terms, tf in zip(docs, counts, strict=True):
        norm = k1 * (1 - b + b * len(terms) / average)
        scores.append(sum(idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm) for t in tf))
    return scores


# ---------------------------------------------------------------------------------------------------
# Multipart


@dataclass
class _Part:
    name: str
    filename: str | None
    content_type: str | None
    data: bytes


_PARAM = re.compile(r';\s*([A-Za-z0-9_\-]+\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))')


def _header_params(value: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for match in _PARAM.finditer(value):
        key = match.group(1).lower()
        raw = match.group(2) if match.group(2) is not None else match.group(3).strip()
        if match.group(2) is not None:
            raw = re.sub(r"\\(.)", r"\1", raw)
        if key.endswith("*"):  # RFC 5987: charset'lang'percent-encoded
            charset, _, rest = raw.partition("'")
            _, _, encoded = rest.partition("'")
            params[key[:-1]] = unquote(encoded, encoding=charset or "utf-8", errors="replace")
        else:
            params.setdefault(key, raw.replace("%22", '"'))
    return params


def parse_multipart(content_type: str | None, body: bytes) -> list[_Part]:
    """A small ``multipart/form-data`` splitter (RFC 7578); raises ValueError when malformed."""
    if not content_type or not content_type.lower().startswith("multipart/form-data"):
        raise ValueError("Content-Type must be multipart/form-data")
    boundary = _header_params(content_type).get("boundary")
    if not boundary:
        raise ValueError("multipart boundary missing")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    if len(chunks) < 2:
        raise ValueError("multipart body has no parts")
    parts: list[_Part] = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            return parts
        chunk = chunk.removeprefix(b"\r\n")
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, data = chunk.partition(b"\n\n")
        if not sep:
            raise ValueError("malformed multipart part")
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", errors="replace").splitlines():
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        disposition = headers.get("content-disposition", "")
        params = _header_params(disposition)
        if "name" not in params:
            raise ValueError("multipart part without a name")
        parts.append(_Part(params["name"], params.get("filename"), headers.get("content-type"), data))
    raise ValueError("multipart body is not terminated")


# ---------------------------------------------------------------------------------------------------
# The emulator


def _sort_key(primary: Any, seq: int) -> list[Any]:
    return [primary, seq]


class XaiEmulator(EmulatorBase):
    """xAI Files + Management API emulator; see the module docstring for the decisions taken."""

    def __init__(
        self,
        *,
        api_key: str = "xai-demo-key",
        management_key: str = "xai-demo-management-key",
        processing_delay: float = 0.0,
        max_file_bytes: int = 50_000_000,
        clock: Callable[[], float] | None = None,
        management_bad_key_status: int = 401,
    ) -> None:
        super().__init__()
        self.management_bad_key_status = management_bad_key_status
        self.denied_permissions: set[str] = set()  # management permissions the key lacks (§15): 403 per call
        self.api_key = api_key
        self.management_key = management_key
        self.processing_delay = processing_delay
        self.max_file_bytes = max_file_bytes
        self.clock: Callable[[], float] = clock or time.time
        self._initial = (api_key, management_key, processing_delay, max_file_bytes, self.clock)
        self._files: dict[str, _File] = {}
        self._file_keys: dict[str, _File] = {}  # every id ever issued (keyset cursors survive deletes)
        self._collections: dict[str, _Collection] = {}
        self._seq = 0
        self.api_app = self.new_app("api")
        self.management_app = self.new_app("management")
        for app in (self.api_app, self.management_app):
            app.throttle_body = self._throttled
        self._register_api_routes()
        self._register_management_routes()

    # ---- plumbing --------------------------------------------------------------------------------

    def error_response(self, status: int, message: str) -> Response:
        code = GRPC_CODES.get(status, "Internal error" if status >= 500 else "Client specified an invalid argument")
        return Response.json({"code": code, "error": message}, status=status)

    def _throttled(self) -> Response:
        return self.error_response(429, "Too many requests")

    def _fail(self, status: int, message: str) -> HttpError:
        return HttpError(self.error_response(status, message))

    @property
    def api_url(self) -> str:
        return self.url("api")

    @property
    def management_url(self) -> str:
        return self.url("management")

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _route(self, app: App, method: str, pattern: str, key: Callable[[], str]) -> Callable[
            [Callable[..., Response]], Callable[..., Response]]:
        """Register a handler behind the listener's own bearer key and the state lock."""

        def register(fn: Callable[..., Response]) -> Callable[..., Response]:
            def guarded(request: Request, **groups: str) -> Response:
                self._check_auth(request, key(), 400 if app is self.api_app else self.management_bad_key_status)
                with self.lock:
                    self._purge_expired()
                    return fn(request, **groups)

            app.route(method, pattern)(guarded)
            return fn

        return register

    def _check_auth(self, request: Request, expected: str, bad_key_status: int = 400) -> None:
        header = request.header("Authorization")
        if not header:
            raise self._fail(401, "Missing Authorization header (expected 'Bearer <key>')")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._fail(401, "Malformed Authorization header (expected 'Bearer <key>')")
        if token.strip() != expected:
            masked = token[:2] + "***" + token[-2:] if len(token) > 4 else "***"
            raise self._fail(bad_key_status, f"Incorrect API key provided: {masked}. You can obtain an API key "
                                             "from https://console.x.ai.")

    def _purge_expired(self) -> None:
        now = self.clock()
        for file in [f for f in self._files.values() if f.expires_at is not None and now >= f.expires_at]:
            self._delete_file(file.id)

    def _delete_file(self, file_id: str) -> None:
        del self._files[file_id]
        for coll in self._collections.values():
            coll.documents.pop(file_id, None)

    def _json_body(self, request: Request, *, allow_empty: bool = False) -> dict[str, Any]:
        if not request.body.strip():
            if allow_empty:
                return {}
            raise self._fail(400, "Request body is empty; expected a JSON object")
        try:
            body = request.json()
        except (UnicodeDecodeError, ValueError) as exc:
            raise self._fail(400, f"Invalid JSON body: {exc}") from None
        if not isinstance(body, dict):
            raise self._fail(400, "Request body must be a JSON object")
        return body

    def _int_arg(self, request: Request, name: str, default: int, *, maximum: int | None = None) -> int:
        raw = request.arg(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise self._fail(400, f"Invalid {name}: {raw!r} is not an integer") from None
        if value < 1:
            raise self._fail(400, f"Invalid {name}: must be at least 1")
        if maximum is not None and value > maximum:
            raise self._fail(400, f"Invalid {name}: must be at most {maximum}")
        return value

    def _enum_arg(self, request: Request, name: str, allowed: Iterable[str], default: str) -> str:
        raw = request.arg(name)
        if raw is None or raw == "":
            return default
        if raw not in set(allowed):
            raise self._fail(400, f"Invalid {name}: {raw!r} (allowed: {', '.join(sorted(allowed))})")
        return raw

    def _filter(self, request: Request, known: Callable[[str], bool], extra: str | None = None
                ) -> xai_filter.Node | None:
        text = request.arg("filter")
        if extra:
            text = f"({text}) AND {extra}" if text and text.strip() else extra
        try:
            node = xai_filter.parse(text)
        except xai_filter.FilterError as exc:
            raise self._fail(400, str(exc)) from None
        unknown = sorted(name for name in xai_filter.field_names(node) if not known(name))
        if unknown:
            raise self._fail(400, f"Invalid filter: unsupported field(s) {', '.join(unknown)}")
        return node

    def _matches(self, node: xai_filter.Node | None, lookup: Callable[[str], xai_filter.FieldValue]) -> bool:
        try:
            return xai_filter.evaluate(node, lookup)
        except xai_filter.FilterError as exc:
            raise self._fail(400, str(exc)) from None

    # ---- processing --------------------------------------------------------------------------------

    def _status(self, doc: _Document) -> _Status:
        if doc.forced_status is not None:
            indexed = doc.forced_at if doc.forced_status == PROCESSED else doc.previous_indexed_at
            return _Status(doc.forced_status, doc.forced_error, indexed)
        ready_at = doc.started + self.processing_delay
        if self.clock() < ready_at:
            return _Status(PROCESSING, "", doc.previous_indexed_at)
        file = self._files[doc.file_id]
        failure = _parse_failure(file.filename, file.data)
        if failure:
            return _Status(FAILED, failure, doc.previous_indexed_at)
        return _Status(PROCESSED, "", ready_at)

    def _restart(self, doc: _Document) -> None:
        doc.previous_indexed_at = self._status(doc).last_indexed_at
        doc.started = self.clock()
        doc.forced_status = None
        doc.forced_error = ""
        doc.index_lost = False

    # ---- wire shapes (management) ------------------------------------------------------------------

    def _collection_wire(self, coll: _Collection) -> dict[str, Any]:
        total = sum(len(self._files[fid].data) for fid in coll.documents)
        return {
            "collection_id": coll.id,
            "collection_name": coll.name,
            "collection_description": coll.description,
            "created_at": rfc3339(coll.created_at),
            "index_configuration": coll.index_configuration,
            "chunk_configuration": coll.chunk_configuration,
            "metric_space": coll.metric_space,
            "field_definitions": [d.wire() for d in coll.field_definitions],
            "documents_count": len(coll.documents),
            "total_file_size": str(total),
        }

    def _document_wire(self, doc: _Document) -> dict[str, Any]:
        file = self._files[doc.file_id]
        state = self._status(doc)
        chunks = max(1, math.ceil(len(file.data) / (_CHUNK_CHARS * 4))) if state.status == PROCESSED else 0
        out: dict[str, Any] = {
            "file_metadata": {
                "file_id": file.id,
                "name": file.filename,
                "size_bytes": str(len(file.data)),
                "content_type": file.content_type,
                "created_at": rfc3339(file.created_at),
                "expires_at": None if file.expires_at is None else rfc3339(file.expires_at),
                "hash": file.sha256,
                "upload_status": "Complete",
                "upload_error_message": "",
                "processing_status": _PROCESSING_STATUS.get(state.status, "pending"),
            },
            "fields": dict(doc.fields),
            "status": state.status,
            "error_message": state.error_message,
            "chunk_count": chunks,
            "chunks_processed_count": str(chunks),
        }
        if state.last_indexed_at is not None:
            out["last_indexed_at"] = rfc3339(state.last_indexed_at)
        return out

    # ---- lookups -----------------------------------------------------------------------------------

    def _get_collection(self, cid: str) -> _Collection:
        coll = self._collections.get(cid)
        if coll is None:
            raise self._fail(404, f"Collection {cid} not found")
        return coll

    def _get_file(self, file_id: str) -> _File:
        file = self._files.get(file_id)
        if file is None:
            raise self._fail(404, f"File {file_id} not found")
        return file

    def _get_member(self, coll: _Collection, file_id: str) -> _Document:
        doc = coll.documents.get(file_id)
        if doc is None:
            raise self._fail(404, f"Document {file_id} not found in collection {coll.id}")
        return doc

    # ---- state changes shared by the wire and the inspection API ----------------------------------

    def _store_file(self, filename: str, data: bytes, content_type: str | None, purpose: str = "",
                    expires_after: int | None = None) -> _File:
        now = self.clock()
        if not content_type or content_type.split(";")[0].strip().lower() == "application/octet-stream":
            content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        file = _File(
            id=f"file_{uuid.uuid4()}",
            filename=filename,
            data=data,
            content_type=content_type,
            purpose=purpose,
            created_at=now,
            expires_at=None if expires_after is None else now + expires_after,
            sha256=hashlib.sha256(data).hexdigest(),
            seq=self._next_seq(),
        )
        self._files[file.id] = file
        self._file_keys[file.id] = file
        return file

    def _field_defs(self, raw: Any) -> list[_FieldDef]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise self._fail(400, "field_definitions must be an array")
        defs: list[_FieldDef] = []
        for item in raw:
            definition = self._field_def(item)
            if any(d.key == definition.key for d in defs):
                raise self._fail(400, f"Duplicate field definition key {definition.key!r}")
            defs.append(definition)
        return defs

    def _field_def(self, item: Any) -> _FieldDef:
        if isinstance(item, _FieldDef):
            return item
        if not isinstance(item, dict):
            raise self._fail(400, "A field definition must be an object")
        key = item.get("key")
        if not isinstance(key, str) or not key.strip():
            raise self._fail(400, "A field definition needs a non-empty string 'key'")
        flags: dict[str, bool] = {}
        for flag in ("required", "unique", "inject_into_chunk"):
            value = item.get(flag, False)
            if value is None:
                value = False
            if not isinstance(value, bool):
                raise self._fail(400, f"Field definition {key!r}: {flag} must be a boolean")
            flags[flag] = value
        description = item.get("description") or ""
        if not isinstance(description, str):
            raise self._fail(400, f"Field definition {key!r}: description must be a string")
        return _FieldDef(key, flags["required"], flags["unique"], flags["inject_into_chunk"], description)

    def _new_collection(self, body: dict[str, Any]) -> _Collection:
        name = body.get("collection_name")
        if not isinstance(name, str) or not name.strip():
            raise self._fail(400, "collection_name is required")
        description = body.get("collection_description") or ""
        if not isinstance(description, str):
            raise self._fail(400, "collection_description must be a string")
        metric = body.get("metric_space") or "HNSW_METRIC_COSINE"
        if metric not in _METRICS:
            raise self._fail(400, f"Invalid metric_space {metric!r}")
        index = body.get("index_configuration") or {"model_name": "grok-embedding-small"}
        chunk = body.get("chunk_configuration") or _default_chunk_configuration()
        if not isinstance(index, dict) or not isinstance(chunk, dict):
            raise self._fail(400, "index_configuration and chunk_configuration must be objects")
        coll = _Collection(
            id=f"collection_{uuid.uuid4()}",
            name=name,
            description=description,
            created_at=self.clock(),
            seq=self._next_seq(),
            index_configuration=index,
            chunk_configuration=chunk,
            metric_space=metric,
            field_definitions=self._field_defs(body.get("field_definitions")),
        )
        self._collections[coll.id] = coll
        return coll

    def _validate_fields(self, coll: _Collection, file_id: str, fields: Any) -> dict[str, str]:
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            raise self._fail(400, "fields must be an object mapping field keys to string values")
        for key, value in fields.items():
            if coll.field_def(key) is None:
                declared = ", ".join(d.key for d in coll.field_definitions) or "none"
                raise self._fail(400, f"Unknown field {key!r}: it is not declared in the collection's "
                                      f"field_definitions (declared: {declared})")
            if not isinstance(value, str):
                raise self._fail(400, f"Invalid value for field {key!r}: field values must be strings")
        for definition in coll.field_definitions:
            if definition.required and not fields.get(definition.key):
                raise self._fail(400, f"Missing required field {definition.key!r}")
        for definition in coll.field_definitions:
            value = fields.get(definition.key)
            if not definition.unique or value is None:
                continue
            for other in coll.documents.values():
                if other.file_id != file_id and other.fields.get(definition.key) == value:
                    raise self._fail(409, f"Duplicate value {value!r} for unique field {definition.key!r} "
                                          f"(already used by document {other.file_id})")
        return dict(fields)

    def _add_document(self, coll: _Collection, file: _File, body: dict[str, Any]) -> None:
        existing = coll.documents.get(file.id)
        if existing is not None and "fields" not in body:
            return
        fields = self._validate_fields(coll, file.id, body.get("fields"))
        if existing is not None:
            if fields != existing.fields:
                existing.fields = fields
                self._restart(existing)
            return
        now = self.clock()
        coll.documents[file.id] = _Document(file_id=file.id, fields=fields, added_at=now, started=now)

    # ---- Files API ---------------------------------------------------------------------------------

    def _register_api_routes(self) -> None:
        app = self.api_app

        def key() -> str:
            return self.api_key

        self._route(app, "POST", r"/v1/files", key)(self._upload)
        self._route(app, "GET", r"/v1/files", key)(self._list_files)
        self._route(app, "GET", r"/v1/files/(?P<file_id>[^/]+)", key)(self._get_file_handler)
        self._route(app, "DELETE", r"/v1/files/(?P<file_id>[^/]+)", key)(self._delete_file_handler)
        self._route(app, "GET", r"/v1/files/(?P<file_id>[^/]+)/content", key)(self._file_content)
        self._route(app, "POST", r"/v1/documents/search", key)(self._search)

    def _upload(self, request: Request) -> Response:
        try:
            parts = parse_multipart(request.header("Content-Type"), request.body)
        except ValueError as exc:
            raise self._fail(400, f"Invalid multipart upload: {exc}") from None
        values = {p.name: p for p in parts}
        file_part = values.get("file")
        if file_part is None or file_part.filename is None:
            raise self._fail(400, "Missing 'file' part (with a filename) in the multipart upload")
        if not file_part.filename:
            raise self._fail(400, "The 'file' part needs a non-empty filename")
        if len(file_part.data) > self.max_file_bytes:
            raise self._fail(400, f"File too large: {len(file_part.data)} bytes exceeds the maximum of "
                                  f"{self.max_file_bytes} bytes")
        purpose = values["purpose"].data.decode("utf-8", errors="replace") if "purpose" in values else ""
        raw_expiry = values.get("expires_after") or values.get("expires_after[seconds]")
        expires_after: int | None = None
        if raw_expiry is not None:
            anchor = values.get("expires_after[anchor]")
            if anchor is not None and anchor.data.strip() != b"created_at":
                raise self._fail(400, "expires_after[anchor] must be 'created_at'")
            try:
                expires_after = int(raw_expiry.data.decode("ascii").strip())
            except (UnicodeDecodeError, ValueError):
                raise self._fail(400, "expires_after must be an integer number of seconds") from None
            if not _EXPIRES_MIN <= expires_after <= _EXPIRES_MAX:
                raise self._fail(400, f"expires_after must be between {_EXPIRES_MIN} and {_EXPIRES_MAX} seconds")
        file = self._store_file(file_part.filename, file_part.data, file_part.content_type, purpose, expires_after)
        return Response.json(file.wire())

    def _file_lookup(self, file: _File) -> Callable[[str], xai_filter.FieldValue]:
        def lookup(name: str) -> xai_filter.FieldValue:
            if name in ("name", "file_name"):
                return "text", file.filename
            if name == "file_id":
                return "exact", file.id
            if name == "size_bytes":
                return "int", len(file.data)
            if name == "content_type":
                return "text", file.content_type
            if name == "created_at":
                return "time", file.created_at
            if name == "expires_at":
                return "time", file.expires_at
            if name == "upload_status":
                return "exact", "Complete"
            return "exact", None  # user_defined_id, public_url, public_url_expires_at: never set here

        return lookup

    _FILE_FILTER_FIELDS = frozenset({"name", "file_name", "file_id", "size_bytes", "content_type", "created_at",
                                     "expires_at", "upload_status", "user_defined_id", "public_url",
                                     "public_url_expires_at"})

    def _list_files(self, request: Request) -> Response:
        limit = self._int_arg(request, "limit", 100)
        order = self._enum_arg(request, "order", ("asc", "desc"), "asc")
        sort_by = self._enum_arg(request, "sort_by", ("created_at", "filename", "size"), "created_at")
        node = self._filter(request, lambda name: name in self._FILE_FILTER_FIELDS)

        def key(file: _File) -> list[Any]:
            primary: Any = {"created_at": file.created_at, "filename": file.filename,
                            "size": len(file.data)}[sort_by]
            return _sort_key(primary, file.seq)

        token = request.arg("pagination_token") or request.arg("after") or ""
        items = sorted(self._files.values(), key=key, reverse=order == "desc")
        if token:
            anchor = self._file_keys.get(token)
            if anchor is None:
                raise self._fail(400, f"Invalid pagination_token {token!r}")
            cursor = key(anchor)
            items = [f for f in items if (key(f) > cursor if order == "asc" else key(f) < cursor)]
        page = [f for f in items if self._matches(node, self._file_lookup(f))][:limit]
        next_token = page[-1].id if page else token
        return Response.json({"data": [f.wire() for f in page], "pagination_token": next_token})

    def _get_file_handler(self, request: Request, file_id: str) -> Response:
        return Response.json(self._get_file(file_id).wire())

    def _delete_file_handler(self, request: Request, file_id: str) -> Response:
        self._get_file(file_id)
        self._delete_file(file_id)
        return Response.json({"id": file_id, "object": "file", "deleted": True})

    def _file_content(self, request: Request, file_id: str) -> Response:
        file = self._get_file(file_id)
        fmt = self._enum_arg(request, "format", ("original", "text", "DOWNLOAD_FORMAT_ORIGINAL",
                                                  "DOWNLOAD_FORMAT_TEXT"), "original")
        if fmt in ("text", "DOWNLOAD_FORMAT_TEXT"):
            text = file.data.decode("utf-8", errors="replace")
            return Response(200, text.encode("utf-8"), {"Content-Type": "text/plain; charset=utf-8"})
        return Response(200, file.data, {"Content-Type": "application/octet-stream"})

    def _search(self, request: Request) -> Response:
        """``POST /v1/documents/search`` (§10): BM25 keyword scoring over the chunks "processing" extracted."""
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json" or not request.body.strip():
            raise self._fail(415, "Expected a JSON body with Content-Type: application/json")
        body = self._json_body(request)
        query, cids, limit, node = self._search_request(body)
        colls = [self._get_collection(cid) for cid in cids]
        # one candidate per chunk of each searchable document: (chunk, file, collections holding it, fields)
        candidates: dict[tuple[str, int], tuple[_Chunk, _File, list[str], dict[str, str]]] = {}
        for coll in colls:
            for doc in coll.documents.values():
                if doc.index_lost or self._status(doc).status != PROCESSED:
                    continue
                fields = doc.fields

                def lookup(name: str, fields: dict[str, str] = fields) -> xai_filter.FieldValue:
                    return "exact", fields.get(name)

                if not self._matches(node, lookup):
                    continue
                file = self._files[doc.file_id]
                for chunk in self._chunks(file):
                    key = (file.id, chunk.index)
                    if key in candidates:
                        if coll.id not in candidates[key][2]:
                            candidates[key][2].append(coll.id)
                    else:
                        candidates[key] = (chunk, file, [coll.id], dict(fields))
        scored = _bm25(_terms(query), [c[0].terms for c in candidates.values()])
        ranked = sorted(((score, entry) for score, entry in zip(scored, candidates.values(), strict=True)
                         if score > 0), key=lambda item: (-item[0], item[1][1].seq, item[1][0].index))
        matches = [{
            "file_id": file.id,
            "chunk_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{file.id}/{chunk.index}")),
            "chunk_content": chunk.text,
            "score": round(score, 6),
            "collection_ids": holders,
            "fields": fields,
            "page_number": chunk.page_number,
        } for score, (chunk, file, holders, fields) in ranked[:limit]]
        return Response.json({"matches": matches})

    def _search_request(self, body: dict[str, Any]) -> tuple[str, list[str], int, xai_filter.Node | None]:
        """Validate a SearchRequest: missing required fields → 400, wrong JSON types → 422 (§3, §10)."""
        query = body.get("query")
        if query is None:
            raise self._fail(400, "query is required")
        if not isinstance(query, str):
            raise self._fail(422, "query must be a string")
        if not query.strip():
            raise self._fail(400, "query must not be empty")
        source = body.get("source")
        if source is None:
            raise self._fail(400, "source.collection_ids is required")
        if not isinstance(source, dict):
            raise self._fail(422, "source must be an object")
        cids = source.get("collection_ids", source.get("collectionIds"))
        if cids is None or cids == []:
            raise self._fail(400, "source.collection_ids is required (at least one collection id)")
        if not isinstance(cids, list) or not all(isinstance(c, str) and c for c in cids):
            raise self._fail(422, "source.collection_ids must be an array of collection id strings")
        limit = body.get("limit")
        if limit is None:
            limit = _SEARCH_DEFAULT_LIMIT
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise self._fail(422, "limit must be an integer")
        if not 1 <= limit <= _SEARCH_MAX_LIMIT:
            raise self._fail(400, f"limit must be between 1 and {_SEARCH_MAX_LIMIT}")
        mode = body.get("retrieval_mode", body.get("retrievalMode"))
        if mode is not None:
            kind = mode.get("type") if isinstance(mode, dict) else None
            oneof = [k for k in mode if k in _RETRIEVAL_ONEOF] if isinstance(mode, dict) else []
            if kind not in _RETRIEVAL_TYPES and not (kind is None and len(oneof) == 1):
                raise self._fail(400, "retrieval_mode must be {\"type\": \"hybrid\"|\"semantic\"|\"keyword\"}")
        for name in ("filter", "instructions"):
            if body.get(name) is not None and not isinstance(body.get(name), str):
                raise self._fail(422, f"{name} must be a string")
        filter_text = body.get("filter")
        try:
            node = xai_filter.parse(filter_text)
        except xai_filter.FilterError as exc:
            raise self._fail(400, str(exc)) from None
        return query, list(dict.fromkeys(cids)), limit, node

    def _chunks(self, file: _File) -> list[_Chunk]:
        """The file's chunks, extracted once (the content of a file never changes)."""
        if file.chunks is None:
            pages = xai_text.extract_pages(file.filename, file.content_type, file.data)
            file.chunks = _chunk_pages(pages)
        return file.chunks

    # ---- Management API ----------------------------------------------------------------------------

    def _register_management_routes(self) -> None:
        app = self.management_app

        def key() -> str:
            return self.management_key

        cid = r"(?P<cid>[^/]+)"
        fid = r"(?P<file_id>[^/]+)"
        def route(method: str, pattern: str, permission: str, handler: Callable[..., Response]) -> None:
            def checked(request: Request, **groups: str) -> Response:
                if permission in self.denied_permissions:  # §15: 403 for that call only
                    raise self._fail(403, f"The management key lacks the permission {permission}")
                return handler(request, **groups)

            self._route(app, method, pattern, key)(checked)

        route("POST", r"/v1/collections", "CreateCollection", self._create_collection)
        route("GET", r"/v1/collections", "ListCollections", self._list_collections)
        route("GET", rf"/v1/collections/{cid}", "GetCollection", self._get_collection_handler)
        route("PUT", rf"/v1/collections/{cid}", "UpdateCollection", self._update_collection)
        route("DELETE", rf"/v1/collections/{cid}", "DeleteCollection", self._delete_collection)
        route("GET", rf"/v1/collections/{cid}/documents:batchGet", "BatchGetDocuments", self._batch_get)
        route("GET", rf"/v1/collections/{cid}/documents", "ListDocuments", self._list_documents)
        route("POST", rf"/v1/collections/{cid}/documents", "UploadDocument", self._upload_document)
        route("POST", rf"/v1/collections/{cid}/documents/{fid}", "AddFileToCollection", self._add_document_handler)
        route("GET", rf"/v1/collections/{cid}/documents/{fid}", "GetDocument", self._get_document)
        route("PATCH", rf"/v1/collections/{cid}/documents/{fid}", "ReindexDocument", self._reindex)
        route("DELETE", rf"/v1/collections/{cid}/documents/{fid}", "RemoveFileFromCollection",
              self._remove_document)

    def _encode_token(self, position: list[Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")

    def _decode_token(self, token: str) -> list[Any]:
        try:
            position = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError):
            raise self._fail(400, f"Invalid pagination_token {token!r}") from None
        if not isinstance(position, list) or len(position) != 2:
            raise self._fail(400, f"Invalid pagination_token {token!r}")
        return position

    def _page(self, request: Request, items: list[Any], key: Callable[[Any], list[Any]], descending: bool
              ) -> tuple[list[Any], str | None]:
        """Keyset pagination for management lists; the token is None on the last page (§6.2)."""
        limit = self._int_arg(request, "limit", _MAX_PAGE, maximum=_MAX_PAGE)
        items = sorted(items, key=key, reverse=descending)
        token = request.arg("pagination_token")
        if token:
            cursor = self._decode_token(token)
            try:
                items = [i for i in items if (key(i) < cursor if descending else key(i) > cursor)]
            except TypeError:
                raise self._fail(400, f"pagination_token {token!r} does not match sort_by") from None
        page = items[:limit]
        return page, (self._encode_token(key(page[-1])) if len(items) > limit else None)

    def _ordering(self, request: Request) -> bool:
        order = self._enum_arg(request, "order", ("ORDERING_UNKNOWN", "ORDERING_ASCENDING", "ORDERING_DESCENDING"),
                               "ORDERING_DESCENDING")
        return order != "ORDERING_ASCENDING"

    def _create_collection(self, request: Request) -> Response:
        coll = self._new_collection(_snake_keys(self._json_body(request)))
        return Response.json(self._collection_wire(coll))

    def _list_collections(self, request: Request) -> Response:
        descending = self._ordering(request)
        sort_by = self._enum_arg(request, "sort_by", ("COLLECTIONS_SORT_BY_NAME", "COLLECTIONS_SORT_BY_AGE"),
                                 "COLLECTIONS_SORT_BY_NAME")
        fields = {"collection_id", "collection_name", "created_at", "documents_count"}
        node = self._filter(request, lambda name: name in fields)

        def lookup_for(coll: _Collection) -> Callable[[str], xai_filter.FieldValue]:
            def lookup(name: str) -> xai_filter.FieldValue:
                if name == "collection_id":
                    return "exact", coll.id
                if name == "collection_name":
                    return "text", coll.name
                if name == "created_at":
                    return "time", coll.created_at
                return "int", len(coll.documents)

            return lookup

        def key(coll: _Collection) -> list[Any]:
            primary = coll.name if sort_by == "COLLECTIONS_SORT_BY_NAME" else coll.created_at
            return _sort_key(primary, coll.seq)

        items = [c for c in self._collections.values() if self._matches(node, lookup_for(c))]
        page, token = self._page(request, items, key, descending)
        out: dict[str, Any] = {"collections": [self._collection_wire(c) for c in page]}
        if token:
            out["pagination_token"] = token
        return Response.json(out)

    def _get_collection_handler(self, request: Request, cid: str) -> Response:
        return Response.json(self._collection_wire(self._get_collection(cid)))

    def _update_collection(self, request: Request, cid: str) -> Response:
        coll = self._get_collection(cid)
        body = _snake_keys(self._json_body(request, allow_empty=True))
        name = body.get("collection_name")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise self._fail(400, "collection_name must be a non-empty string")
        description = body.get("collection_description")
        if description is not None and not isinstance(description, str):
            raise self._fail(400, "collection_description must be a string")
        chunk = body.get("chunk_configuration")
        if chunk is not None and not isinstance(chunk, dict):
            raise self._fail(400, "chunk_configuration must be an object")
        updates = body.get("field_definition_updates") or []
        if not isinstance(updates, list):
            raise self._fail(400, "field_definition_updates must be an array")
        defs = {d.key: d for d in coll.field_definitions}
        deleted: list[str] = []
        for update in updates:
            if not isinstance(update, dict):
                raise self._fail(400, "Each field_definition_update must be an object")
            definition = self._field_def(update.get("field_definition"))
            operation = update.get("operation")
            if operation == "FIELD_DEFINITION_ADD":
                old = defs.get(definition.key)
                if old is None and definition.required:
                    raise self._fail(400, f"Cannot add new field {definition.key!r} with required=true: "
                                          "existing documents would not have it")
                if old is not None and definition.required and not old.required:
                    missing = [d.file_id for d in coll.documents.values() if not d.fields.get(definition.key)]
                    if missing:
                        raise self._fail(400, f"Cannot make field {definition.key!r} required: "
                                              f"{len(missing)} document(s) have no value")
                if definition.unique and not (old is not None and old.unique):
                    values = [d.fields[definition.key] for d in coll.documents.values()
                              if definition.key in d.fields]
                    if len(values) != len(set(values)):
                        raise self._fail(409, f"Cannot make field {definition.key!r} unique: "
                                              "duplicate values exist")
                defs[definition.key] = definition
                if definition.key in deleted:
                    deleted.remove(definition.key)
            elif operation == "FIELD_DEFINITION_DELETE":
                if defs.pop(definition.key, None) is not None:
                    deleted.append(definition.key)
            else:
                raise self._fail(400, f"Invalid field definition operation {operation!r}")
        # everything validated: apply
        if name is not None:
            coll.name = name
        if description is not None:
            coll.description = description
        if chunk is not None:
            coll.chunk_configuration = chunk
        coll.field_definitions = list(defs.values())
        for key in deleted:
            for doc in coll.documents.values():
                doc.fields.pop(key, None)
        return Response.json(self._collection_wire(coll))

    def _delete_collection(self, request: Request, cid: str) -> Response:
        self._get_collection(cid)
        del self._collections[cid]
        return Response.json({})

    def _add_document_handler(self, request: Request, cid: str, file_id: str) -> Response:
        coll = self._get_collection(cid)
        file = self._get_file(file_id)
        self._add_document(coll, file, self._json_body(request, allow_empty=True))
        return Response.json({})

    def _upload_document(self, request: Request, cid: str) -> Response:
        coll = self._get_collection(cid)
        try:
            parts = {p.name: p for p in parse_multipart(request.header("Content-Type"), request.body)}
        except ValueError as exc:
            raise self._fail(400, f"Invalid multipart upload: {exc}") from None
        data_part = parts.get("data")
        if data_part is None:
            raise self._fail(400, "Missing 'data' part")
        name = parts["name"].data.decode("utf-8", errors="replace") if "name" in parts else data_part.filename
        if not name:
            raise self._fail(400, "Missing 'name'")
        if len(data_part.data) > self.max_file_bytes:
            raise self._fail(400, f"File too large: {len(data_part.data)} bytes exceeds the maximum of "
                                  f"{self.max_file_bytes} bytes")
        content_type = (parts["content_type"].data.decode("utf-8", errors="replace") if "content_type" in parts
                        else data_part.content_type)
        fields: Any = {}
        if "fields" in parts and parts["fields"].data.strip():
            try:
                fields = json.loads(parts["fields"].data)
            except ValueError:
                raise self._fail(400, "fields must be a JSON-encoded object") from None
        validated = self._validate_fields(coll, "", fields)
        file = self._store_file(name, data_part.data, content_type)
        self._add_document(coll, file, {"fields": validated})
        return Response.json(self._document_wire(coll.documents[file.id]))

    def _document_lookup(self, coll: _Collection, doc: _Document) -> Callable[[str], xai_filter.FieldValue]:
        file_lookup = self._file_lookup(self._files[doc.file_id])

        def lookup(name: str) -> xai_filter.FieldValue:
            if name.startswith("fields."):
                return "exact", doc.fields.get(name[len("fields."):])
            if name == "status":
                return "exact", self._status(doc).status
            return file_lookup(name)  # file metadata: name, file_id, content_type, size_bytes, created_at

        return lookup

    _DOCUMENT_FILTER_FIELDS = frozenset({"name", "file_name", "file_id", "content_type", "size_bytes",
                                         "created_at", "status"})

    def _list_documents(self, request: Request, cid: str) -> Response:
        coll = self._get_collection(cid)
        descending = self._ordering(request)
        sort_by = self._enum_arg(request, "sort_by", ("DOCUMENTS_SORT_BY_NAME", "DOCUMENTS_SORT_BY_SIZE",
                                                      "DOCUMENTS_SORT_BY_AGE"), "DOCUMENTS_SORT_BY_NAME")
        legacy_name = request.arg("name")
        extra = f"name:{json.dumps(legacy_name)}" if legacy_name else None
        node = self._filter(request, lambda n: n in self._DOCUMENT_FILTER_FIELDS or n.startswith("fields."),
                            extra)

        def key(doc: _Document) -> list[Any]:
            file = self._files[doc.file_id]
            primary: Any = {"DOCUMENTS_SORT_BY_NAME": file.filename, "DOCUMENTS_SORT_BY_SIZE": len(file.data),
                            "DOCUMENTS_SORT_BY_AGE": file.created_at}[sort_by]
            return _sort_key(primary, file.seq)

        items = [d for d in coll.documents.values() if self._matches(node, self._document_lookup(coll, d))]
        page, token = self._page(request, items, key, descending)
        out: dict[str, Any] = {"documents": [self._document_wire(d) for d in page]}
        if token:
            out["pagination_token"] = token
        return Response.json(out)

    def _get_document(self, request: Request, cid: str, file_id: str) -> Response:
        coll = self._get_collection(cid)
        return Response.json(self._document_wire(self._get_member(coll, file_id)))

    def _batch_get(self, request: Request, cid: str) -> Response:
        coll = self._get_collection(cid)
        ids: list[str] = []
        for raw in request.query.get("file_ids", []) + request.query.get("fileIds", []):
            ids.extend(part.strip() for part in raw.split(",") if part.strip())
        if not ids:
            raise self._fail(400, "file_ids is required")
        if len(ids) > _MAX_PAGE:
            raise self._fail(400, f"Too many file_ids: {len(ids)} (at most {_MAX_PAGE})")
        seen: list[str] = []
        for file_id in ids:
            if file_id in coll.documents and file_id not in seen:
                seen.append(file_id)
        return Response.json({"documents": [self._document_wire(coll.documents[f]) for f in seen]})

    def _reindex(self, request: Request, cid: str, file_id: str) -> Response:
        coll = self._get_collection(cid)
        self._restart(self._get_member(coll, file_id))
        return Response.json({})

    def _remove_document(self, request: Request, cid: str, file_id: str) -> Response:
        coll = self._get_collection(cid)
        self._get_member(coll, file_id)
        del coll.documents[file_id]
        return Response.json({})

    # ---- inspection / test API (thread-safe) -------------------------------------------------------

    def writes(self) -> list[JournalEntry]:
        """State-changing requests; a search is a POST (§10) but changes nothing, so it is not one."""
        return [e for e in super().writes() if e.path != "/v1/documents/search"]

    def reset(self) -> None:
        """Forget all files and collections and restore the constructor settings (keeps the listeners).

        Also clears the journal, the fault script, rate limits and latency, so one running emulator can
        serve many tests.
        """
        with self.lock:
            self._files.clear()
            self._file_keys.clear()
            self._collections.clear()
            self.denied_permissions.clear()
            (self.api_key, self.management_key, self.processing_delay, self.max_file_bytes,
             self.clock) = self._initial
        self.clear_journal()
        self.faults.clear()
        for app in self.apps.values():
            app.rate_limit = None
            app.latency = 0.0

    def set_keys(self, api_key: str | None = None, management_key: str | None = None) -> None:
        """Rotate keys (simulates revocation: the old key now gets 401)."""
        with self.lock:
            if api_key is not None:
                self.api_key = api_key
            if management_key is not None:
                self.management_key = management_key

    def create_collection(self, name: str, field_definitions: list[dict[str, Any]] | None = None) -> str:
        """Create a collection directly (no HTTP); returns its ``collection_<uuid4>`` id."""
        with self.lock:
            body = {"collection_name": name, "field_definitions": _snake_keys(field_definitions or [])}
            try:
                return self._new_collection(body).id
            except HttpError as exc:
                raise ValueError(exc.response.body.decode()) from None

    def collection(self, collection_id: str) -> dict[str, Any]:
        """CollectionMetadata exactly as the wire shows it; KeyError when unknown."""
        with self.lock:
            self._purge_expired()
            return self._collection_wire(self._collections[collection_id])

    def collection_ids(self) -> list[str]:
        with self.lock:
            return list(self._collections)

    def collection_documents(self, collection_id: str) -> dict[str, dict[str, Any]]:
        """file_id → {"fields", "status", "error_message"} (status computed now)."""
        with self.lock:
            self._purge_expired()
            out: dict[str, dict[str, Any]] = {}
            for file_id, doc in self._collections[collection_id].documents.items():
                state = self._status(doc)
                out[file_id] = {"fields": dict(doc.fields), "status": state.status,
                                "error_message": state.error_message}
            return out

    def document(self, collection_id: str, file_id: str) -> dict[str, Any]:
        """One DocumentMetadata as the wire shows it; KeyError when not a member."""
        with self.lock:
            self._purge_expired()
            return self._document_wire(self._collections[collection_id].documents[file_id])

    def files(self) -> dict[str, dict[str, Any]]:
        """file_id → {"filename", "bytes", "sha256", "created_at"} for live files."""
        with self.lock:
            self._purge_expired()
            return {f.id: {"filename": f.filename, "bytes": len(f.data), "sha256": f.sha256,
                           "created_at": int(f.created_at)} for f in self._files.values()}

    def file_bytes(self, file_id: str) -> bytes | None:
        with self.lock:
            self._purge_expired()
            file = self._files.get(file_id)
            return None if file is None else file.data

    def add_file(self, filename: str, content: bytes, content_type: str | None = None) -> str:
        """Store a file as if uploaded through ``POST /v1/files``; returns its id."""
        with self.lock:
            return self._store_file(filename, content, content_type).id

    def add_foreign_file_to_collection(self, collection_id: str, filename: str, content: bytes) -> str:
        """A file a human added by hand (console upload): no ``fields``, even if some are required."""
        with self.lock:
            coll = self._collections[collection_id]
            file = self._store_file(filename, content, None)
            now = self.clock()
            coll.documents[file.id] = _Document(file_id=file.id, fields={}, added_at=now, started=now)
            return file.id

    def add_member(self, collection_id: str, file_id: str, fields: dict[str, str] | None = None) -> None:
        """Put an existing file into a collection as another tool would (an earlier sync system, a person), with
        ``fields`` as given (none: a hand-made membership)."""
        with self.lock:
            coll = self._collections[collection_id]
            self._get_file(file_id)
            now = self.clock()
            coll.documents[file_id] = _Document(file_id=file_id, fields=dict(fields or {}), added_at=now, started=now)

    def lose_index(self, collection_id: str, file_id: str) -> None:
        """Make one member unfindable while it still reports PROCESSED (a silent indexing failure) until the
        next add with new fields or reindex; KeyError when it is not a member."""
        with self.lock:
            self._collections[collection_id].documents[file_id].index_lost = True

    def add_member_by_hand(self, collection_id: str, file_id: str) -> None:
        """A person adds an existing file to a collection in the console (no ``fields``)."""
        with self.lock:
            now = self.clock()
            self._collections[collection_id].documents[file_id] = _Document(file_id=file_id, fields={},
                                                                           added_at=now, started=now)

    def age_files(self, seconds: float) -> None:
        """Pretend every stored file was uploaded ``seconds`` earlier (for age-based cleanups)."""
        with self.lock:
            for file in self._files.values():
                file.created_at -= seconds

    def force_status(self, collection_id: str, file_id: str, status: str, error_message: str = "") -> None:
        """Pin a document's status (``"FAILED"`` or ``"DOCUMENT_STATUS_FAILED"``) until the next add/reindex."""
        name = status if status.startswith("DOCUMENT_STATUS_") else f"DOCUMENT_STATUS_{status.upper()}"
        if name not in _STATUSES:
            raise ValueError(f"Unknown document status {status!r}")
        with self.lock:
            doc = self._collections[collection_id].documents[file_id]
            doc.previous_indexed_at = self._status(doc).last_indexed_at
            doc.forced_status = name
            doc.forced_error = error_message
            doc.forced_at = self.clock()
