"""xAI Files API + Management API client, following the xAI contract (``docs/contracts.md``).

Two injected ``httpx.Client`` objects: one for ``api.x.ai`` (API key), one for ``management-api.x.ai``
(management key). Files use the OpenAI-style shape, collections the protobuf-JSON shape; this module hides both.

docsync marks what it uploads in two ways:

* the uploaded file name is ``crm-<document id>-<first 8 hex of sha256>-<installation tag>-<original name>``, so
  an upload whose answer was lost can be found again with ``GET /v1/files?filter=name:"…"`` before any re-upload
  (a name is only ever a hint for that lookup, never a reason to delete);
* each collection document carries ``fields`` ``crm_document_id``, ``content_sha256``, ``managed_by`` and
  ``installation_id`` (declared in the collection's ``field_definitions`` on first use): the ownership record.

Every id that goes into a URL path is checked against the services' id shape and percent-encoded as one path
segment (:func:`segment`): CRM values are untrusted input.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from docsync_cli.errors import DocsyncError, NotFoundError, RejectedError, SetupError
from docsync_cli.model import UNKNOWN
from docsync_cli.transport.http import ServiceClient, new_client, short
from docsync_cli.xai.answers import (
    CollectionMember,
    SearchHit,
    XaiCollection,
    XaiFile,
    parse_collection,
    parse_collections,
    parse_file,
    parse_member,
    parse_search_hit,
)

FIELD_KEYS = ("crm_document_id", "content_sha256", "managed_by", "installation_id")
MANAGED_BY = "docsync"
PAGE = 100
BATCH = 100
SEARCH_MAX_LIMIT = 100
_UNSAFE_NAME = re.compile(r"[^\w.\- ()\[\]äöüÄÖÜß]+")


SERVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def is_service_id(value: object) -> bool:
    """The shape of xAI's ids (``collection_<uuid4>``, ``file_<uuid4>``): letters, digits, ``_``, ``-``, ≤ 128."""
    return isinstance(value, str) and SERVICE_ID.fullmatch(value) is not None


def segment(value: str) -> str:
    """``value`` as one URL path segment; anything that is not an id is refused before a request is made."""
    if not is_service_id(value):
        raise RejectedError("xai", "-", "-", None, f"refusing to use {short(repr(value), 80)} as an xAI id")
    return urllib.parse.quote(value, safe="")


def _member_path(collection_id: str, file_id: str) -> str:
    return f"/v1/collections/{segment(collection_id)}/documents/{segment(file_id)}"


def installation_tag(installation_id: str) -> str:
    """8 hex characters of the installation id, for file names (the full id is in the collection fields)."""
    return hashlib.sha256(installation_id.encode()).hexdigest()[:8]


MARK = "crm-"  # every name docsync uploads under starts with it (a hint for lookups, never a reason to delete)


def upload_name(doc_id: str, sha256: str, original: str, installation_id: str = "") -> str:
    """The marked, sanitised name an uploaded file gets (no path parts, no control characters, ≤ 200 chars)."""
    base = original.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE_NAME.sub("_", base).strip(" ._") or "document"
    return f"{name_prefix(doc_id, sha256, installation_id)}-{base}"[:200]


def name_prefix(doc_id: str, sha256: str, installation_id: str = "") -> str:
    """What every :func:`upload_name` of this document, content and installation starts with (then ``-``)."""
    prefix = f"{MARK}{_UNSAFE_NAME.sub('_', doc_id)[:40]}-{sha256[:8]}"
    return f"{prefix}-{installation_tag(installation_id)}" if installation_id else prefix


def started_upload(name: str, started: Mapping[str, str]) -> str | None:
    """The document of an upload this host started under exactly ``name`` (``started``: the upload journal's
    name → document id). A name that merely looks like docsync's marker names no document."""
    return started.get(name) if name.startswith(MARK) else None


def xai_detail(headers: httpx.Headers, body: bytes) -> str:
    """xAI error bodies look like ``{"code": "...", "error": "..."}``; parse leniently (contract §3)."""
    text = body.decode("utf-8", "replace")
    try:
        data = json.loads(text)
    except ValueError:
        if text.lstrip().startswith("<"):
            return "an HTML page instead of an API answer (a proxy or the wrong URL?)"
        return short(text)
    if isinstance(data, dict):
        parts = [str(data[key]) for key in ("error", "message", "code") if data.get(key) not in (None, "")]
        return short(": ".join(parts[:2]))
    return short(text)


NAMES_THE_KEY = re.compile(r"\bapi[ _-]?key\b", re.IGNORECASE)


def is_auth_failure(status: int, headers: httpx.Headers, body: bytes) -> bool:
    """Contract §15: a wrong or revoked key is answered 400 "Incorrect API key provided: …" (401/403 elsewhere).
    401 and 403 are auth failures; a 400 only when its error text names the API key."""
    if status in (401, 403):
        return True
    return status == 400 and NAMES_THE_KEY.search(xai_detail(headers, body)) is not None


def build_http_client(base_url: str, key: str, timeout: float,
                      transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return new_client(base_url=base_url.rstrip("/"), timeout=httpx.Timeout(timeout, connect=10.0),
                        follow_redirects=False, transport=transport,
                        headers={"Authorization": f"Bearer {key}", "User-Agent": "docsync"})


class XaiClient:
    def __init__(self, files: ServiceClient, management: ServiceClient) -> None:
        self.files = files
        self.management = management
        for service in (files, management):
            service.is_auth_failure = is_auth_failure  # a 400 naming the API key is one (contract §15)
        self._declared: set[str] = set()
        self._management_found: bool | None = None

    # -- files ---------------------------------------------------------------------------------------

    def upload(self, path: Path, name: str, content_type: str) -> XaiFile:
        """``POST /v1/files`` (multipart, streamed from disk). Not idempotent: a lost answer raises
        ``AmbiguousWriteError``; callers look the file up by name before trying again."""
        with path.open("rb") as handle:
            try:
                answer = self.files.json(
                    "POST", "/v1/files",
                    files={"file": (name, handle, content_type)},
                    data={"purpose": "assistants"},
                    safe_to_repeat=False,
                    rewind=lambda: handle.seek(0),
                )
            except NotFoundError as exc:  # the Files API itself is missing: the URL's fault, not the document's
                raise SetupError(f"{exc} (no xAI Files API at this URL)",
                                 "check XAI_API_URL (xai.api_url); `docsync check` tests it") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("id"), str):
            raise RejectedError("xai", "POST", "/v1/files", 200, "answer has no file id")
        return parse_file(answer)

    def find_uploads(self, doc_id: str, sha256: str, installation_id: str) -> list[XaiFile]:
        """This installation's uploads of exactly this content for ``doc_id``, found by their marked name."""
        return self.find_files(name_prefix(doc_id, sha256, installation_id) + "-")

    def marked_files(self) -> list[XaiFile]:
        """Every file whose name carries docsync's marker (anyone's: the name alone proves nothing)."""
        return self.find_files(MARK)

    def find_files(self, prefix: str) -> list[XaiFile]:
        """Files whose name starts with ``prefix`` (server-side fuzzy filter, then an exact check here)."""
        found: list[XaiFile] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE, "order": "asc", "sort_by": "created_at",
                                      "filter": f'name:"{prefix}"'}
            if token:
                params["pagination_token"] = token
            page = self.files.json("GET", "/v1/files", params=params)
            data = page.get("data") if isinstance(page, dict) else None
            if not isinstance(data, list):
                raise RejectedError("xai", "GET", "/v1/files", 200, "answer has no 'data' list")
            found += [parse_file(f) for f in data if isinstance(f, dict) and isinstance(f.get("id"), str)
                      and str(f.get("filename", "")).startswith(prefix)]
            token = page.get("pagination_token")
            if len(data) < PAGE or not token:  # contract §5.2: the end is a short page
                return found

    def file_exists(self, file_id: str) -> bool:
        try:
            self.files.json("GET", f"/v1/files/{segment(file_id)}")
        except NotFoundError:
            return False
        return True

    def file_name(self, file_id: str) -> str | None:
        """The file's name (``GET /v1/files/{id}``), or None when it does not exist (or is no file id)."""
        if not is_service_id(file_id):
            return None
        try:
            answer = self.files.json("GET", f"/v1/files/{segment(file_id)}")
        except NotFoundError:
            return None
        name = answer.get("filename") if isinstance(answer, dict) else None
        return name if isinstance(name, str) and name else None

    def delete_file(self, file_id: str) -> None:
        """Delete a file; 404 means it is already gone."""
        try:
            self.files.call("DELETE", f"/v1/files/{segment(file_id)}")
        except NotFoundError:
            return

    def probe_files(self) -> None:
        """The cheapest Files API read (``GET /v1/files?limit=1``, §5.2): proves the URL and the API key, or
        raises what the service said (§15: a wrong key is a 400 naming it)."""
        self.files.json("GET", "/v1/files", params={"limit": 1})

    def probe_management(self) -> None:
        """The cheapest Management API read (``GET /v1/collections?limit=1``, §6.2): proves the URL and the
        management key, or raises what the service said (§15)."""
        self.management.json("GET", "/v1/collections", params={"limit": 1})

    # -- collections ---------------------------------------------------------------------------------

    def collections(self, limit: int = PAGE) -> list[XaiCollection]:
        """The first page of the management key's collections (``GET /v1/collections``, §6.2, ≤ 100)."""
        return parse_collections(self.management.json("GET", "/v1/collections",
                                                      params={"limit": max(1, min(limit, PAGE))}))

    def all_collection_ids(self) -> list[str]:
        """The id of every collection of the team (§6.2, paged by ``pagination_token``)."""
        found: list[str] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if token:
                params["pagination_token"] = token
            page = self.management.json("GET", "/v1/collections", params=params)
            found += [c.id for c in parse_collections(page)]
            token = page.get("pagination_token") if isinstance(page, dict) else None
            if not token:
                return found

    def file_sha256(self, file_id: str) -> str | None:
        """SHA-256 of the file's bytes (``GET /v1/files/{id}/content``, §5.5, streamed through a temp file), or
        None when there is no such file."""
        digest = hashlib.sha256()
        with tempfile.TemporaryFile() as sink:
            try:
                self.files.call("GET", f"/v1/files/{segment(file_id)}/content", sink=sink)
            except NotFoundError:
                return None
            sink.seek(0)
            for chunk in iter(lambda: sink.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()

    def get_collection(self, collection_id: str) -> XaiCollection:
        try:
            answer = self.management.json("GET", f"/v1/collections/{segment(collection_id)}")
        except NotFoundError:
            if not self._management_api_exists():  # every collection 404s: the URL's fault, not the documents'
                raise SetupError("xai-management GET /v1/collections: HTTP 404 (no xAI Management API at this URL)",
                                 "check XAI_MANAGEMENT_URL (xai.management_url); `docsync check` tests it") from None
            raise
        if not isinstance(answer, dict):
            raise RejectedError("xai", "GET", "/v1/collections/{id}", 200, "answer is not a collection")
        return parse_collection(answer, collection_id)

    def _management_api_exists(self) -> bool:
        """Does the collection listing answer (asked once, after a collection's 404)? Only its own 404 says no."""
        if self._management_found is None:
            try:
                self.collections(limit=1)
                self._management_found = True
            except NotFoundError:
                self._management_found = False
            except DocsyncError:
                return True  # another failure says nothing about the URL; the collection's 404 stands
        return self._management_found

    def ensure_fields(self, collection_id: str) -> None:
        """Declare docsync's field keys on a collection made by hand in the console (once per run)."""
        if collection_id in self._declared:
            return
        have = self.get_collection(collection_id).field_keys
        missing = [key for key in FIELD_KEYS if key not in have]
        if missing:
            updates = [{"operation": "FIELD_DEFINITION_ADD",
                        "field_definition": {"key": key, "required": False, "unique": False,
                                             "inject_into_chunk": False,
                                             "description": "managed by docsync; do not edit"}}
                       for key in missing]
            self.management.json("PUT", f"/v1/collections/{segment(collection_id)}",
                                 json_body={"field_definition_updates": updates})
        self._declared.add(collection_id)

    def add_document(self, collection_id: str, file_id: str, doc_id: str, sha256: str, installation_id: str
                     ) -> None:
        # Adding an existing member again is an upsert (contract §7.1), so the call is safe to repeat.
        fields = {"crm_document_id": doc_id, "content_sha256": sha256, "managed_by": MANAGED_BY,
                  "installation_id": installation_id}
        self.management.call("POST", _member_path(collection_id, file_id),
                             json_body={"fields": fields}, safe_to_repeat=True)

    def remove_document(self, collection_id: str, file_id: str) -> None:
        """Take a file out of a collection; 404 means it is not a member any more."""
        try:
            self.management.call("DELETE", _member_path(collection_id, file_id))
        except NotFoundError:
            return

    def reindex(self, collection_id: str, file_id: str) -> None:
        self.management.call("PATCH", _member_path(collection_id, file_id))

    def member(self, collection_id: str, file_id: str) -> CollectionMember | None:
        """A file's document in a collection, or None when the file is not a member."""
        try:
            answer = self.management.json("GET", _member_path(collection_id, file_id))
        except NotFoundError:
            return None
        return parse_member(answer, file_id) if isinstance(answer, dict) else None

    def probe_documents(self, collection_id: str) -> None:
        """One document list request (``limit=1``, §7.3): raises what the service said (403 when the management
        key may not list the collection's documents); the answer itself is not read."""
        self.management.json("GET", f"/v1/collections/{segment(collection_id)}/documents", params={"limit": 1})

    def statuses(self, collection_id: str, file_ids: list[str]) -> dict[str, tuple[str, str]]:
        """file id → (status, error_message) for the members among ``file_ids`` (batchGet, ≤100 per call)."""
        result: dict[str, tuple[str, str]] = {}
        for start in range(0, len(file_ids), BATCH):
            chunk = file_ids[start:start + BATCH]
            answer = self.management.json("GET", f"/v1/collections/{segment(collection_id)}/documents:batchGet",
                                          params=[("file_ids", fid) for fid in chunk])
            for doc in (answer.get("documents") or []) if isinstance(answer, dict) else []:
                meta = doc.get("file_metadata") or {}
                fid = meta.get("file_id")
                if isinstance(fid, str):
                    result[fid] = (str(doc.get("status") or UNKNOWN),
                                   str(doc.get("error_message") or ""))
        return result

    def iter_documents(self, collection_id: str) -> Iterator[CollectionMember]:
        """Every document of a collection (follows ``pagination_token`` until it is missing or empty)."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE}
            if token:
                params["pagination_token"] = token
            page = self.management.json("GET", f"/v1/collections/{segment(collection_id)}/documents", params=params)
            docs = page.get("documents") if isinstance(page, dict) else None
            if not isinstance(docs, list):
                raise RejectedError("xai", "GET", "/v1/collections/{id}/documents", 200, "answer has no list")
            yield from (parse_member(d) for d in docs if isinstance(d, dict))
            token = page.get("pagination_token")
            if not docs or not token:
                return

    # -- search --------------------------------------------------------------------------------------

    def search(self, query: str, collection_ids: list[str], limit: int = 10) -> list[SearchHit]:
        """``POST /v1/documents/search`` over ``collection_ids`` (contract §10), best hit first.

        Read-only, so safe to repeat; but each call is billed (§4), so callers search deliberately. Malformed
        matches are skipped, not trusted. ``limit`` is the number of chunks (1..``SEARCH_MAX_LIMIT``)."""
        if not collection_ids:
            return []
        body = {"query": query, "source": {"collection_ids": list(collection_ids)},
                "limit": max(1, min(limit, SEARCH_MAX_LIMIT))}
        answer = self.files.json("POST", "/v1/documents/search", json_body=body, safe_to_repeat=True)
        matches = answer.get("matches") if isinstance(answer, dict) else None
        if not isinstance(matches, list):
            raise RejectedError("xai", "POST", "/v1/documents/search", 200, "answer has no 'matches' list")
        return [hit for match in matches if (hit := parse_search_hit(match)) is not None]
