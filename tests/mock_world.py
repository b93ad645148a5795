"""A small stateful fake of EspoCRM and xAI behind ``httpx.MockTransport`` (``MockWorld``): just the behaviour the
contracts describe and the engine uses, recording every request so tests can assert order, paths and bodies.
``tests/unit/test_mock_world_contract.py`` holds it to the emulators' answers."""

from __future__ import annotations

import copy
import email.parser
import email.policy
import hashlib
import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from docsync_cli.model import RunSummary
from docsync_sandbox.crm_profiles import DESIGN_DOC_FIELDS

ESPO_KEY = "espo-secret-api-key-0001"
XAI_KEY = "xai-secret-api-key-0002"
MGMT_KEY = "xai-secret-mgmt-key-0003"
INSTALLATION = "test-installation"
CRM = "https://crm.example"
FILES = "https://api.x.example"
MGMT = "https://mgmt.x.example"
PROCESSED = "DOCUMENT_STATUS_PROCESSED"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}

RunFn = Callable[..., RunSummary]  # one sync run: run(options=None, **engine_settings)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@dataclass
class Sent:
    service: str  # espo | files | mgmt
    method: str
    path: str  # EspoCRM paths without /api/v1/, xAI paths as sent
    body: Any

    def __str__(self) -> str:
        return f"{self.service} {self.method} {self.path}"


Fault = Callable[[httpx.Request], httpx.Response | None]


@dataclass
class MockWorld:
    """A tiny EspoCRM + xAI with just the behaviour the contracts describe and the engine uses."""

    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    attachments: dict[str, bytes] = field(default_factory=dict)
    accounts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)
    processing: tuple[str, str] = (PROCESSED, "")  # status a newly added collection document reports
    sent: list[Sent] = field(default_factory=list)
    faults: list[tuple[str, str, re.Pattern[str], Fault]] = field(default_factory=list)
    before: Callable[[Sent], None] | None = None
    fields: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DESIGN_DOC_FIELDS))
    page_cap: int = 200  # recordListMaxSizeLimit
    list_sizes: list[int] = field(default_factory=list)  # maxSize of each Document listing
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _clock: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    # -- setup -------------------------------------------------------------------------------------

    def tick(self) -> str:
        n = next(self._clock)
        return f"2025-03-02 10:{n // 60:02d}:{n % 60:02d}"

    def add_doc(self, doc_id: str, content: bytes = b"hello world", *, collections: tuple[str, ...] = ("col_a",),
                **values: Any) -> dict[str, Any]:
        file_id = f"att-{doc_id}"
        self.attachments[file_id] = content
        self.accounts[doc_id] = [{"id": f"acc-{doc_id}-{c}", "name": f"Account {c}", "xaiCollectionId": c}
                                 for c in collections]
        for c in collections:
            self.collections.setdefault(c, {"field_definitions": [], "docs": {}})
        record = {"id": doc_id, "name": f"Doc {doc_id}", "modifiedAt": self.tick(), "fileId": file_id,
                  "fileName": f"{doc_id}.pdf", "versionNumber": 1, "dateiStatus": "Neu", "md5": None, "sha": None,
                  "xaiFileId": None, "xaiCollections": None, "xaiSyncedHash": None, "xaiSyncStatus": None,
                  "xaiSyncError": None, "previewId": None, **values}
        self.records[doc_id] = record
        return record

    def add_xai_file(self, file_id: str, name: str, content: bytes, collections: dict[str, dict[str, str]]) -> None:
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content), "created_at": 1762345678,
                               "expires_at": None, "filename": name, "purpose": "assistants"}
        for cid, fields in collections.items():
            col = self.collections.setdefault(cid, {"field_definitions": [], "docs": {}})
            col["field_definitions"] = [{"key": k} for k in ("crm_document_id", "content_sha256", "managed_by",
                                                             "installation_id")]
            col["docs"][file_id] = {"fields": fields, "status": PROCESSED, "error_message": ""}

    def fail(self, service: str, method: str, path: str, fault: Fault) -> None:
        """Answer the next matching request with ``fault`` (it may return None to let it through)."""
        self.faults.append((service, method, re.compile(path), fault))

    def transports(self) -> dict[str, httpx.BaseTransport]:
        return {"espocrm": httpx.MockTransport(lambda r: self._handle("espo", r, self._espo)),
                "xai_files": httpx.MockTransport(lambda r: self._handle("files", r, self._files)),
                "xai_management": httpx.MockTransport(lambda r: self._handle("mgmt", r, self._mgmt))}

    # -- queries for assertions ----------------------------------------------------------------------

    def requests(self, service: str | None = None, method: str | None = None, path: str | None = None) -> list[Sent]:
        return [s for s in self.sent if (service is None or s.service == service)
                and (method is None or s.method == method) and (path is None or re.fullmatch(path, s.path))]

    def writes(self) -> list[Sent]:
        return [s for s in self.sent if s.method in WRITES]

    def all_text_sent_back(self) -> str:
        return json.dumps(self.records)

    # -- dispatch ------------------------------------------------------------------------------------

    def _handle(self, service: str, request: httpx.Request, route: Callable[[httpx.Request, Sent],
                                                                              httpx.Response]) -> httpx.Response:
        path = request.url.path
        if service == "espo":
            assert request.headers.get("X-Api-Key") == ESPO_KEY
            path = path.removeprefix("/api/v1/")
        else:
            assert request.headers["Authorization"] == f"Bearer {XAI_KEY if service == 'files' else MGMT_KEY}"
        body: Any = None
        if request.headers.get("Content-Type", "").startswith("application/json") and request.content:
            body = json.loads(request.content)
        sent = Sent(service, request.method, path, body)
        self.sent.append(sent)
        if self.before is not None:
            self.before(sent)
        for index, (f_service, f_method, f_path, fault) in enumerate(self.faults):
            if (f_service, f_method) == (service, request.method) and f_path.fullmatch(path):
                del self.faults[index]
                answer = fault(request)
                if answer is not None:
                    return answer
                break
        return route(request, sent)

    def _espo(self, request: httpx.Request, sent: Sent) -> httpx.Response:
        path, method = sent.path, request.method
        if path == "Metadata":  # the design document's fields (EspoCRM contract §10.1); §10.2 empty if absent
            key = request.url.params["key"]
            if key != "entityDefs.Document.fields":
                return httpx.Response(200, content=b"")
            return httpx.Response(200, json={**self.fields, "name": {"type": "varchar"}})
        if path == "App/user":
            return httpx.Response(200, json={"user": {"id": "api"},
                                             "settings": {"recordListMaxSizeLimit": self.page_cap}})
        if path.startswith("Document/") and method == "PUT":
            for attr in ("xaiSyncStatus", "dateiStatus"):
                options = [None if o == "" else o for o in self.fields.get(attr, {}).get("options", [])]
                if attr in sent.body and (None if sent.body[attr] == "" else sent.body[attr]) not in options:
                    return httpx.Response(400, headers={
                        "X-Status-Reason": f"Field validation failure; entityType: Document, field: {attr}, "
                                           "type: valid."}, json={"messageTranslation": {
                                               "label": "validationFailure", "scope": None,
                                               "data": {"field": attr, "type": "valid"}}})
        if path == "Document" and method == "GET":
            params = json.loads(request.url.params["searchParams"])
            self.list_sizes.append(params["maxSize"])
            if params["maxSize"] > self.page_cap:
                return httpx.Response(403, headers={
                    "X-Status-Reason": f"Max size should not exceed {self.page_cap}. Use offset and limit."})
            after = next((w["value"] for w in params["where"] if w["type"] == "greaterThan"), "")
            rows = sorted((r for r in self.records.values() if r["id"] > after), key=lambda r: r["id"])
            page = rows[: params["maxSize"]]
            return httpx.Response(200, json={"total": -2 if len(rows) <= len(page) else -1, "list": page})
        if m := re.fullmatch(r"Document/([^/]+)/accounts", path):
            linked = self.accounts.get(m[1], [])
            offset = int(request.url.params.get("offset", 0))
            size = int(request.url.params.get("maxSize", 200))
            return httpx.Response(200, json={"total": len(linked), "list": linked[offset:offset + size]})
        if m := re.fullmatch(r"Document/([^/]+)", path):
            rec = self.records.get(m[1])
            if rec is None:
                return httpx.Response(404, headers={"X-Status-Reason": f"Record {m[1]} does not exist."})
            if method == "GET":
                return httpx.Response(200, json=rec)
            if method == "PUT":
                changed = {k: v for k, v in sent.body.items() if rec.get(k) != v}
                version = request.headers.get("X-Version-Number")
                if version is not None and int(version) != rec["versionNumber"] and changed:
                    return httpx.Response(409, headers={"X-Status-Reason": "modified"},
                                          json={"values": {}, "versionNumber": rec["versionNumber"]})
                if changed:
                    rec.update(changed)
                    rec["modifiedAt"] = self.tick()
                    rec["versionNumber"] += 1
                return httpx.Response(200, json=rec)
        if m := re.fullmatch(r"Attachment/file/([^/]+)", path):
            data = self.attachments.get(m[1])
            if data is None:
                return httpx.Response(404)  # the emulator gives no reason here
            return httpx.Response(200, content=data, headers={"Content-Type": "application/pdf"})
        return httpx.Response(404, headers={"X-Status-Reason": "Controller does not exist."})

    def _files(self, request: httpx.Request, sent: Sent) -> httpx.Response:
        path, method = sent.path, request.method
        if path == "/v1/files" and method == "POST":
            head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
            part = next(p for p in message.iter_parts()
                        if p.get_param("name", header="content-disposition") == "file")
            data = part.get_payload(decode=True)
            assert isinstance(data, bytes)
            file_id = f"file_{next(self._ids)}"
            self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": 1762345678,
                                   "expires_at": None, "filename": part.get_filename(), "purpose": "assistants"}
            sent.body = {"filename": part.get_filename(), "sha256": sha256(data)}
            return httpx.Response(200, json=self.files[file_id])
        if path == "/v1/files" and method == "GET":
            wanted = re.fullmatch(r'name:"(.*)"', request.url.params["filter"])
            assert wanted is not None
            data = [f for f in self.files.values() if wanted[1] in f["filename"]]
            return httpx.Response(200, json={"data": data, "pagination_token": data[-1]["id"] if data else ""})
        if m := re.fullmatch(r"/v1/files/([^/]+)", path):
            if m[1] not in self.files:
                return httpx.Response(404, json={"code": "Some requested entity was not found", "error": "no file"})
            if method == "DELETE":
                del self.files[m[1]]
                return httpx.Response(200, json={"id": m[1], "object": "file", "deleted": True})
            return httpx.Response(200, json=self.files[m[1]])
        return httpx.Response(404)

    def _mgmt(self, request: httpx.Request, sent: Sent) -> httpx.Response:
        path, method = sent.path, request.method
        not_found = httpx.Response(404, json={"code": "Some requested entity was not found", "error": "not found"})
        if path == "/v1/collections" and method == "GET":  # the listing (docsync asks it after a collection's 404)
            return httpx.Response(200, json={"collections": [
                {"collection_id": cid, "field_definitions": col["field_definitions"]}
                for cid, col in self.collections.items()]})
        m = re.fullmatch(r"/v1/collections/([^/:]+)(?:/documents(?::batchGet|/([^/]+))?)?", path)
        if m is None or m[1] not in self.collections:
            return not_found
        col = self.collections[m[1]]
        if path.endswith(":batchGet"):
            ids = request.url.params.get_list("file_ids")
            return httpx.Response(200, json={"documents": [self._doc(fid, col["docs"][fid]) for fid in ids
                                                           if fid in col["docs"]]})
        if "/documents" not in path:
            if method == "PUT":
                for update in sent.body["field_definition_updates"]:
                    col["field_definitions"].append(update["field_definition"])
            return httpx.Response(200, json={"collection_id": m[1], "field_definitions": col["field_definitions"]})
        if m[2] is None:
            return httpx.Response(200, json={"documents": [self._doc(f, d) for f, d in col["docs"].items()]})
        fid = m[2]
        if method == "POST":
            if fid not in self.files:
                return not_found
            declared = {d["key"] for d in col["field_definitions"]}
            if not set(sent.body["fields"]) <= declared:
                return httpx.Response(400, json={"code": "Client specified an invalid argument",
                                                 "error": "Unknown field"})
            status, error = self.processing
            col["docs"][fid] = {"fields": sent.body["fields"], "status": status, "error_message": error}
            return httpx.Response(200, json={})
        if fid not in col["docs"]:
            return not_found
        if method == "DELETE":
            del col["docs"][fid]
            return httpx.Response(200, json={})
        if method == "PATCH":
            return httpx.Response(200, json={})
        return httpx.Response(200, json=self._doc(fid, col["docs"][fid]))

    def _doc(self, file_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        meta = self.files.get(file_id, {})
        return {"file_metadata": {"file_id": file_id, "name": meta.get("filename", ""),
                                  "size_bytes": str(meta.get("bytes", 0))}, **doc}


def outcomes(summary: RunSummary) -> dict[str, str]:
    return {r.doc_id: r.outcome for r in summary.results}


def synced_world(world: MockWorld, run: RunFn, doc_id: str = "d1", content: bytes = b"version one") -> str:
    """Run once so ``doc_id`` is Gesynct; return its xAI file id; forget the requests of that run."""
    world.add_doc(doc_id, content)
    assert outcomes(run()) == {doc_id: "synced"}
    world.sent.clear()
    return str(world.records[doc_id]["xaiFileId"])
