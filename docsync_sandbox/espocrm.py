"""A local emulator of the EspoCRM REST API (v8.4.1+/v9.x) as far as docsync uses it.

Wire contract: the EspoCRM contract in ``docs/contracts.md`` (section numbers below refer to it). Served under
``/api/v1/`` on one loopback listener (app name ``"espocrm"``), built on :mod:`docsync_sandbox.http`.

Emulated:

* §1 auth: ``X-Api-Key`` (ApiKey user) or ``X-Hmac-Authorization`` (HMAC user, hex or legacy binary digest);
  401 with an empty body; ``Espo-Authorization``/Basic never work for the API user; failed-attempt limit (§1.4:
  10 failures within 60 s from the loopback "IP" → 403, also for good credentials until the window passes).
* §2 ``GET {Entity}`` lists for Document, Account, Contact (``maxSize``, ``offset``, ``orderBy``/``order``,
  ``select``, ``where`` in PHP bracket form, ``searchParams`` JSON, ``primaryFilter``, ``boolFilterList``,
  ``textFilter``/``q``, ``X-No-Total``); ``GET Attachment`` is admin-only → 403.
* §3 read, PUT/PATCH partial update with validation (§8), optimistic concurrency (§3.3, opt-in), soft delete.
* §4 ``GET {Entity}/{id}/{link}`` for the many-to-many links (Document accounts/contacts and back).
* §5 attachments: ``POST Attachment`` (single request; no chunked upload), ``GET Attachment/file/{id}``, the file
  saver of §5.3 (relating the new attachment, deleting the previous one).
* §6.3 ``GET Metadata[?key=dot.path]`` and ``GET App/user``.
* §11 (a real 9.2.7, pinned on both backends by ``tests/contract``): the API user's role (:mod:`.espocrm_acl`):
  creates and deletes nothing, edits no Account (so link changes are 403 ``noAccessToForeignRecord``);
  ``read_only_fields`` are dropped from a PUT with 200; ``account_read``/``account_stream`` decide which Accounts
  it reads and which notes GlobalStream shows (with the 50-round early ``-2``); ``hide_document`` makes a record
  403 ``No 'read' access.`` and absent from lists. ``count_disabled`` turns every Document ``total`` into -1/-2;
  ``short_pages`` answers pages of about half ``maxSize`` with -1 while more exist; ids compare, order and look
  up case-insensitively (``utf8mb4_unicode_ci``); ``date_skew`` puts the ``Date`` clock apart from the
  ``modifiedAt`` clock; ``X-App-Timestamp`` is a build stamp; ``relate_note_dedup`` is 8.4.0-9.0.x.

Decisions where ``docs/contracts.md`` and the public EspoCRM source leave room (emulator decisions, marked [I]
where the tests cite them):

* Records carry ``"deleted": false``; deleted records are invisible to the API user (not admin) → 404.
* Malformed JSON body → 500 without ``X-Status-Reason``; an empty JSON body is ``{}``.
* Setting ``fileId``/``previewId``/``assignedUserId``/``folderId`` to a missing record → 403, reason
  ``Can't relate with non-existing record. entity type: Document, link: <link>.``, body
  ``{"messageTranslation": {"label": "cannotRelateNonExisting", "scope": null, "data": {...}}}``.
* Concurrency (§3.3) is checked after input filtering and before validation; the 409 ``values`` hold the sent
  attributes whose stored values differ. An enum accepts ``null`` only when ``""`` is an option.
* A POST body larger than ``max_upload_bytes`` arrives empty (PHP ``post_max_size``) → 400
  ``No `field` and `parentType`.``.
* Order by a name with ``.``/``:`` → 400 ``Order by non-existing field 'x'.``; default order of related lists is the
  foreign entity's default; ``textFilter`` is a case-insensitive "starts with" on ``name`` (``*`` = wildcard).
* ``GET App/user`` answers ``token: null`` for the API user. The text limit of lists applies to explicitly selected
  ``text`` attributes only. Linking/unlinking does not touch ``modifiedAt``.
* Where-evaluation decisions are listed in :mod:`docsync_sandbox.espocrm_where`.
* Test helper ``user_update`` always counts as a save (bumps ``modifiedAt``/``versionNumber``), like a human
  pressing Save after editing.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import copy
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, NoReturn

from docsync_sandbox.crm_profiles import DESIGN_DOC_FIELDS
from docsync_sandbox.espocrm_acl import CiTable, Role, id_key
from docsync_sandbox.espocrm_collation import collation_key
from docsync_sandbox.espocrm_index import DocumentIndex
from docsync_sandbox.espocrm_stream import NOTE_ATTRIBUTES, StreamNotes
from docsync_sandbox.espocrm_where import WhereError, WhereScope, compile_where, parse_php_query
from docsync_sandbox.http import EmulatorBase, HttpError, Request, Response

__all__ = ["EspoEmulator"]

API = "/api/v1"
MAX_SIZE_LIMIT = 200
ATTACHMENT_UPLOAD_MAX_SIZE = 256 * 1024 * 1024
TEXT_LIST_LIMIT = 10_000
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
ADMIN_ID = "1"
FAILED_ATTEMPTS_PERIOD = 60.0
DOCUMENT_ACCEPT = [".pdf", ".odt", ".ods", ".odp", ".docx", ".xlsx", ".pptx", ".doc", ".xls", ".ppt", ".rtf",
                   ".csv", ".md", ".txt"]
IMAGE_MIME_BY_EXTENSION = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
                           "webp": "image/webp", "svg": "image/svg+xml", "avif": "image/avif"}
ALLOWED_IMAGE_TYPES = ["image/jpeg", "image/png", "image/gif", "image/webp", "image/svg+xml", "image/avif"]
OTHER_MIME_BY_EXTENSION = {
    "pdf": "application/pdf", "txt": "text/plain", "md": "text/markdown", "csv": "text/csv",
    "rtf": "application/rtf", "doc": "application/msword", "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint", "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "html": "text/html", "json": "application/json", "zip": "application/zip",
}
SYSTEM_ATTRIBUTES = frozenset({"id", "deleted", "createdAt", "createdById", "createdByName", "modifiedAt",
                               "modifiedById", "modifiedByName", "versionNumber"})
ATTACHMENT_ROLES = ("Attachment", "Inline Attachment")
FILE_FIELD_TYPES = ("file", "image")
NO_BAD_CHARACTERS = re.compile(r"[^<>=]+")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
DATETIME_RE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2})?")
INT_PREFIX = re.compile(r"\s*[+-]?\d+")
LINK_FOREIGN = {"createdBy": "User", "modifiedBy": "User", "assignedUser": "User", "folder": "DocumentFolder",
                "teams": "Team"}


def _raise(status: int, reason: str | None = None, body: Any = None,
           headers: dict[str, str] | None = None) -> NoReturn:
    """Abort the handler with an EspoCRM-style error (§1.5): reason header, empty or JSON body."""
    merged = dict(headers or {})
    if reason is not None:
        merged["X-Status-Reason"] = _printable(reason)
    if body is None:
        raise HttpError(Response(status, b"", merged))
    raise HttpError(Response.json(body, status, merged))


def _printable(message: str) -> str:
    """``preg_replace('/[^[:print:]]/', ' ')`` on the UTF-8 bytes: every non-ASCII byte becomes a space."""
    return "".join(ch if " " <= ch <= "~" else " " * len(ch.encode("utf-8")) for ch in message)


def _intval(value: Any) -> int:
    """PHP ``intval`` of a query-string value."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    match = INT_PREFIX.match(str(value)) if value is not None else None
    return int(match.group()) if match else 0


def _validation_failure(entity: str, field_name: str, kind: str) -> NoReturn:
    """§8: 400 + ``validationFailure`` body."""
    _raise(400, f"Field validation failure; entityType: {entity}, field: {field_name}, type: {kind}.",
           {"messageTranslation": {"label": "validationFailure", "scope": None,
                                   "data": {"field": field_name, "type": kind}}})


def sniff_mime(content: bytes) -> str:
    """Content-based mime detection (the libmagic stand-in) for the types the image checks care about."""
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"GIF8"):
        return "image/gif"
    if content[4:12] in (b"ftypavif", b"ftypavis"):
        return "image/avif"
    if content.startswith(b"%PDF-"):
        return "application/pdf"
    head = content[:512].lstrip()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in content[:2048]):
        return "image/svg+xml"
    return "application/octet-stream"


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def guess_mime(name: str) -> str:
    ext = _extension(name)
    return IMAGE_MIME_BY_EXTENSION.get(ext) or OTHER_MIME_BY_EXTENSION.get(ext) or "application/octet-stream"


# ---------------------------------------------------------------------------------------------------
# Entity model


@dataclass(frozen=True)
class Relation:
    """A many-to-many link through a middle table; ``side`` 0 means this entity is the table's left column."""

    table: str
    foreign_entity: str
    side: int


@dataclass
class EntityType:
    name: str
    fields: dict[str, dict[str, Any]]
    links: dict[str, dict[str, Any]]
    relations: dict[str, Relation] = field(default_factory=dict)
    primary_filters: dict[str, Callable[[Mapping[str, Any]], bool]] = field(default_factory=dict)
    occ: bool = False
    attributes: dict[str, str] = field(default_factory=dict)  # attribute -> type (computed)
    foreign: dict[str, tuple[str, str]] = field(default_factory=dict)  # name attr -> (id attr, foreign entity)
    multiple: dict[str, str] = field(default_factory=dict)  # linkMultiple *Ids attr -> *Names attr
    writable: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.attributes["id"] = "id"
        self.attributes["deleted"] = "bool"
        for name, definition in self.fields.items():
            self._add_field(name, definition)

    def _add_field(self, name: str, definition: dict[str, Any]) -> None:
        kind = str(definition["type"])
        writable = not definition.get("readOnly")
        if kind in ("link", "file", "image"):
            self.attributes[name + "Id"] = "foreignId"
            self.attributes[name + "Name"] = "foreign"
            target = "Attachment" if kind in FILE_FIELD_TYPES else LINK_FOREIGN.get(name, "User")
            self.foreign[name + "Name"] = (name + "Id", target)
            if writable:
                self.writable.add(name + "Id")
        elif kind == "linkMultiple":
            if definition.get("noLoad"):
                return
            self.attributes[name + "Ids"] = "jsonArray"
            self.attributes[name + "Names"] = "jsonObject"
            self.multiple[name + "Ids"] = name + "Names"
            if writable and not definition.get("directUpdateDisabled"):
                self.writable.add(name + "Ids")
        else:
            self.attributes[name] = kind
            if writable and kind != "personName" and name not in SYSTEM_ATTRIBUTES:
                self.writable.add(name)

    def field_of(self, attribute: str) -> str | None:
        """The field an attribute belongs to (``fileId`` → ``file``)."""
        if attribute in self.fields:
            return attribute
        for suffix in ("Id", "Name", "Ids", "Names"):
            base = attribute.removesuffix(suffix)
            if base != attribute and base in self.fields:
                return base
        return None


class LinkTable:
    """A middle table with indexes both ways."""

    def __init__(self) -> None:
        self.left: dict[str, set[str]] = {}
        self.right: dict[str, set[str]] = {}

    def add(self, left: str, right: str) -> None:
        self.left.setdefault(left, set()).add(right)
        self.right.setdefault(right, set()).add(left)

    def remove(self, left: str, right: str) -> None:
        self.left.get(left, set()).discard(right)
        self.right.get(right, set()).discard(left)

    def of(self, record_id: str, side: int) -> set[str]:
        return set((self.left if side == 0 else self.right).get(record_id, set()))


class RecordView(Mapping[str, Any]):
    """A record's value map with foreign names resolved lazily (used by where and order)."""

    def __init__(self, emulator: EspoEmulator, etype: EntityType, record: dict[str, Any]) -> None:
        self._emulator = emulator
        self._etype = etype
        self.record = record

    def __getitem__(self, key: str) -> Any:
        kind = self._etype.attributes.get(key)
        if kind is None:
            raise KeyError(key)
        return self._emulator.attribute_value(self._etype, self.record, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._etype.attributes)

    def __len__(self) -> int:
        return len(self._etype.attributes)


@dataclass
class ListParams:
    max_size: int = MAX_SIZE_LIMIT
    offset: int = 0
    order_by: str | None = None
    order: str | None = None
    select: list[str] | None = None
    where: Any = None
    primary_filter: str | None = None
    bool_filters: list[str] = field(default_factory=list)
    text_filter: str | None = None
    no_total: bool = False
    short: bool = False  # the emulator's ``short_pages``: a page of about half maxSize while more exist


# ---------------------------------------------------------------------------------------------------
# The emulator


class EspoEmulator(EmulatorBase):
    """EspoCRM with Document/Account/Contact/Attachment, one API user, and a seed/inspection API for tests.

    ``secret_key`` makes the API user an HMAC user; ``optimistic_concurrency`` enables ``versionNumber`` on
    Document; ``field_names`` maps docsync's logical custom-field names to attribute names (``"preview"`` maps the
    image *field*, e.g. ``"cPreview"`` → ``cPreviewId``); ``auth_max_failed_attempts`` (0 = off) is §1.4's limit.
    ``document_fields`` are the custom Document field definitions by logical name (default: the design
    document's, :data:`~docsync_sandbox.crm_profiles.DESIGN_DOC_FIELDS`); ``max_size_limit`` is the
    config value ``recordListMaxSizeLimit`` (§10.4).
    """

    def __init__(
        self,
        *,
        api_key: str = "espo-demo-key",
        secret_key: str | None = None,
        optimistic_concurrency: bool = False,
        field_names: dict[str, str] | None = None,
        clock: Callable[[], datetime] | None = None,
        max_upload_bytes: int = 256 * 1024 * 1024,
        auth_max_failed_attempts: int = 10,
        document_fields: Mapping[str, dict[str, Any]] | None = None,
        max_size_limit: int = MAX_SIZE_LIMIT,
        accounts_load: bool = False,
        global_stream: bool = False,
        date_skew: float = 0.0,
        account_read: str = "all",
        account_stream: str = "all",
        document_read: str = "all",
        relate_note_dedup: bool = False,
        read_only_fields: Iterable[str] = (),
        count_disabled: bool = False,
        short_pages: bool = False,
        version: str | None = None,
    ) -> None:
        super().__init__()
        self.role = Role(account_read, account_stream, global_stream, set(read_only_fields), document_read)
        self.role.check()
        self.date_skew = date_skew  # seconds the HTTP ``Date`` clock is ahead of the ``modifiedAt`` clock
        self.count_disabled = count_disabled  # entityDefs.Document.collection.countDisabled (§11.2)
        self.short_pages = short_pages  # pages shorter than maxSize while more exist, ``total: -1`` (§11.2)
        self.hidden_documents: set[str] = set()  # Documents the API user's role may not read (hide_document)
        self.version = version or ("9.0.3" if relate_note_dedup else "9.2.7")  # App/user settings.version
        self.app_timestamp = int(time.time())  # config ``appTimestamp``: a build stamp, not the time (§11.1)
        self.document_fields = copy.deepcopy(dict(document_fields if document_fields is not None
                                                  else DESIGN_DOC_FIELDS))
        self.max_size_limit = max_size_limit
        self.accounts_load = accounts_load  # the admin's ``noLoad: false`` override on Document.accounts (§10.6)
        self.api_key = api_key
        self.secret_key = secret_key
        self.optimistic_concurrency = optimistic_concurrency
        self.field_names = dict(field_names or {})
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_upload_bytes = max_upload_bytes
        self.auth_max_failed_attempts = auth_max_failed_attempts
        self._auth_failures: deque[float] = deque()
        self._last_id_base = 0
        self.api_user_id = self._new_id()
        self.human_user_id = self._new_id()
        self.names: dict[str, dict[str, str]] = {
            "User": {ADMIN_ID: "Admin", self.api_user_id: "docsync API", self.human_user_id: "Maria Muster"},
            "Team": {},
            "DocumentFolder": {},
        }
        self.entities = self._build_entities()
        self.records: dict[str, CiTable] = {name: CiTable() for name in self.entities}
        self.blobs: dict[str, bytes] = {}
        self.link_tables: dict[str, LinkTable] = {"documentAccount": LinkTable(), "contactDocument": LinkTable()}
        self.stream = StreamNotes(self._new_id, self._now)
        self.stream.dedupe_pairs = relate_note_dedup
        self.index = DocumentIndex(self.attr("dateiStatus"), self.attr("xaiSyncStatus"))  # used when ``use_index``
        self.use_index = False
        self.app = self.new_app("espocrm")
        self.app.date_clock = lambda: self.clock().timestamp() + self.date_skew
        self._register_routes()

    # -- the role and server settings tests flip at run time ------------------------------------------

    @property
    def global_stream(self) -> bool:
        """The API user's role has the GlobalStream scope (§10.7)."""
        return self.role.global_stream

    @global_stream.setter
    def global_stream(self, value: bool) -> None:
        self.role.global_stream = value

    @property
    def account_read(self) -> str:
        """The role's Account read level: "all", "own" (assigned to the API user) or "no"."""
        return self.role.account_read

    @account_read.setter
    def account_read(self, value: str) -> None:
        self.role.account_read = value
        self.role.check()

    @property
    def account_stream(self) -> str:
        """The role's Account stream level: GlobalStream shows Relate/Unrelate notes only of Accounts the role
        may stream (§11.2)."""
        return self.role.account_stream

    @account_stream.setter
    def account_stream(self, value: str) -> None:
        self.role.account_stream = value
        self.role.check()

    @property
    def document_read(self) -> str:
        """The role's Document read (and edit) level as ``App/user`` shows it: "all", "team" or "own". Which
        records the role cannot see is :meth:`hide_document`'s; hiding one makes an "all" role "team"."""
        return self.role.document_read

    @document_read.setter
    def document_read(self, value: str) -> None:
        self.role.document_read = value
        self.role.check()

    @property
    def read_only_fields(self) -> set[str]:
        """Document fields (or attributes) the role may read but not edit; a PUT drops them silently (§11.2)."""
        return self.role.read_only_fields

    @read_only_fields.setter
    def read_only_fields(self, value: Iterable[str]) -> None:
        self.role.read_only_fields = set(value)

    @property
    def relate_note_dedup(self) -> bool:
        """EspoCRM 8.4.0-9.0.x: no second Relate/Unrelate note for a pair that already has one (§10.7)."""
        return self.stream.dedupe_pairs

    @relate_note_dedup.setter
    def relate_note_dedup(self, value: bool) -> None:
        self.stream.dedupe_pairs = value
        if self.version in ("9.0.3", "9.2.7"):  # the defaults follow (App/user settings.version)
            self.version = "9.0.3" if value else "9.2.7"

    # -- naming ------------------------------------------------------------------------------------

    def attr(self, logical: str) -> str:
        """The real attribute name of one of docsync's logical custom fields."""
        return self.field_names.get(logical, logical)

    def _default(self, logical: str) -> Any:
        """A new record's value of a custom field: its ``default``, else null (what the database holds)."""
        return copy.deepcopy(self.document_fields.get(logical, {}).get("default"))

    @property
    def preview_field(self) -> str:
        if "preview" in self.field_names:
            return self.field_names["preview"]
        if "previewId" in self.field_names:
            return self.field_names["previewId"].removesuffix("Id")
        return "preview"

    @property
    def url(self) -> str:  # type: ignore[override]  # one listener only, so a property, not url(listener)
        return self.listeners["espocrm"].url

    def error_response(self, status: int, message: str) -> Response:
        if status == 401:
            return Response(401)
        return Response(status, b"", {"X-Status-Reason": _printable(message)})

    # -- metadata ----------------------------------------------------------------------------------

    def _build_entities(self) -> dict[str, EntityType]:
        return {
            "Document": EntityType(
                "Document", self._document_fields(), self._document_links(),
                relations={"accounts": Relation("documentAccount", "Account", 0),
                           "contacts": Relation("contactDocument", "Contact", 1)},
                primary_filters={"active": lambda r: r.get("status") in ("Active",),
                                 "draft": lambda r: r.get("status") == "Draft"},
                occ=self.optimistic_concurrency),
            "Account": EntityType(
                "Account", self._company_fields({"name": {"type": "varchar", "required": True, "maxLength": 249}}),
                {"documents": {"type": "hasMany", "entity": "Document", "foreign": "accounts",
                               "relationName": "documentAccount"}},
                relations={"documents": Relation("documentAccount", "Document", 1)}),
            "Contact": EntityType(
                "Contact", self._company_fields({
                    "name": {"type": "personName"},
                    "firstName": {"type": "varchar", "maxLength": 100},
                    "lastName": {"type": "varchar", "maxLength": 100, "required": True}}),
                {"documents": {"type": "hasMany", "entity": "Document", "foreign": "contacts",
                               "relationName": "contactDocument"}},
                relations={"documents": Relation("contactDocument", "Document", 0)}),
            "Attachment": EntityType("Attachment", ATTACHMENT_FIELDS, {}),
        }

    def _company_fields(self, base: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        fields = dict(base)
        fields[self.attr("xaiCollectionId")] = {"type": "varchar", "maxLength": 100, "isCustom": True}
        fields["createdAt"] = {"type": "datetime", "readOnly": True}
        fields["modifiedAt"] = {"type": "datetime", "readOnly": True}
        return fields

    def _document_fields(self) -> dict[str, dict[str, Any]]:
        fields: dict[str, dict[str, Any]] = {
            "name": {"type": "varchar", "required": True, "maxLength": 255, "pattern": "$noBadCharacters"},
            "file": {"type": "file", "required": True, "accept": list(DOCUMENT_ACCEPT)},
            "status": {"type": "enum", "options": ["Draft", "Active", "Canceled", "Expired"],
                       "default": "Active", "activeOptions": ["Active"]},
            "type": {"type": "enum", "options": ["", "Contract", "NDA", "EULA", "License Agreement"],
                     "default": ""},
            "publishDate": {"type": "date", "required": True},
            "expirationDate": {"type": "date", "after": "publishDate"},
            "description": {"type": "text"},
            "createdAt": {"type": "datetime", "readOnly": True},
            "modifiedAt": {"type": "datetime", "readOnly": True},
            "createdBy": {"type": "link", "readOnly": True},
            "modifiedBy": {"type": "link", "readOnly": True},
            "assignedUser": {"type": "link"},
            "teams": {"type": "linkMultiple"},
            "accounts": {"type": "linkMultiple", "noLoad": not self.accounts_load, "directUpdateDisabled": True,
                         "layoutDetailDisabled": True, "layoutListDisabled": True},
            "folder": {"type": "link"},
        }
        if self.optimistic_concurrency:
            fields["versionNumber"] = {"type": "int", "readOnly": True, "notStorable": False}
        for logical, definition in self.document_fields.items():
            name = self.preview_field if logical == "preview" else self.attr(logical)
            fields[name] = {**copy.deepcopy(definition), "isCustom": True}
        return fields

    def _document_links(self) -> dict[str, dict[str, Any]]:
        links: dict[str, dict[str, Any]] = {
            "accounts": {"type": "hasMany", "entity": "Account", "foreign": "documents",
                         "relationName": "documentAccount"},
            "contacts": {"type": "hasMany", "entity": "Contact", "foreign": "documents",
                         "relationName": "contactDocument"},
            "leads": {"type": "hasMany", "entity": "Lead", "foreign": "documents", "relationName": "documentLead"},
            "opportunities": {"type": "hasMany", "entity": "Opportunity", "foreign": "documents",
                              "relationName": "documentOpportunity"},
            "teams": {"type": "hasMany", "entity": "Team", "relationName": "entityTeam"},
            "folder": {"type": "belongsTo", "entity": "DocumentFolder", "foreign": "documents"},
            "assignedUser": {"type": "belongsTo", "entity": "User"},
            "createdBy": {"type": "belongsTo", "entity": "User"},
            "modifiedBy": {"type": "belongsTo", "entity": "User"},
            "file": {"type": "belongsTo", "entity": "Attachment", "skipOrmDefs": True},
        }
        links[self.preview_field] = {"type": "belongsTo", "entity": "Attachment", "skipOrmDefs": True}
        return links

    def metadata(self) -> dict[str, Any]:
        """The (non-admin) metadata tree served by ``GET Metadata``."""
        entity_defs: dict[str, Any] = {}
        for name, etype in self.entities.items():
            defs: dict[str, Any] = {"fields": copy.deepcopy(etype.fields), "links": copy.deepcopy(etype.links),
                                    "collection": {"orderBy": "createdAt", "order": "desc",
                                                   "textFilterFields": ["name"]}}
            if name == "Document":
                defs["collection"]["countDisabled"] = self.count_disabled  # readable by the API user (§11.2)
            if etype.occ:
                defs["optimisticConcurrencyControl"] = True
            entity_defs[name] = defs
        scopes = {name: {"entity": True, "object": name != "Attachment", "acl": name != "Attachment"}
                  for name in self.entities}
        return {"entityDefs": entity_defs, "scopes": scopes,
                "app": {"image": {"allowedFileTypeList": list(ALLOWED_IMAGE_TYPES)}}}

    # -- ids, time, values -------------------------------------------------------------------------

    def _new_id(self) -> str:
        """17 lowercase hex chars: ``uniqid()`` (8 hex seconds + 5 hex microseconds) + 4 random hex; increasing."""
        micros = time.time_ns() // 1000
        seconds, fraction = divmod(micros, 1_000_000)
        base = max((seconds << 20) | fraction, self._last_id_base + 1)
        self._last_id_base = base
        return f"{base:013x}{secrets.randbelow(0x10000):04x}"

    def _now(self) -> str:
        return self.clock().astimezone(UTC).strftime(DATETIME_FORMAT)

    def attribute_value(self, etype: EntityType, record: dict[str, Any], attribute: str) -> Any:
        if attribute in etype.foreign:
            id_attr, target = etype.foreign[attribute]
            return self._foreign_name(target, record.get(id_attr))
        if attribute in etype.multiple:
            link = attribute.removesuffix("Ids")
            if link in etype.relations:  # accountsIds with the noLoad override (§10.6)
                return sorted(self._linked_ids(etype, record, link))
            return list(record.get(attribute) or [])
        if etype.attributes.get(attribute) == "jsonObject":
            link = attribute.removesuffix("Names")
            if link in etype.relations:
                foreign = self.records[etype.relations[link].foreign_entity]
                return {i: foreign.get(i, {}).get("name") for i in sorted(self._linked_ids(etype, record, link))}
            return {i: self.names["Team"].get(i) for i in record.get(link + "Ids") or []}
        return record.get(attribute)

    def _foreign_name(self, target: str, foreign_id: Any) -> str | None:
        if foreign_id is None:
            return None
        if target == "Attachment":
            attachment = self.records["Attachment"].get(str(foreign_id))
            return None if attachment is None or attachment["deleted"] else str(attachment["name"])
        return self.names.get(target, {}).get(str(foreign_id))

    def _values(self, etype: EntityType, record: dict[str, Any], *, multiple: bool = True,
                select: list[str] | None = None) -> dict[str, Any]:
        """The API value map: all attributes (link-multiple only when loaded) or the selected ones."""
        names = select if select is not None else [
            a for a in etype.attributes
            if multiple or (a not in etype.multiple and etype.attributes[a] != "jsonObject")]
        out = {a: copy.deepcopy(self.attribute_value(etype, record, a)) for a in names}
        if select is not None:
            for attribute in select:
                if etype.attributes.get(attribute) == "text" and isinstance(out[attribute], str):
                    out[attribute] = out[attribute][:TEXT_LIST_LIMIT]
        return out

    def _linked_ids(self, etype: EntityType, record: Mapping[str, Any], link: str) -> set[str]:
        relation = etype.relations.get(link)
        if relation is not None:
            return self.link_tables[relation.table].of(str(record["id"]), relation.side)
        if link + "Ids" in etype.multiple:
            return set(record.get(link + "Ids") or [])
        value = record.get(link + "Id")
        return {str(value)} if value else set()

    # -- auth (§1) ---------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> None:
        with self.lock:
            now = time.monotonic()
            while self._auth_failures and now - self._auth_failures[0] > FAILED_ATTEMPTS_PERIOD:
                self._auth_failures.popleft()
            limit = self.auth_max_failed_attempts
            if limit and len(self._auth_failures) >= limit:
                raise HttpError(Response(403))  # §1.4: empty body, no reason header
            outcome = self._check_credentials(request)
            if outcome is None:
                headers = {}
                if (request.method != "POST" and request.header("Referer") is None
                        and (request.header("X-Requested-With") or "").lower() != "xmlhttprequest"):
                    headers["WWW-Authenticate"] = 'Basic realm=""'
                raise HttpError(Response(401, b"", headers))
            if not outcome:
                self._auth_failures.append(now)
                raise HttpError(Response(401))

    def _check_credentials(self, request: Request) -> bool | None:
        """True = authenticated, False = bad credentials, None = no credentials sent."""
        espo = request.header("Espo-Authorization")
        if espo is not None:
            try:
                decoded = base64.b64decode(espo).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                decoded = ""
            if ":" not in decoded:
                _raise(400, "Auth: Bad authorization string provided.")
            return False  # API users cannot log in with a username/password
        api_key = request.header("X-Api-Key")
        if api_key is not None:
            return self.secret_key is None and hmac.compare_digest(api_key.encode(), self.api_key.encode())
        signature = request.header("X-Hmac-Authorization")
        if signature is not None:
            return self._check_hmac(request, signature)
        if request.header("Authorization") is not None:
            return False
        return None

    def _check_hmac(self, request: Request, header: str) -> bool:
        if self.secret_key is None:
            return False
        try:
            decoded = base64.b64decode(header)
        except (binascii.Error, ValueError):
            return False
        key, sep, digest = decoded.partition(b":")
        if not sep or not hmac.compare_digest(key, self.api_key.encode()):
            return False
        path = request.raw_path.split("?", 1)[0]
        resource = path[len(API):] if path.startswith(API) else path
        message = f"{request.method} {resource}".encode()
        mac = hmac.new(self.secret_key.encode(), message, hashlib.sha256)
        return hmac.compare_digest(digest, mac.hexdigest().encode()) or hmac.compare_digest(digest, mac.digest())

    # -- routing -----------------------------------------------------------------------------------

    def _register_routes(self) -> None:
        entity = r"(?P<entity>[A-Za-z][A-Za-z0-9]*)"
        rid = r"(?P<rid>[^/]+)"
        table: list[tuple[str, str, Callable[..., Response]]] = [
            ("GET", "/App/user", self._get_app_user),
            ("GET", "/Metadata", self._get_metadata),
            ("GET", "/GlobalStream", self._get_global_stream),
            ("POST", "/Attachment", self._post_attachment),
            ("GET", "/Attachment/file/" + rid, self._get_attachment_file),
            ("GET", f"/{entity}", self._get_list),
            ("POST", f"/{entity}", self._create_record),
            ("GET", f"/{entity}/{rid}", self._get_record),
            ("PUT", f"/{entity}/{rid}", self._update_record),
            ("PATCH", f"/{entity}/{rid}", self._update_record),
            ("DELETE", f"/{entity}/{rid}", self._delete_record),
            ("GET", f"/{entity}/{rid}/(?P<link>[A-Za-z][A-Za-z0-9]*)", self._get_related),
            ("POST", f"/{entity}/{rid}/(?P<link>[A-Za-z][A-Za-z0-9]*)", self._link_request),
            ("DELETE", f"/{entity}/{rid}/(?P<link>[A-Za-z][A-Za-z0-9]*)", self._link_request),
        ]
        for method, pattern, handler in table:
            self.app.route(method, API + pattern)(self._guarded(handler))

    def _guarded(self, handler: Callable[..., Response]) -> Callable[..., Response]:
        def run(request: Request, **params: str) -> Response:
            self._authenticate(request)
            with self.lock:
                return handler(request, **params)

        return run

    def _ok(self, obj: Any, headers: dict[str, str] | None = None) -> Response:
        merged = {"X-App-Timestamp": str(self.app_timestamp), "Expires": "0",
                  "Last-Modified": formatdate(self.clock().timestamp() + self.date_skew, usegmt=True),
                  "Cache-Control": "no-store, no-cache, must-revalidate, post-check=0, pre-check=0, max-age=0",
                  "Pragma": "no-cache"}
        merged.update(headers or {})
        return Response.json(obj, headers=merged)

    def _entity(self, name: str) -> EntityType:
        etype = self.entities.get(name)
        if etype is None:
            _raise(404, f"Controller '{name}' does not exist.")
        return etype

    def _live(self, entity: str, record_id: str) -> dict[str, Any] | None:
        """The record with this id (any case: the id column compares case-insensitively), unless deleted."""
        record = self.records[entity].get(record_id)
        return None if record is None or record["deleted"] else record

    def _readable(self, entity: str, record: Mapping[str, Any]) -> bool:
        """Record-level read access of the API user's role."""
        if entity == "Document":
            return str(record["id"]) not in self.hidden_documents
        if entity == "Account":
            return self.role.account_readable(record, self.api_user_id)
        return True

    def _scope_level(self, entity: str, action: str) -> str:
        """The role's scope level for an action ("all", "own", "yes", "no")."""
        table = self.role.acl({})["table"].get(entity)
        if not isinstance(table, dict):
            return "all" if entity not in ("Attachment",) else "no"
        return str(table.get(action, "no"))

    def _visible(self, entity: str, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """What a list shows the API user: live records the role may read (access control in the query)."""
        return (r for r in records if not r["deleted"] and self._readable(entity, r))

    # -- App/user, Metadata (§6.3, §7.2) -----------------------------------------------------------

    def _get_app_user(self, request: Request) -> Response:
        method = "Hmac" if self.secret_key is not None else "ApiKey"
        return self._ok({
            "user": {"id": self.api_user_id, "name": "docsync API", "userName": "docsync-api", "type": "api",
                     "isActive": True, "authMethod": method},
            "acl": self.role.acl(self.entities["Document"].fields),
            "preferences": {"timeZone": "UTC", "language": "en_US"},
            "token": None,
            "settings": {"recordListMaxSizeLimit": self.max_size_limit, "timeZone": "UTC", "version": self.version},
            "language": "en_US",
            "appParams": {"maxUploadSize": self.max_upload_bytes // (1024 * 1024)},
        })

    def _get_metadata(self, request: Request) -> Response:
        node: Any = self.metadata()
        key = request.arg("key")
        if key:
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
        if node is None:  # §10.2: the action returns null and the processor writes no body
            return Response(200, b"", self._ok(None).headers)  # still labelled application/json
        return self._ok(node)

    # -- lists (§2, §4.1) --------------------------------------------------------------------------

    def _get_list(self, request: Request, entity: str) -> Response:
        etype = self._entity(entity)
        if entity == "Attachment":
            _raise(403, "")
        if self._scope_level(entity, "read") == "no":
            _raise(403, "No read access.")
        params = self._list_params(request)
        params.no_total = params.no_total or (request.header("X-No-Total", "") or "").lower() == "true"
        if entity == "Document" and self.count_disabled:  # "Disable record count": -1/-2 whatever is asked
            params.no_total = True
        params.short = self.short_pages
        if entity == "Document" and self.use_index:
            answer = self._find_indexed(etype, params)
            if answer is not None:
                return self._ok(answer)
        return self._ok(self._find(etype, self._visible(entity, self.records[entity].values()), params))

    def _find_indexed(self, etype: EntityType, params: ListParams) -> dict[str, Any] | None:
        """Document lists through :class:`DocumentIndex` (the benchmark's million records); the same answer as
        :meth:`_find`, or None when no index applies."""
        table = self.records["Document"]
        plain = not (params.primary_filter or params.bool_filters or params.text_filter)
        bounds = self.index.id_bounds(params.where) if plain and not self.hidden_documents else None
        if bounds is not None:
            order_attr, descending = self._order(etype, params)
            if order_attr == "id" and not descending:
                start, stop = bounds
                offset, limit = max(params.offset, 0), max(params.max_size, 0)
                more = stop - start > offset + limit and limit > 0  # maxSize 0: -2 (no +1 row is fetched)
                length = _page_length(limit, more, params.short)
                page = self.index.ids[start + offset: min(stop, start + offset + length)]
                select = self._select(etype, params, "id")
                items = [self._values(etype, table[self.index.stored[key]], multiple=False, select=select)
                         for key in page]
                uncounted = params.no_total or params.short
                return {"total": (-1 if more else -2) if uncounted else stop - start, "list": items}
        relation = etype.relations

        def linked(link: str, ids: list[str]) -> set[str]:
            if link not in relation:
                return set()
            side = 1 - relation[link].side
            found: set[str] = set()
            for foreign_id in ids:
                found |= self.link_tables[relation[link].table].of(foreign_id, side)
            return found

        candidates = self.index.narrow(params.where, linked)
        if candidates is None:
            return None
        return self._find(etype, self._visible("Document", (table[i] for i in candidates)), params)

    def _get_global_stream(self, request: Request) -> Response:
        """§10.7: needs the GlobalStream scope; newest first; ``where``, ``after``, ``beforeNumber``."""
        if not self.global_stream:
            _raise(403)
        params = self._list_params(request)
        if params.offset:
            _raise(400, "Offset is not supported.")
        before = request.arg("beforeNumber")
        scope = WhereScope(NOTE_ATTRIBUTES, [], lambda record, link: set(), self.clock().astimezone(UTC))
        try:
            answer = self.stream.query(params.where, _str_or_none(request.arg("after")),
                                       _intval(before) if before else None, max(params.max_size, 0), scope,
                                       {"Account"} if self.role.streams_accounts() else set(), self._note_access)
        except WhereError as exc:
            _raise(400, str(exc))
        return self._ok(answer)

    def _note_access(self, note: Mapping[str, Any]) -> bool:
        """GlobalRecordService ``checkAccess``: the parent exists (not deleted) and the role may stream it."""
        if note.get("parentType") != "Account":
            return note.get("parentType") is None
        parent = self._live("Account", str(note.get("parentId")))
        return parent is not None and self.role.account_streamable(parent, self.api_user_id)

    def _link_request(self, request: Request, entity: str, rid: str, link: str) -> Response:
        """``POST``/``DELETE {Entity}/{id}/{link}``: needs edit access on both records; the role edits no
        Account or Contact, so every link change of the API user is refused (§11.1)."""
        etype = self._entity(entity)
        if self._scope_level(entity, "edit") == "no":
            _raise(403, "No edit access.")
        parent = self._live(entity, rid)
        if parent is None:
            _raise(404, "")
        if not self._readable(entity, parent):
            _raise(403, "No edit access.")
        relation = etype.relations.get(link)
        if link not in etype.links or relation is None:
            _raise(404, "Link does not exist.")
        if self._scope_level(relation.foreign_entity, "edit") == "no":
            _raise(403, f"No foreign record access for link operation ({entity}:{link}).",
                   {"messageTranslation": {"label": "noAccessToForeignRecord", "scope": None,
                                           "data": {"action": "edit"}}})
        _raise(403, "No edit access.")  # the emulated role edits no foreign entity type

    def _create_record(self, request: Request, entity: str) -> Response:
        """The API user's role creates no records (Document/Account create "no")."""
        self._entity(entity)
        _raise(403, "No create access.")

    def _get_related(self, request: Request, entity: str, rid: str, link: str) -> Response:
        etype = self._entity(entity)
        if link == "stream" and entity == "Document":  # Document has no stream (scopes.Document.stream false)
            parent = self._live(entity, rid)
            if parent is None:
                _raise(404, "")
            return self._ok({"total": 0, "list": [], "pinnedList": []})
        if self._scope_level(entity, "read") == "no":
            _raise(403, "No access.")
        parent = self._live(entity, rid)
        if parent is None or entity == "Attachment":
            _raise(404, "")
        if not self._readable(entity, parent):
            _raise(403, "No read access.")
        if link not in etype.links:
            _raise(404, "Link does not exist.")
        relation = etype.relations.get(link)
        if relation is None:
            return self._ok({"total": 0, "list": []})
        foreign = self.entities[relation.foreign_entity]
        if self._scope_level(foreign.name, "read") == "no":
            _raise(403, "")
        ids = self.link_tables[relation.table].of(str(parent["id"]), relation.side)
        records = self._visible(foreign.name, (r for i in ids if (r := self.records[foreign.name].get(i))))
        params = self._list_params(request)
        params.no_total = False  # X-No-Total is not honoured here (§4.1)
        return self._ok(self._find(foreign, records, params))

    def _list_params(self, request: Request) -> ListParams:
        raw_json = request.arg("searchParams")
        if raw_json is not None:
            return self._json_list_params(raw_json)
        raw = parse_php_query(request.query)
        params = ListParams(max_size=self.max_size_limit)
        if raw.get("maxSize") is not None:
            params.max_size = _intval(raw["maxSize"])
        params.offset = _intval(raw.get("offset"))
        params.order_by = _str_or_none(raw.get("orderBy", raw.get("sortBy")))
        params.order = _str_or_none(raw.get("order"))
        if params.order is None and raw.get("asc") is not None:
            params.order = "asc" if str(raw["asc"]).lower() in ("true", "1") else "desc"
        select = raw.get("select", raw.get("attributeSelect"))
        if isinstance(select, str) and select:
            params.select = select.split(",")
        return self._finish_list_params(params, raw)

    def _finish_list_params(self, params: ListParams, raw: Mapping[str, Any]) -> ListParams:
        """The parameters both spellings (query string and ``searchParams`` JSON) read the same way."""
        params.where = raw.get("where", raw.get("whereGroup"))
        params.primary_filter = _str_or_none(raw.get("primaryFilter"))
        params.bool_filters = _as_str_list(raw.get("boolFilterList"))
        params.text_filter = _str_or_none(raw.get("textFilter", raw.get("q")))
        params.no_total = raw.get("q") is not None
        self._check_max_size(params)
        return params

    def _json_list_params(self, text: str) -> ListParams:
        try:
            raw = json.loads(text)
        except ValueError:
            _raise(400, "Invalid search params JSON.")
        if not isinstance(raw, dict):
            _raise(400, "Invalid search params JSON.")
        params = ListParams(max_size=self.max_size_limit)
        for key, attr in (("maxSize", "max_size"), ("offset", "offset")):
            value = raw.get(key)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                _raise(400, f"{key} must be integer.")
            setattr(params, attr, value)
        select = raw.get("select", raw.get("attributeSelect"))
        if select is not None and not isinstance(select, list):
            _raise(400, "select must be array.")
        params.select = [str(s) for s in select] if select is not None else None
        params.order_by = _str_or_none(raw.get("orderBy", raw.get("sortBy")))
        params.order = _str_or_none(raw.get("order"))
        return self._finish_list_params(params, raw)

    def _check_max_size(self, params: ListParams) -> None:
        """§10.3/§10.4: a data error answered with 403 and the reason."""
        if params.max_size > self.max_size_limit:
            _raise(403, f"Max size should not exceed {self.max_size_limit}. Use offset and limit.")

    def _find(self, etype: EntityType, records: Iterable[dict[str, Any]], params: ListParams) -> dict[str, Any]:
        predicate = self._filters(etype, params)
        order_attr, descending = self._order(etype, params)
        if order_attr == "id" and not descending and (params.no_total or params.short):
            return self._find_by_id(etype, records, params, predicate)
        views = [view for r in records if predicate(view := RecordView(self, etype, r))]
        views.sort(key=lambda v: id_key(v.record["id"]), reverse=descending)  # utf8mb4_unicode_ci (§11.2)
        if order_attr != "id":
            views.sort(key=lambda v: _sort_key(v.get(order_attr)), reverse=descending)
        limit = max(params.max_size, 0)
        offset = max(params.offset, 0)
        has_more = len(views) > offset + limit and limit > 0  # maxSize 0: -2 (no +1 row is fetched)
        page = views[offset: offset + _page_length(limit, has_more, params.short)]
        select = self._select(etype, params, order_attr)
        items = [self._values(etype, v.record, multiple=False, select=select) for v in page]
        total = (-1 if has_more else -2) if params.no_total or params.short else len(views)
        return {"total": total, "list": items}

    def _find_by_id(self, etype: EntityType, records: Iterable[dict[str, Any]], params: ListParams,
                    predicate: Callable[[Mapping[str, Any]], bool]) -> dict[str, Any]:
        """The primary-key index path a database takes for ``orderBy=id`` without a count: start at the
        ``greaterThan id`` cursor, stop after one record past the page. Same answer as the general path."""
        ordered = sorted(records, key=lambda r: id_key(r["id"]))
        ids = [id_key(r["id"]) for r in ordered]
        start = 0
        for item in params.where if isinstance(params.where, list) else []:
            if (isinstance(item, dict) and item.get("type") == "greaterThan"
                    and item.get("attribute", item.get("field")) == "id" and isinstance(item.get("value"), str)):
                start = max(start, bisect.bisect_right(ids, id_key(item["value"])))
        limit = max(params.max_size, 0)
        offset = max(params.offset, 0)
        matched: list[RecordView] = []
        for record in ordered[start:]:
            view = RecordView(self, etype, record)
            if predicate(view):
                matched.append(view)
                if len(matched) > offset + limit:
                    break
        has_more = len(matched) > offset + limit and limit > 0
        page = matched[offset: offset + _page_length(limit, has_more, params.short)]
        select = self._select(etype, params, "id")
        items = [self._values(etype, v.record, multiple=False, select=select) for v in page]
        return {"total": -1 if has_more else -2, "list": items}

    def _filters(self, etype: EntityType, params: ListParams) -> Callable[[Mapping[str, Any]], bool]:
        scope = WhereScope(etype.attributes, list(etype.links),
                           lambda record, link: self._linked_ids(etype, record, link),
                           self.clock().astimezone(UTC))
        try:
            where = compile_where(params.where, scope)
        except WhereError as exc:
            _raise(400, str(exc))
        checks = [where]
        if params.primary_filter:
            primary = etype.primary_filters.get(params.primary_filter)
            if primary is None:
                _raise(400, f"No primary filter '{params.primary_filter}' for '{etype.name}'.")
            checks.append(primary)
        for name in params.bool_filters:
            if name != "onlyMy" or "assignedUserId" not in etype.attributes:
                _raise(400, f"No bool filter '{name}' for '{etype.name}'.")
            checks.append(lambda r: r.get("assignedUserId") == self.api_user_id)
        if params.text_filter:
            pattern = _text_filter_regex(params.text_filter)
            checks.append(lambda r: pattern.match(str(r.get("name") or "")) is not None)
        return lambda record: all(check(record) for check in checks)

    def _order(self, etype: EntityType, params: ListParams) -> tuple[str, bool]:
        order = params.order
        if order is not None and order.lower() not in ("asc", "desc"):
            _raise(400, "order value is bad.")
        if params.order_by is None:
            return "createdAt", (order or "desc").lower() == "desc"
        name = params.order_by
        definition = etype.fields.get(name)
        if definition is not None and definition["type"] in ("link", "file", "image"):
            name += "Name"
        if "." in name or ":" in name or name not in etype.attributes:
            _raise(400, f"Order by non-existing field '{params.order_by}'.")
        return name, (order or "asc").lower() == "desc"

    @staticmethod
    def _select(etype: EntityType, params: ListParams, order_attr: str) -> list[str] | None:
        if params.select is None:
            return None
        wanted = ["id", *params.select, "assignedUserId", "createdById", order_attr]
        result: list[str] = []
        for attribute in wanted:
            if attribute in etype.attributes and attribute not in result:
                result.append(attribute)
        return result

    # -- read / update / delete (§3) ---------------------------------------------------------------

    def _get_record(self, request: Request, entity: str, rid: str) -> Response:
        etype = self._entity(entity)
        if self._scope_level(entity, "read") == "no":
            _raise(403, "No read access.")
        record = self._live(entity, rid)
        if record is None:
            _raise(404, f"Record {rid} does not exist.")
        if not self._readable(entity, record):
            _raise(403, "No 'read' access.")  # §11: a record hidden from the role is 403, not 404
        return self._ok(self._values(etype, record))

    def _delete_record(self, request: Request, entity: str, rid: str) -> Response:
        self._entity(entity)
        if self._scope_level(entity, "delete") == "no":
            _raise(403, "No delete access.")  # the role deletes nothing; checked before the record is looked up
        record = self._live(entity, rid)
        if record is None:
            _raise(404, f"Record {rid} not found.")
        self._soft_delete(entity, record)
        return self._ok(True)

    def _soft_delete(self, entity: str, record: dict[str, Any]) -> None:
        before = self.index.key(record) if entity == "Document" else None
        record["deleted"] = True
        if before is not None:
            self.index.update(str(record["id"]), before, self.index.key(record))
        if entity == "Attachment":
            self.blobs.pop(str(record["id"]), None)

    def _update_record(self, request: Request, entity: str, rid: str) -> Response:
        etype = self._entity(entity)
        if self._scope_level(entity, "edit") == "no":
            _raise(403, "No edit access.")
        data = self._json_body(request)
        record = self._live(entity, rid)
        if record is None:
            _raise(404, f"Record {rid} not found.")
        if not self._readable(entity, record):
            _raise(403, "No edit access.")
        data = self._filter_input(etype, data)
        if entity == "Document":  # field-level ACL: a field the role may not edit is dropped, 200 (§11.2)
            data = {a: v for a, v in data.items() if not self.role.edit_forbidden(a, etype.fields)}
        self._check_concurrency(etype, record, data, request.header("X-Version-Number"))
        self._validate(etype, data)
        self._check_links(etype, data)
        changed = self._save(etype, record, data, self.api_user_id)
        headers = {"X-Record-Link-Updated": "true"} if any(a in etype.multiple for a in changed) else None
        return self._ok(self._values(etype, record), headers)

    def _json_body(self, request: Request) -> dict[str, Any]:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json" or not request.body.strip():
            return {}
        try:
            data = json.loads(request.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise HttpError(Response(500)) from None
        if isinstance(data, list):
            return {"list": data}
        if not isinstance(data, dict):
            _raise(400, "Body is not a JSON object.")
        return data

    @staticmethod
    def _filter_input(etype: EntityType, data: dict[str, Any]) -> dict[str, Any]:
        """Drop system, read-only, foreign-name and unknown attributes; trim varchars (sanitizer)."""
        result: dict[str, Any] = {}
        for attribute, value in data.items():
            if attribute not in etype.writable:
                continue
            kind = etype.attributes.get(attribute)
            result[attribute] = value.strip() if kind == "varchar" and isinstance(value, str) else value
        return result

    def _check_concurrency(self, etype: EntityType, record: dict[str, Any], data: dict[str, Any],
                           header: str | None) -> None:
        if not etype.occ or header is None or header.strip() == "":
            return
        current = int(record.get("versionNumber") or 0)
        if _intval(header) == current:
            return
        differing = {a: copy.deepcopy(record.get(a)) for a, v in data.items() if not _same(record.get(a), v)}
        if differing:
            _raise(409, "modified", {"values": differing, "versionNumber": current})

    def _validate(self, etype: EntityType, data: dict[str, Any]) -> None:
        """§8 field validation for the fields present in the payload."""
        for attribute, value in data.items():
            field_name = etype.field_of(attribute)
            if field_name is None:
                continue
            failure = _field_failure(etype.fields[field_name], value)
            if failure is not None:
                _validation_failure(etype.name, field_name, failure)

    def _check_links(self, etype: EntityType, data: dict[str, Any]) -> None:
        for name_attr, (id_attr, target) in etype.foreign.items():
            value = data.get(id_attr)
            if value is None:
                continue
            if target == "Attachment":
                exists = self._live("Attachment", str(value)) is not None
            else:
                exists = str(value) in self.names.get(target, {})
            if not exists:
                link = name_attr.removesuffix("Name")
                _raise(403, f"Can't relate with non-existing record. entity type: {etype.name}, link: {link}.",
                       {"messageTranslation": {"label": "cannotRelateNonExisting", "scope": None,
                                               "data": {"foreignEntityType": target}}})

    def _save(self, etype: EntityType, record: dict[str, Any], data: dict[str, Any], user_id: str,
              *, force: bool = False) -> list[str]:
        """Apply values; on a real change bump modifiedAt/By and versionNumber and run the file saver (§5.3)."""
        changed = [a for a, v in data.items() if not _same(record.get(a), v)]
        if not changed and not force:
            return []
        before = self.index.key(record) if etype.name == "Document" else None
        previous = {a: record.get(a) for a in changed}
        for attribute in changed:
            record[attribute] = copy.deepcopy(data[attribute])
        if etype.name == "Contact" and {"firstName", "lastName"} & set(changed):
            record["name"] = _person_name(record.get("firstName"), record.get("lastName"))
        record["modifiedAt"] = self._now()
        if "modifiedById" in etype.attributes:
            record["modifiedById"] = user_id
        if etype.occ:
            record["versionNumber"] = int(record.get("versionNumber") or 0) + 1
        self._save_files(etype, record, previous)
        if before is not None:
            self.index.update(str(record["id"]), before, self.index.key(record))
        return changed

    def _save_files(self, etype: EntityType, record: dict[str, Any], previous: dict[str, Any]) -> None:
        for field_name, definition in etype.fields.items():
            id_attr = field_name + "Id"
            if definition["type"] not in FILE_FIELD_TYPES or id_attr not in previous:
                continue
            new_id, old_id = record.get(id_attr), previous[id_attr]
            attachment = self.records["Attachment"].get(str(new_id)) if new_id else None
            if attachment is not None:
                attachment.update(relatedId=record["id"], relatedType=etype.name, field=field_name)
            old = self.records["Attachment"].get(str(old_id)) if old_id else None
            if old is not None and old_id != new_id and not old["deleted"]:
                self._soft_delete("Attachment", old)

    # -- attachments (§5) --------------------------------------------------------------------------

    def _post_attachment(self, request: Request) -> Response:
        data = {} if len(request.body) > self.max_upload_bytes else self._json_body(request)
        field_name = data.get("field")
        parent_type = data.get("parentType")
        target = parent_type or data.get("relatedType")
        if not field_name or not target:
            _raise(400, "No `field` and `parentType`.")
        role = data.get("role") or "Attachment"
        if role not in ATTACHMENT_ROLES:
            _raise(403, "Role not allowed.")
        definition = self._attachment_field(str(target), str(field_name))
        declared = data.get("size")
        if isinstance(declared, int) and declared > ATTACHMENT_UPLOAD_MAX_SIZE:
            _raise(403, "Attachment size exceeds `attachmentUploadMaxSize`.")
        content = _decode_contents(data.get("file"))
        if len(content) > ATTACHMENT_UPLOAD_MAX_SIZE:
            _raise(403, "Attachment size exceeds `attachmentUploadMaxSize`.")
        name = data.get("name")
        if not isinstance(name, str) or not name:
            _validation_failure("Attachment", "name", "required")
        mime = data.get("type") if isinstance(data.get("type"), str) else None
        _check_attachment_type(definition, name, mime, content)
        attachment_id = self._store_attachment(
            name, content, mime, str(field_name), role=str(role),
            related_type=None if parent_type else str(target), parent_type=parent_type)
        record = self.records["Attachment"][attachment_id]
        values = self._values(self.entities["Attachment"], record)
        values.update(modifiedAt=record["createdAt"], storageFilePath=None, parentName=None, relatedName=None)
        return self._ok({key: values.get(key) for key in ATTACHMENT_CREATE_KEYS})

    def _attachment_field(self, target: str, field_name: str) -> dict[str, Any]:
        etype = self.entities.get(target)
        definition = etype.fields.get(field_name) if etype is not None else None
        if definition is None:
            _raise(403, f"Field '{field_name}' does not exist.")
        if definition["type"] not in ("file", "image", "attachmentMultiple"):
            _raise(403, f"Field type '{definition['type']}' is not allowed for Attachment.")
        if target != "Document":
            _raise(403, f"No access to {target}.")
        if self.role.edit_forbidden(field_name, etype.fields if etype is not None else {}):
            _raise(403, f"No access to field '{field_name}'.")  # §5.2: field-level edit is needed
        return definition

    def _store_attachment(self, name: str, content: bytes, mime: str | None, field_name: str, *,
                          role: str = "Attachment", related_type: str | None = "Document",
                          parent_type: Any = None, related_id: str | None = None) -> str:
        attachment_id = self._new_id()
        self.records["Attachment"][attachment_id] = {
            "id": attachment_id, "name": name, "deleted": False, "type": mime, "size": len(content),
            "role": role, "relatedType": related_type, "relatedId": related_id,
            "parentType": parent_type if isinstance(parent_type, str) else None, "parentId": None,
            "field": field_name, "isBeingUploaded": False, "storage": "EspoUploadDir", "sourceId": None,
            "global": False, "createdAt": self._now(), "createdById": self.api_user_id,
        }
        self.blobs[attachment_id] = bytes(content)
        return attachment_id

    def _get_attachment_file(self, request: Request, rid: str) -> Response:
        record = self._live("Attachment", rid)
        content = self.blobs.get(str(record["id"])) if record is not None else None
        if record is None or content is None:
            _raise(404, "")
        related = record.get("relatedType") or record.get("parentType")
        owner = record.get("relatedId") or record.get("parentId")
        if related == "Document" and owner and str(owner) in self.hidden_documents:
            _raise(403, "No 'read' access.")  # read access to the record the file belongs to decides
        headers = {"Content-Length": str(len(content))}
        name = str(record["name"])
        if "\r" not in name and "\n" not in name:  # PHP header() refuses header values with newlines
            headers["Content-Disposition"] = f'attachment; filename="{name}"'.encode().decode("latin-1")
        if record.get("type"):
            headers["Content-Type"] = str(record["type"])
        return Response(200, content, headers)

    # ===============================================================================================
    # Seed and inspection API (tests, demo, benchmarks). Thread-safe through ``self.lock``.

    def reset(self) -> None:
        """Forget all records, attachments, links, failed logins, journal entries and fault rules."""
        with self.lock:
            self.records = {name: CiTable() for name in self.entities}
            self.hidden_documents.clear()
            self.blobs.clear()
            self.link_tables = {name: LinkTable() for name in self.link_tables}
            self._auth_failures.clear()
            self.stream.clear()
            self.index.build([])
        self.faults.clear()
        self.clear_journal()

    def add_account(self, name: str, collection_id: str | None = None, *, assigned_user_id: str | None = None,
                    record_id: str | None = None) -> str:
        """An Account made by a person; ``assigned_user_id`` (e.g. :attr:`api_user_id`) decides "own" access."""
        with self.lock:
            return self._add_simple("Account", {"name": name, self.attr("xaiCollectionId"): collection_id,
                                                "assignedUserId": assigned_user_id,
                                                "createdById": self.human_user_id}, record_id)

    def assign_account(self, account_id: str, user_id: str | None) -> None:
        """A person (re)assigns an Account: with Account read/stream "own", this decides what the role sees."""
        with self.lock:
            self.records["Account"][account_id]["assignedUserId"] = user_id

    def hide_document(self, doc_id: str) -> None:
        """The API user's role or teams change so it may no longer read this Document: ``GET`` answers 403
        ``No 'read' access.``, ``PUT`` 403 ``No edit access.``, and lists, counts and related lists leave it out."""
        with self.lock:
            self.hidden_documents.add(str(self.records["Document"][doc_id]["id"]))
            if self.role.document_read == "all":  # a role that reads "all" hides nothing: it must be narrower
                self.role.document_read = "team"

    def unhide_document(self, doc_id: str) -> None:
        with self.lock:
            self.hidden_documents.discard(str(self.records["Document"][doc_id]["id"]))

    def add_contact(self, name: str, collection_id: str | None = None) -> str:
        first, _, last = name.rpartition(" ")
        with self.lock:
            return self._add_simple("Contact", {"firstName": first or None, "lastName": last,
                                                "name": _person_name(first, last),
                                                self.attr("xaiCollectionId"): collection_id})

    def _add_simple(self, entity: str, values: dict[str, Any], record_id: str | None = None) -> str:
        record_id = record_id or self._new_id()
        if record_id in self.records[entity]:  # case-insensitive primary key
            raise ValueError(f"Duplicate entry '{record_id}' for key 'PRIMARY'")
        now = self._now()
        self.records[entity][record_id] = {"id": record_id, "deleted": False, **values,
                                           "createdAt": now, "modifiedAt": now}
        return record_id

    def add_document(self, name: str, content: bytes | None, file_name: str | None = None, *,
                     mime: str | None = None, datei_status: str = "Neu", accounts: Iterable[str] = (),
                     contacts: Iterable[str] = (), record_id: str | None = None, **attributes: Any) -> str:
        """A Document created by a human user; ``attributes`` use real attribute names and win over defaults.
        ``record_id`` gives it an explicit id (imported or migrated records); an id that equals a stored one but
        for case is refused with ``ValueError``, as MariaDB's case-insensitive primary key does."""
        with self.lock:
            doc_id = record_id or self._new_id()
            if doc_id in self.records["Document"]:
                raise ValueError(f"Duplicate entry '{doc_id}' for key 'PRIMARY'")
            now = self._now()
            record: dict[str, Any] = {
                "id": doc_id, "deleted": False, "name": name, "fileId": None, "status": "Active", "type": None,
                "publishDate": now[:10], "expirationDate": None, "description": None, "createdAt": now,
                "modifiedAt": now, "createdById": self.human_user_id, "modifiedById": self.human_user_id,
                "assignedUserId": self.human_user_id, "teamsIds": [], "folderId": None,
                self.attr("dateiStatus"): datei_status, self.attr("md5"): None, self.attr("sha"): None,
                self.attr("xaiFileId"): None, self.attr("xaiCollections"): None, self.attr("xaiSyncedHash"): None,
                self.attr("xaiSyncStatus"): self._default("xaiSyncStatus"), self.attr("xaiSyncError"): None,
                self.preview_field + "Id": None,
            }
            if self.optimistic_concurrency:
                record["versionNumber"] = 1
            if content is not None:
                fname = file_name or name
                record["fileId"] = self._store_attachment(fname, content, mime or guess_mime(fname), "file",
                                                          related_id=doc_id)
            record.update(copy.deepcopy(attributes))
            self.records["Document"][doc_id] = record
            self.index.update(doc_id, None, self.index.key(record))
            accounts = list(accounts)
            for account_id in accounts:  # links given on create are silent in 9.x ...
                self.link(doc_id, "accounts", account_id, silent=True)
            if accounts:  # ... but for one CreateRelated note on the first account (§10.7)
                self.stream.write("CreateRelated", "Account", accounts[0], "Document", doc_id, self.human_user_id)
            for contact_id in contacts:
                self.link(doc_id, "contacts", contact_id, silent=True)
            return doc_id

    def duplicate_document(self, doc_id: str, name: str | None = None) -> str:
        """A user's "Duplicate" of a Document, as EspoCRM does it: a new record with every field copied except
        the ones whose definition says ``duplicateIgnore``; the file is copied into a new attachment and the
        links come along. docsync's xai* fields are copied too unless their definitions were updated."""
        with self.lock:
            etype = self.entities["Document"]
            source = self.records["Document"][doc_id]
            copy_id = self._new_id()
            now = self._now()
            record = copy.deepcopy(source)
            for attribute in list(record):
                owner = etype.field_of(attribute)
                if owner is not None and etype.fields.get(owner, {}).get("duplicateIgnore"):
                    record[attribute] = [] if isinstance(record[attribute], list) else None
            record.update({"id": copy_id, "createdAt": now, "modifiedAt": now, "deleted": False,
                           "createdById": self.human_user_id, "modifiedById": self.human_user_id})
            if "versionNumber" in record:
                record["versionNumber"] = 1
            if name is not None:
                record["name"] = name
            attachment = self.records["Attachment"].get(str(source.get("fileId")))
            if attachment is not None:
                record["fileId"] = self._store_attachment(str(attachment["name"]), self.blobs[attachment["id"]],
                                                          attachment.get("type"), "file", related_id=copy_id)
            self.records["Document"][copy_id] = record
            for link in ("accounts", "contacts"):
                for foreign_id in self._linked_ids(etype, source, link):
                    self.link(copy_id, link, foreign_id)
            return copy_id

    def restore_from(self, other: EspoEmulator) -> None:
        """Make this CRM a copy of ``other`` (a staging system restored from production's backup): the same
        records with the same ids, attachments and links."""
        with other.lock, self.lock:
            self.records = copy.deepcopy(other.records)
            self.blobs = dict(other.blobs)
            self.link_tables = copy.deepcopy(other.link_tables)

    def replace_file(self, doc_id: str, content: bytes, file_name: str | None = None) -> str:
        """A user uploads a new file: new attachment, ``fileId`` changes, old attachment deleted. Returns its id."""
        with self.lock:
            record = self.records["Document"][doc_id]
            old = self.records["Attachment"].get(str(record.get("fileId")))
            name = file_name or (str(old["name"]) if old else str(record["name"]))
            attachment_id = self._store_attachment(name, content, guess_mime(name), "file", related_id=doc_id)
            self._save(self.entities["Document"], record, {"fileId": attachment_id}, self.human_user_id)
            return attachment_id

    def user_update(self, doc_id: str, **attributes: Any) -> None:
        """A human edit (always a save): bumps ``modifiedAt``/``versionNumber``, ``modifiedById`` = human."""
        with self.lock:
            self._save(self.entities["Document"], self.records["Document"][doc_id], attributes,
                       self.human_user_id, force=True)

    def delete_document(self, doc_id: str) -> None:
        with self.lock:
            self._soft_delete("Document", self.records["Document"][doc_id])

    def link(self, doc_id: str, link: str, foreign_id: str, *, silent: bool = False) -> None:
        """A person relates the records (either side): no ``modifiedAt`` change (§10.5); a ``Relate`` note
        for the audited Account link unless ``silent`` (a bulk relate, an import) (§10.7)."""
        with self.lock:
            relation = self.entities["Document"].relations[link]
            self._pair(relation, doc_id, foreign_id, add=True, silent=silent)

    def unlink(self, doc_id: str, link: str, foreign_id: str, *, silent: bool = False) -> None:
        with self.lock:
            relation = self.entities["Document"].relations[link]
            self._pair(relation, doc_id, foreign_id, add=False, silent=silent)

    def put_accounts_ids(self, doc_id: str, account_ids: Iterable[str]) -> None:
        """A person's ``PUT Document/{id}`` with ``accountsIds``: the links are replaced (with notes) and, as the
        field is never loaded, it always counts as changed: ``modifiedAt`` moves (§10.5)."""
        with self.lock:
            etype = self.entities["Document"]
            record = self.records["Document"][doc_id]
            wanted = set(account_ids)
            current = self._linked_ids(etype, record, "accounts")
            for account_id in sorted(current - wanted):
                self._pair(etype.relations["accounts"], doc_id, account_id, add=False)
            for account_id in sorted(wanted - current):
                self._pair(etype.relations["accounts"], doc_id, account_id, add=True)
            self._save(etype, record, {}, self.human_user_id, force=True)

    def _pair(self, relation: Relation, doc_id: str, foreign_id: str, *, add: bool, silent: bool = True) -> None:
        doc_id = self.records["Document"].stored_id(doc_id) or doc_id  # ids as stored (case-insensitive keys)
        foreign_id = self.records[relation.foreign_entity].stored_id(foreign_id) or foreign_id
        left, right = (doc_id, foreign_id) if relation.side == 0 else (foreign_id, doc_id)
        table = self.link_tables[relation.table]
        if (right in table.of(left, 0)) == add:
            return  # relating a related pair (or unrelating an unrelated one) is a no-op
        if add:
            table.add(left, right)
        else:
            table.remove(left, right)
        if not silent and relation.foreign_entity == "Account":  # Account.links.documents is audited
            self.stream.write("Relate" if add else "Unrelate", "Account", foreign_id, "Document", doc_id,
                              self.human_user_id)

    def restore_document(self, doc_id: str) -> None:
        """An admin restores a deleted record: a silent save, ``modifiedAt`` unchanged (§10.5)."""
        with self.lock:
            record = self.records["Document"][doc_id]
            before = self.index.key(record)
            record["deleted"] = False
            self.index.update(doc_id, before, self.index.key(record))

    def set_accounts_load(self, load: bool) -> None:
        """The admin sets (or removes) ``noLoad: false`` on ``Document.accounts`` and rebuilds (§10.6)."""
        with self.lock:
            self.accounts_load = load
            self.entities = self._build_entities()

    def bulk_seed(self, count: int, *, accounts: Sequence[str] = (), modified_at: str | None = None,
                  values: Callable[[int, str], dict[str, Any]] | None = None) -> list[str]:
        """``count`` Documents at once, for benchmarks: sparse records (missing attributes read as null), no
        attachment bytes, each linked silently to ``accounts[i % len(accounts)]``; turns the index on."""
        with self.lock:
            now = modified_at or self._now()
            status_attr = self.attr("dateiStatus")
            table = self.link_tables["documentAccount"]
            documents = self.records["Document"]
            ids = []
            for number in range(count):
                doc_id = self._new_id()
                record: dict[str, Any] = {"id": doc_id, "deleted": False, "name": f"Dokument {number}",
                                          "status": "Active", "createdAt": now, "modifiedAt": now,
                                          status_attr: "Neu"}
                if values is not None:
                    record.update(values(number, doc_id))
                documents[doc_id] = record
                if accounts:
                    table.add(doc_id, accounts[number % len(accounts)])
                ids.append(doc_id)
            self.index.build(documents.values())
            self.use_index = True
            return ids

    def set_account_collection(self, account_id: str, collection_id: str | None) -> None:
        with self.lock:
            self._save(self.entities["Account"], self.records["Account"][account_id],
                       {self.attr("xaiCollectionId"): collection_id}, self.human_user_id)

    def document(self, doc_id: str) -> dict[str, Any]:
        """Deep copy of a Document's full value map (even if deleted) plus ``accountsIds``/``contactsIds``."""
        with self.lock:
            return self._document_snapshot(self.records["Document"][doc_id])

    def documents(self) -> list[dict[str, Any]]:
        """Snapshots of all non-deleted Documents in creation order."""
        with self.lock:
            return [self._document_snapshot(r) for r in self.records["Document"].values() if not r["deleted"]]

    def _document_snapshot(self, record: dict[str, Any]) -> dict[str, Any]:
        etype = self.entities["Document"]
        values = self._values(etype, record)
        for extra, value in record.items():  # seeded attributes outside the entity definition
            values.setdefault(extra, copy.deepcopy(value))
        values["accountsIds"] = sorted(self._linked_ids(etype, record, "accounts"))
        values["contactsIds"] = sorted(self._linked_ids(etype, record, "contacts"))
        return values

    def attachment(self, att_id: str) -> dict[str, Any] | None:
        """Deep copy of an attachment record (``deleted`` tells whether the file saver removed it), or None."""
        with self.lock:
            record = self.records["Attachment"].get(att_id)
            return copy.deepcopy(record) if record is not None else None

    def attachment_bytes(self, att_id: str) -> bytes | None:
        """The stored bytes; None when unknown or deleted."""
        with self.lock:
            return self.blobs.get(att_id)

    def set_api_key(self, new_key: str) -> None:
        """Revoke the current key; only ``new_key`` authenticates from now on."""
        with self.lock:
            self.api_key = new_key


ATTACHMENT_CREATE_KEYS = ("id", "name", "deleted", "type", "size", "field", "isBeingUploaded", "createdAt",
                          "modifiedAt", "role", "storage", "storageFilePath", "global", "parentName", "relatedType",
                          "relatedName", "createdById", "createdByName")
"""The keys of the ``POST Attachment`` answer, as 9.2.7 gives them (no ``relatedId``/``parentId``/``sourceId``)."""

ATTACHMENT_FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "varchar", "required": True, "maxLength": 255},
    "type": {"type": "varchar", "maxLength": 100, "readOnly": True},
    "size": {"type": "int", "min": 0, "readOnly": True},
    "role": {"type": "enum", "options": ["Attachment", "Inline Attachment", "Import File", "Export File",
                                         "Mail Merge", "Mass Pdf"], "maxLength": 36, "readOnly": True},
    "relatedType": {"type": "varchar", "readOnly": True},
    "relatedId": {"type": "varchar", "readOnly": True},
    "parentType": {"type": "varchar", "readOnly": True},
    "parentId": {"type": "varchar", "readOnly": True},
    "field": {"type": "varchar", "readOnly": True},
    "isBeingUploaded": {"type": "bool", "readOnly": True},
    "storage": {"type": "varchar", "readOnly": True},
    "sourceId": {"type": "varchar", "readOnly": True},
    "global": {"type": "bool", "readOnly": True},
    "createdAt": {"type": "datetime", "readOnly": True},
    "createdBy": {"type": "link", "readOnly": True},
}


# ---------------------------------------------------------------------------------------------------
# Helpers


def _page_length(limit: int, has_more: bool, short: bool) -> int:
    """The rows a page holds: ``maxSize``, or with ``short_pages`` about half of it while more exist."""
    return max(1, limit // 2) if short and has_more and limit > 1 else limit


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value != "" else None


def _as_str_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        return [str(v) for v in value.values()]
    return [str(value)]


def _same(a: Any, b: Any) -> bool:
    """Espo's ``isAttributeChanged``: JSON-equal values are the same (``1`` vs ``"1"`` is a change)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _sort_key(value: Any) -> tuple[int, Any]:
    """MariaDB order: NULL first (ascending), strings by ``utf8mb4_unicode_ci`` (:mod:`.espocrm_collation`)."""
    if value is None:
        return (0, "")
    if isinstance(value, str):
        return (1, collation_key(value))
    if isinstance(value, bool | int | float):
        return (2, float(value))
    return (3, json.dumps(value, sort_keys=True))


def _person_name(first: Any, last: Any) -> str:
    return " ".join(str(part) for part in (first, last) if part)


def _text_filter_regex(text: str) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else re.escape(ch) for ch in text]
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _field_failure(definition: dict[str, Any], value: Any) -> str | None:
    """The first failing validation type of one field value, or None."""
    kind = definition["type"]
    empty = value is None or value == "" or value == []
    if definition.get("required") and empty:
        return "required"
    if value is None:
        return "valid" if kind == "enum" and "" not in definition.get("options", []) else None
    checks: dict[str, Callable[[dict[str, Any], Any], str | None]] = {
        "varchar": _check_varchar, "text": _check_varchar, "enum": _check_enum, "array": _check_array,
        "date": lambda d, v: None if _real_time(v, DATE_RE, "%Y-%m-%d") else "valid",
        "datetime": lambda d, v: None if _real_time(v, DATETIME_RE, DATETIME_FORMAT) else "valid",
        "int": lambda d, v: None if isinstance(v, int) and not isinstance(v, bool) else "valid",
    }
    check = checks.get(kind)
    return check(definition, value) if check is not None else None


def _real_time(value: Any, shape: re.Pattern[str], layout: str) -> bool:
    """A date (time) of the right shape that exists on the calendar (2025-13-45 is refused, §11)."""
    if not isinstance(value, str) or not shape.fullmatch(value):
        return False
    try:
        datetime.strptime(value if len(value) != 16 else value + ":00", layout).replace(tzinfo=UTC)
    except ValueError:
        return False
    return True


def _check_varchar(definition: dict[str, Any], value: Any) -> str | None:
    text = value if isinstance(value, str) else json.dumps(value)
    max_length = definition.get("maxLength")
    if max_length is not None and len(text) > int(max_length):
        return "maxLength"
    if definition.get("pattern") == "$noBadCharacters" and text and not NO_BAD_CHARACTERS.fullmatch(text):
        return "pattern"
    return None


def _check_enum(definition: dict[str, Any], value: Any) -> str | None:
    return None if value in definition.get("options", []) else "valid"


def _check_array(definition: dict[str, Any], value: Any) -> str | None:
    if not isinstance(value, list):
        return "array"
    if not all(isinstance(item, str) for item in value):
        return "arrayOfString"
    options = definition.get("options")
    if options is not None and not all(item in options for item in value):
        return "valid"
    return None


def _decode_contents(contents: Any) -> bytes:
    """§5.2: everything after the first comma is base64."""
    if contents is None:
        _raise(400, "No file contents.")
    if not isinstance(contents, str):
        _raise(400, "File contents must be a string.")
    if "," not in contents:
        _raise(400, "Bad file contents.")
    try:
        return base64.b64decode(contents.split(",", 1)[1])
    except (binascii.Error, ValueError):
        _raise(400, "Bad file contents.")


def _check_attachment_type(definition: dict[str, Any], name: str, mime: str | None, content: bytes) -> None:
    """§5.2 type checks: ``accept`` for file fields; extension/type/detected mime for image fields."""
    extension = _extension(name)
    if definition["type"] == "image":
        expected = IMAGE_MIME_BY_EXTENSION.get(extension)
        if expected is None or expected not in ALLOWED_IMAGE_TYPES:
            _raise(403, "Not allowed file type.")
        if mime != expected:
            _raise(403, "Passed type does not correspond to extension.")
        if sniff_mime(content) != expected:
            _raise(403, "Detected mime type does not correspond to extension.")
        return
    accept = [a.lower() for a in definition.get("accept") or []]
    if not accept:
        return
    mime_lower = (mime or "").lower()
    wildcard = mime_lower.split("/")[0] + "/*"
    if f".{extension}" in accept or mime_lower in accept or wildcard in accept:
        return
    _raise(403, "Not allowed file type.")
