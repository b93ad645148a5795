"""EspoCRM REST client (``/api/v1/``), following ``shared/contracts/espocrm.md``.

It knows the wire (auth headers, ``searchParams``, paging, ``X-Status-Reason``, ``X-Version-Number``) and maps
the configured Document attribute names to docsync's model. It takes an injected ``httpx.Client``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Generator, Iterator, Mapping
from typing import IO, Any

import httpx

from .errors import ConflictError, NotFoundError, RejectedError
from .model import CrmDocument
from .transport import ServiceClient, short

API_PATH = "/api/v1"
PAGE = 200  # EspoCRM's recordListMaxSizeLimit: maxSize above it is a 403


class ApiKeyAuth(httpx.Auth):
    """``X-Api-Key``, or HMAC (``X-Hmac-Authorization``) when a secret key is configured (contract §1.1-1.2)."""

    def __init__(self, api_key: str, secret_key: str | None, base_path: str) -> None:
        self._api_key = api_key
        self._secret = secret_key
        self._base_path = base_path.rstrip("/")

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self._secret is None:
            request.headers["X-Api-Key"] = self._api_key
        else:
            path = request.url.path
            if path.startswith(self._base_path):
                path = path[len(self._base_path):]
            message = f"{request.method} {path}".encode()
            digest = hmac.new(self._secret.encode(), message, hashlib.sha256).hexdigest()
            token = base64.b64encode(f"{self._api_key}:{digest}".encode()).decode()
            request.headers["X-Hmac-Authorization"] = token
        yield request


def espo_detail(headers: httpx.Headers, body: bytes) -> str:
    """EspoCRM puts the reason in ``X-Status-Reason``; bodies are usually empty or a small JSON object."""
    reason = headers.get("x-status-reason", "")
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("<"):
        text = "an HTML page instead of an API answer (a proxy or the wrong URL?)"
    return short(" ".join(part for part in (reason, text) if part))


def build_http_client(url: str, api_key: str, secret_key: str | None, timeout: float,
                      transport: httpx.BaseTransport | None = None) -> httpx.Client:
    base = url.rstrip("/") + API_PATH + "/"
    auth = ApiKeyAuth(api_key, secret_key, httpx.URL(base).path)
    return httpx.Client(base_url=base, auth=auth, timeout=httpx.Timeout(timeout, connect=10.0),
                        follow_redirects=False, transport=transport,
                        headers={"User-Agent": "docsync", "Accept": "application/json"})


class EspoClient:
    def __init__(self, service: ServiceClient, fields: Mapping[str, str]) -> None:
        self.service = service
        self.f = dict(fields)  # logical name -> attribute name
        self.preview_attr = f"{self.f['preview']}Id"

    # -- reading -------------------------------------------------------------------------------------

    @property
    def list_attributes(self) -> list[str]:
        names = ["id", "name", "modifiedAt", "fileId", "fileName", "versionNumber", self.preview_attr]
        names += [self.f[key] for key in ("dateiStatus", "md5", "sha", "xaiFileId", "xaiCollections",
                                          "xaiSyncedHash", "xaiSyncStatus", "xaiSyncError")]
        return names

    def iter_documents(self, where: list[dict[str, Any]] | None = None) -> Iterator[CrmDocument]:
        """Every Document (or those matching ``where``), paged by id (keyset: safe while records change)."""
        last_id: str | None = None
        while True:
            conditions = list(where or [])
            if last_id is not None:
                conditions.append({"type": "greaterThan", "attribute": "id", "value": last_id})
            params = {"maxSize": PAGE, "offset": 0, "orderBy": "id", "order": "asc",
                      "select": self.list_attributes, "where": conditions}
            page = self.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                                     headers={"X-No-Total": "true"})
            records = _list_of(page, "Document list")
            for record in records:
                yield self.to_document(record)
            if len(records) < PAGE or page.get("total") == -2:
                return
            last_id = str(records[-1]["id"])

    def get_document(self, doc_id: str) -> CrmDocument:
        return self.to_document(self.service.json("GET", f"Document/{doc_id}"))

    def document_at(self, where: list[dict[str, Any]], offset: int) -> CrmDocument | None:
        """The document at ``offset`` (ordered by id) among those matching ``where``; None past the end.
        One ``maxSize=1`` request: how ``docsync verify`` draws a random sample without listing everything."""
        params = {"maxSize": 1, "offset": offset, "orderBy": "id", "order": "asc",
                  "select": self.list_attributes, "where": where}
        page = self.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                                 headers={"X-No-Total": "true"})
        records = _list_of(page, "Document list")
        return self.to_document(records[0]) if records else None

    def record_value(self, entity: str, record_id: str, field: str) -> str | None:
        """One text attribute of one record (e.g. an Account's ``xaiCollectionId``); NotFoundError if none."""
        record = self.service.json("GET", f"{entity}/{record_id}", params={"select": f"id,{field}"})
        value = record.get(field) if isinstance(record, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None

    def iter_values(self, entity: str, field: str) -> Iterator[str]:
        """The non-empty values of ``field`` over every ``entity`` record (keyset-paged by id)."""
        last_id: str | None = None
        while True:
            where: list[dict[str, Any]] = [{"type": "isNotNull", "attribute": field}]
            if last_id is not None:
                where.append({"type": "greaterThan", "attribute": "id", "value": last_id})
            params = {"maxSize": PAGE, "offset": 0, "orderBy": "id", "order": "asc", "select": ["id", field],
                      "where": where}
            page = self.service.json("GET", entity, params={"searchParams": json.dumps(params)},
                                     headers={"X-No-Total": "true"})
            records = _list_of(page, f"{entity} list")
            for record in records:
                value = record.get(field)
                if isinstance(value, str) and value.strip():
                    yield value.strip()
            if len(records) < PAGE:
                return
            last_id = str(records[-1]["id"])

    def count(self, where: list[dict[str, Any]]) -> int:
        params = {"maxSize": 1, "offset": 0, "select": ["id"], "where": where}
        page = self.service.json("GET", "Document", params={"searchParams": json.dumps(params)})
        total = page.get("total") if isinstance(page, dict) else None
        if not isinstance(total, int):
            raise RejectedError("espocrm", "GET", "Document", 200, "answer has no total")
        return total

    def related_values(self, doc_id: str, link: str, field: str) -> list[str]:
        """The non-empty values of ``field`` on every record linked to the document through ``link``."""
        values: list[str] = []
        offset = 0
        while True:
            page = self.service.json("GET", f"Document/{doc_id}/{link}",
                                     params={"select": f"id,{field}", "maxSize": PAGE, "offset": offset})
            records = _list_of(page, f"Document/{{id}}/{link} list")
            for record in records:
                value = record.get(field)
                if isinstance(value, str) and value.strip():
                    values.append(value.strip())
            offset += len(records)
            total = page.get("total")
            if len(records) < PAGE or (isinstance(total, int) and total >= 0 and offset >= total):
                return values

    def download(self, file_id: str, sink: IO[bytes], rewind: Any = None) -> None:
        self.service.call("GET", f"Attachment/file/{file_id}", sink=sink, rewind=rewind,
                          headers={"Accept": "*/*"})

    def metadata(self, key: str) -> Any:
        return self.service.json("GET", "Metadata", params={"key": key})

    def app_user(self) -> Any:
        return self.service.json("GET", "App/user")

    # -- writing -------------------------------------------------------------------------------------

    def update(self, doc_id: str, values: Mapping[str, Any], version: int | None = None) -> CrmDocument:
        """Partial update of docsync's own attributes (logical names). With ``version`` the write is
        conditional (``X-Version-Number``): a concurrent user edit raises :class:`ConflictError`."""
        body = {self.f.get(key, key): value for key, value in values.items()}
        headers = {"X-Version-Number": str(version)} if version is not None else None
        record = self.service.json("PUT", f"Document/{doc_id}", json_body=body, headers=headers)
        if not isinstance(record, dict):
            raise RejectedError("espocrm", "PUT", f"Document/{doc_id}", 200, "answer is not a record")
        return self.to_document(record)

    def upload_preview(self, name: str, webp: bytes) -> str:
        """``POST Attachment`` for the Document's image field; returns the attachment id (contract §5.2)."""
        data_uri = "data:image/webp;base64," + base64.b64encode(webp).decode()
        body = {"name": name, "type": "image/webp", "role": "Attachment", "relatedType": "Document",
                "field": self.f["preview"], "file": data_uri}
        # A lost answer leaves at most an unattached attachment, which EspoCRM's cleanup job removes.
        record = self.service.json("POST", "Attachment", json_body=body, safe_to_repeat=True)
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise RejectedError("espocrm", "POST", "Attachment", 200, "answer has no attachment id")
        return str(record["id"])

    # -- mapping -------------------------------------------------------------------------------------

    def to_document(self, record: Any) -> CrmDocument:
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise RejectedError("espocrm", "GET", "Document", 200, "a record without an id")
        problems: list[str] = []

        def text(attr: str) -> str | None:
            value = record.get(attr)
            if value is None or value == "":
                return None
            if isinstance(value, str):
                return value
            problems.append(f"{attr} has an unexpected type ({type(value).__name__})")
            return None

        collections = _collections(record.get(self.f["xaiCollections"]), self.f["xaiCollections"], problems)
        version = record.get("versionNumber")
        return CrmDocument(
            id=record["id"],
            name=text("name") or "",
            modified_at=text("modifiedAt") or "",
            file_id=text("fileId"),
            file_name=text("fileName"),
            datei_status=text(self.f["dateiStatus"]),
            md5=text(self.f["md5"]),
            sha=text(self.f["sha"]),
            xai_file_id=text(self.f["xaiFileId"]),
            xai_collections=collections,
            xai_synced_hash=text(self.f["xaiSyncedHash"]),
            xai_sync_status=text(self.f["xaiSyncStatus"]),
            xai_sync_error=text(self.f["xaiSyncError"]),
            preview_id=text(self.preview_attr),
            version=version if isinstance(version, int) and not isinstance(version, bool) else None,
            problems=tuple(problems),
            fingerprint=fingerprint(record),
        )


BOOKKEEPING = frozenset({"modifiedAt", "modifiedById", "modifiedByName", "versionNumber"})


def fingerprint(record: dict[str, Any]) -> str:
    """A hash of the record without EspoCRM's modification bookkeeping. ``modifiedAt`` has one-second
    precision, so two saves in the same second look alike by time; by content they do not."""
    content = {key: value for key, value in record.items() if key not in BOOKKEEPING}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


def _collections(value: Any, attr: str, problems: list[str]) -> tuple[str, ...]:
    if value is None or value == "" or value == []:
        return ()
    if isinstance(value, str):  # tolerate a JSON text in a text field
        try:
            value = json.loads(value)
        except ValueError:
            problems.append(f"{attr} is not a JSON array")
            return ()
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    problems.append(f"{attr} is not an array of collection ids")
    return ()


def _list_of(page: Any, what: str) -> list[dict[str, Any]]:
    if not isinstance(page, dict) or not isinstance(page.get("list"), list):
        raise RejectedError("espocrm", "GET", what, 200, "answer has no 'list'")
    records = page["list"]
    if not all(isinstance(r, dict) and isinstance(r.get("id"), str) for r in records):
        raise RejectedError("espocrm", "GET", what, 200, "a list item without an id")
    return list(records)


__all__ = ["ApiKeyAuth", "ConflictError", "EspoClient", "NotFoundError", "build_http_client", "espo_detail"]
