"""EspoCRM REST client (``/api/v1/``), following the EspoCRM contract (``docs/contracts.md``).

It knows the wire (``searchParams``, paging, ``X-Version-Number``) over an injected ``httpx.Client`` (base URL, API
key or HMAC). What it learns of the CRM's Document (names, options, page cap) and the mapping between records and
docsync's model are ``crm.schema.LearnedSchema``'s; what EspoCRM answers, as frozen values, is ``crm.answers``';
what a refusal means by its ``X-Status-Reason`` is ``crm.reasons``'.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any
from urllib.parse import quote

from docsync_cli.crm import queries
from docsync_cli.crm.answers import (
    FieldDefinition,
    StreamNote,
    list_of,
    page_ends,
    parse_field_definitions,
    parse_link_entity,
    parse_stream_note,
)
from docsync_cli.crm.clock import ServerClock
from docsync_cli.crm.fields import FieldSchema
from docsync_cli.crm.queries import id_range
from docsync_cli.crm.reasons import file_field_not_editable, is_auth_failure, record_hidden, refused_write
from docsync_cli.crm.schema import PAGE, ApiUser, LearnedSchema, parse_api_user
from docsync_cli.errors import AuthError, ConflictError, DocsyncError, NotFoundError, RejectedError, SetupError
from docsync_cli.model import CrmDocument, Field, Presence
from docsync_cli.secrets import printable
from docsync_cli.transport.http import ServiceClient, short

log = logging.getLogger("docsync.espocrm")

def missing_link_field(where: str, field: str) -> SetupError:
    """A link rule's field that the linked records do not have: EspoCRM answers without it (HTTP 200), so reading
    on would put every document into no collection. Often the Entity Manager's ``c`` prefix (contract §11.1)."""
    prefixed = "c" + field[:1].upper() + field[1:]
    return SetupError(
        f"the records of {where} have no attribute {field!r} (EspoCRM leaves out attributes that do not exist), so "
        "docsync cannot tell which collections their documents belong in; nothing more was written",
        f"correct collections.links (DOCSYNC_COLLECTIONS__LINKS=link:field): a field added in the Entity Manager "
        f"is named with a 'c' prefix, e.g. {prefixed}; `docsync check` says which fields exist")


class EspoClient:
    """``fields`` are the configured attribute names. :meth:`learn` (once per run) replaces them by the ones
    that exist, learns the enum options and the list page cap (:class:`LearnedSchema`)."""

    def __init__(self, service: ServiceClient, fields: Mapping[str, str]) -> None:
        self.service = service
        service.is_auth_failure = is_auth_failure  # 403 is classified by its reason (contract §10.3)
        self.learned = LearnedSchema(fields)
        self.clock = ServerClock()  # EspoCRM's Date and modifiedAt clocks as this run sees them
        self._learned = False
        self._learn_lock = threading.Lock()

    # -- the CRM's own definitions (once per run) ----------------------------------------------------

    def learn(self) -> FieldSchema:
        """One ``GET Metadata?key=entityDefs.Document.fields`` and one ``GET App/user`` (cached): the attribute
        names that exist, enum options, preview field type and the page cap. Metadata that cannot be read
        (other than an auth failure) leaves the configured names and the design document's options in force."""
        with self._learn_lock:
            if self._learned:
                return self.schema
            try:
                fields = self.metadata("entityDefs.Document.fields")
            except DocsyncError as exc:
                if isinstance(exc, AuthError) or not self.service.answered:
                    raise  # a wrong key, or nothing answers at the URL: the run stops here
                log.warning("cannot read the Document field definitions (%s); using the configured names and "
                            "only the design document's options", exc)
                fields = None
            self.learned.adopt_fields(fields)
            try:
                user = self.app_user()
            except DocsyncError as exc:
                if isinstance(exc, AuthError) or not self.service.answered:
                    raise
                log.warning("cannot read App/user (%s); listing %d documents per page", exc, PAGE)
                user = None
            self.learned.adopt_app_user(user)
            if user is not None and user.denies_field("Document", "file", "edit"):
                log.warning("the API user may not edit the Document field 'file', so EspoCRM silently drops the "
                            "fileId docsync sends with each write-back; a file replaced during a sync is noticed "
                            "only after the write (give the role Document file edit, Field Level)")
            self._learned = True
            return self.schema

    @property
    def schema(self) -> FieldSchema:
        return self.learned.fields

    @property
    def attributes(self) -> dict[str, str]:
        """Logical name -> the attribute name in this CRM."""
        return self.learned.attributes

    @property
    def preview_attr(self) -> str:
        return self.learned.preview_attr

    @property
    def page_size(self) -> int:
        return self.learned.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self.learned.page_size = value

    @property
    def api_user(self) -> ApiUser | None:
        """The API user :meth:`learn` read (None before, or when ``App/user`` could not be read)."""
        return self.learned.api_user

    @property
    def list_attributes(self) -> list[str]:
        return self.learned.list_attributes

    def to_document(self, record: Any) -> CrmDocument:
        return self.learned.to_document(record)

    # -- reading -------------------------------------------------------------------------------------

    def iter_documents(self, where: list[dict[str, Any]] | None = None) -> Iterator[CrmDocument]:
        """Every Document (or those matching ``where``), paged by id (keyset: safe while records change)."""
        last_id: str | None = None
        while True:
            conditions = list(where or [])
            if last_id is not None:
                conditions.append({"type": "greaterThan", "attribute": "id", "value": last_id})
            params = {"maxSize": self.page_size, "offset": 0, "orderBy": "id", "order": "asc",
                      "select": self.list_attributes, "where": conditions}
            page = self.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                                     headers={"X-No-Total": "true"})
            records = list_of(page, "Document list")
            for record in records:
                yield self.to_document(record)
            if page_ends(records, page.get("total"), self.page_size):
                return
            last_id = str(records[-1]["id"])

    # -- change feeds (contract §2.5, §10.5-10.7) -------------------------------------------------------

    def search(self, entity: str, params: Mapping[str, Any], *, no_total: bool = True
               ) -> tuple[list[dict[str, Any]], Any]:
        """One list request (``searchParams`` JSON); remembers the server's ``Date`` (:attr:`clock`)."""
        answer = self.service.call("GET", entity, params={"searchParams": json.dumps(dict(params))},
                                   headers={"X-No-Total": "true"} if no_total else None)
        page = self.service.parsed(answer, "GET", entity)
        self.clock.note(answer.headers)
        return list_of(page, f"{entity} list"), page.get("total")

    def iter_keyset(self, entity: str, where: Sequence[dict[str, Any]], select: Sequence[str], *,
                    by: str = "id") -> Iterator[dict[str, Any]]:
        """Every record matching ``where``, keyset-paged by ``id`` or by (``modifiedAt``, ``id``): safe while
        records change, no total counted (``X-No-Total``)."""
        cursor: tuple[str, str] | None = None
        while True:
            conditions = list(where)
            if cursor is not None and by == "id":
                conditions.append({"type": "greaterThan", "attribute": "id", "value": cursor[1]})
            elif cursor is not None:
                conditions.append({"type": "or", "value": [
                    {"type": "greaterThan", "attribute": by, "value": cursor[0]},
                    {"type": "and", "value": [{"type": "equals", "attribute": by, "value": cursor[0]},
                                              {"type": "greaterThan", "attribute": "id", "value": cursor[1]}]}]})
            params = {"maxSize": self.page_size, "offset": 0, "orderBy": by, "order": "asc",
                      "select": list(dict.fromkeys(["id", by, *select])), "where": conditions}
            records, total = self.search(entity, params)
            yield from records
            if page_ends(records, total, self.page_size):
                return
            last = records[-1]
            cursor = (str(last.get(by) or ""), str(last["id"]))

    def count_between(self, low: str | None, high: str | None) -> int | None:
        """How many Documents have ``low <= id < high`` (None = open end, in the server's collation); None when
        the server does not count (``total`` -1/-2: "Disable record count", contract §11.2)."""
        params = {"maxSize": 1, "offset": 0, "orderBy": "id", "order": "asc", "select": ["id"],
                  "where": id_range(low, high)}
        _, total = self.search("Document", params, no_total=False)
        if not isinstance(total, int) or isinstance(total, bool):
            raise RejectedError("espocrm", "GET", "Document", 200, "answer has no total")
        return total if total >= 0 else None

    def stream_page(self, after_number: int | None, types: Sequence[str], parent_types: Sequence[str], *,
                    before: int | None = None, up_to: int | None = None) -> tuple[list[StreamNote], Any]:
        """One ``GET GlobalStream`` page, newest first, and its ``total`` (-1: more exist; -2: the server stopped,
        perhaps early, contract §11.2): notes numbered above ``after_number``, at most ``up_to``, below ``before``;
        with ``after_number`` None only the newest note (to start a cursor). Raises the HTTP error (403 without
        the GlobalStream scope). ``sync/stream_feed.py`` pages."""
        query: dict[str, Any] = {"maxSize": 1}
        if after_number is not None:
            query = {"searchParams": json.dumps({"maxSize": self.page_size, "where": queries.stream_notes(
                after_number, up_to, types, parent_types)})}
        if before is not None:
            query["beforeNumber"] = before
        page = self.service.json("GET", "GlobalStream", params=query)
        return [parse_stream_note(n) for n in list_of(page, "GlobalStream")], page.get("total")

    def get_document(self, doc_id: str) -> CrmDocument:
        return self.to_document(self.service.json("GET", f"Document/{quote(doc_id, safe='')}"))

    def presence(self, doc_id: str) -> tuple[Presence, str]:
        """``GET Document/{id}`` (contract §11.3): 404 gone, 403 ``No 'read' access.`` hidden, 200 live; else raised."""
        try:
            self.service.json("GET", f"Document/{quote(doc_id, safe='')}", params={"select": "id"})
        except NotFoundError as exc:
            return Presence.GONE, exc.detail or "HTTP 404"
        except (AuthError, RejectedError) as exc:
            if exc.status == 403 and record_hidden(exc.detail):
                return Presence.HIDDEN, "No 'read' access."
            raise
        return Presence.LIVE, ""

    def document_at(self, where: list[dict[str, Any]], offset: int) -> CrmDocument | None:
        """The document at ``offset`` (ordered by id) among those matching ``where``; None past the end.
        One ``maxSize=1`` request: how ``docsync verify`` draws a random sample without listing everything."""
        params = {"maxSize": 1, "offset": offset, "orderBy": "id", "order": "asc",
                  "select": self.list_attributes, "where": where}
        page = self.service.json("GET", "Document", params={"searchParams": json.dumps(params)},
                                 headers={"X-No-Total": "true"})
        records = list_of(page, "Document list")
        return self.to_document(records[0]) if records else None

    def record_value(self, entity: str, record_id: str, field: str) -> str | None:
        """One text attribute of one record (e.g. an Account's ``xaiCollectionId``); NotFoundError if none."""
        record = self.service.json("GET", f"{entity}/{record_id}", params={"select": f"id,{field}"})
        if isinstance(record, dict) and field not in record:
            raise missing_link_field(entity, field)
        value = record.get(field) if isinstance(record, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None

    def iter_values(self, entity: str, field: str) -> Iterator[str]:
        """The non-empty values of ``field`` over every ``entity`` record (keyset-paged by id)."""
        last_id: str | None = None
        while True:
            where: list[dict[str, Any]] = [{"type": "isNotNull", "attribute": field}]
            if last_id is not None:
                where.append({"type": "greaterThan", "attribute": "id", "value": last_id})
            params = {"maxSize": self.page_size, "offset": 0, "orderBy": "id", "order": "asc",
                      "select": ["id", field], "where": where}
            page = self.service.json("GET", entity, params={"searchParams": json.dumps(params)},
                                     headers={"X-No-Total": "true"})
            records = list_of(page, f"{entity} list")
            for record in records:
                value = record.get(field)
                if isinstance(value, str) and value.strip():
                    yield value.strip()
            if page_ends(records, page.get("total"), self.page_size):
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
        return [value for value, _ in self.related(doc_id, link, field)]

    def related(self, doc_id: str, link: str, field: str) -> list[tuple[str, str]]:
        """(value, "<link> '<name>' (<id>)") for the non-empty ``field`` of every record linked through ``link``:
        the value and, for messages, which record holds it."""
        values: list[tuple[str, str]] = []
        offset = 0
        while True:
            page = self.service.json("GET", f"Document/{quote(doc_id, safe='')}/{link}",
                                     params={"select": f"id,name,{field}", "maxSize": self.page_size,
                                             "offset": offset})
            records = list_of(page, f"Document/{{id}}/{link} list")
            for record in records:
                if field not in record:  # EspoCRM leaves out a selected attribute that does not exist (§11.1)
                    raise missing_link_field(link, field)
                value = record.get(field)
                if isinstance(value, str) and value.strip():
                    label = f"{link} '{printable(str(record.get('name') or ''), 80)}' ({record.get('id')})"
                    values.append((value.strip(), label))
            offset += len(records)
            total = page.get("total")
            if len(records) < self.page_size or (isinstance(total, int) and total >= 0 and offset >= total):
                return values

    def download(self, file_id: str, sink: IO[bytes], rewind: Any = None) -> None:
        self.service.call("GET", f"Attachment/file/{quote(file_id, safe='')}", sink=sink, rewind=rewind,
                          headers={"Accept": "*/*"})

    def metadata(self, key: str) -> Any:
        """The metadata at ``key``; None when it does not exist (an empty 200, contract §10.2)."""
        answer = self.service.call("GET", "Metadata", params={"key": key})
        if not answer.body.strip():
            return None
        try:
            return answer.parsed()
        except ValueError:
            raise RejectedError("espocrm", "GET", "Metadata", answer.status,
                                f"answer is not JSON: {short(answer.body.decode('utf-8', 'replace'), 80)!r}"
                                ) from None

    def link_entity(self, link: str) -> str | None:
        """The entity Document's ``link`` leads to; None when Document has no such link."""
        return parse_link_entity(self.metadata(f"entityDefs.Document.links.{link}"))

    def entity_fields(self, entity: str) -> dict[str, FieldDefinition]:
        """``entity``'s field definitions by name (empty when none can be read from the answer)."""
        return parse_field_definitions(self.metadata(f"entityDefs.{entity}.fields"))

    def accounts_override(self) -> bool:
        """Whether the accountsIds override is in force (``noLoad: false`` on Document's ``accounts`` field)."""
        return self.metadata("entityDefs.Document.fields.accounts.noLoad") is False

    def app_user(self) -> ApiUser:
        """``GET App/user``: who the key is and what its role allows (contract §1.3, §7.2, §10.4)."""
        answer = self.service.call("GET", "App/user")
        self.clock.note(answer.headers)  # the first answer of a run: where its watermark comes from
        return parse_api_user(self.service.parsed(answer, "GET", "App/user"))

    # -- writing -------------------------------------------------------------------------------------

    def update(self, doc_id: str, values: Mapping[str, Any], version: int | None = None,
               file_id: str | None = None) -> CrmDocument:
        """Partial update of docsync's own attributes (logical names), enum values made acceptable first
        (:meth:`LearnedSchema.update_body`). With ``version`` the write is conditional (``X-Version-Number``): a
        concurrent user edit raises :class:`ConflictError`. ``file_id`` is sent as ``fileId`` (contract §10.9):
        if a person replaced the file meanwhile, EspoCRM refuses the write, which raises :class:`ConflictError`.
        A validation failure (400) of docsync's own write is a :class:`SetupError` naming field and value."""
        body = self.learned.update_body(values)
        if not body:
            return self.get_document(doc_id)
        if file_id is not None:
            body["fileId"] = file_id
        headers = {"X-Version-Number": str(version)} if version is not None else None
        path = f"Document/{quote(doc_id, safe='')}"
        try:
            try:
                record = self._put(path, body, headers)
            except RejectedError as exc:
                if not ("fileId" in body and file_field_not_editable(exc)):
                    raise
                # The check is lost, the write-back is not.
                log.warning("EspoCRM refused docsync's fileId check (%s); give the API user edit access to the "
                            "Document file field so a file replaced during a sync is caught", exc.detail)
                del body["fileId"]
                record = self._put(path, body, headers)
        except RejectedError as exc:
            meaning = refused_write(exc, doc_id, body, file_id)
            if meaning is None:
                raise
            raise meaning from exc
        if not isinstance(record, dict):
            raise RejectedError("espocrm", "PUT", "Document/{id}", 200, "answer is not a record")
        after = self.to_document(record)
        if file_id is not None and after.file_id and after.file_id != file_id:
            # the fileId check was dropped (no field edit access: 200, §11.2) and a person replaced the file
            raise ConflictError("espocrm", "PUT", "Document/{id}", 200,
                                "the file was replaced while docsync worked on it (the write landed: EspoCRM "
                                "dropped the fileId check)")
        return after

    def _put(self, path: str, body: Mapping[str, Any], headers: Mapping[str, str] | None) -> Any:
        """One ``PUT``; its ``Date`` against the saved ``modifiedAt`` measures the clocks' offset."""
        answer = self.service.call("PUT", path, json_body=body, headers=headers)
        record = self.service.parsed(answer, "PUT", path)
        self.clock.note_write(answer.headers, record)
        return record

    def upload_preview(self, name: str, webp: bytes) -> str:
        """``POST Attachment`` for the Document's image field; returns the attachment id (contract §5.2)."""
        data_uri = "data:image/webp;base64," + base64.b64encode(webp).decode()
        body = {"name": printable(name) or "preview.webp",  # no CR/LF, NUL or bidi overrides in the name
                "type": "image/webp", "role": "Attachment", "relatedType": "Document",
                "field": self.attributes[Field.PREVIEW], "file": data_uri}
        # A lost answer leaves at most an unattached attachment, which EspoCRM's cleanup job removes.
        record = self.service.json("POST", "Attachment", json_body=body, safe_to_repeat=True)
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            raise RejectedError("espocrm", "POST", "Attachment", 200, "answer has no attachment id")
        return str(record["id"])


__all__ = ["EspoClient", "id_range"]
