"""The Document entity as one EspoCRM defines it, learned once per run, and the mapping both ways.

:class:`LearnedSchema` holds what ``EspoClient.learn()`` read (the attribute names that exist, the enum options,
the preview field's type, the list page cap, the ``App/user`` answer as an :class:`ApiUser`) and uses it: a CRM
record becomes a :class:`~docsync_cli.model.CrmDocument` (:meth:`~LearnedSchema.to_document`), docsync's values
become an update body every enum field accepts (:meth:`~LearnedSchema.writable`). Until something is learned
the configured names and the design document's options (``crm.fields.FALLBACK_OPTIONS``) are assumed, so
nothing a field might refuse is ever written. No I/O: ``crm/client.py`` reads the two answers and hands them over;
this module imports only ``crm.fields``, ``errors``, ``model`` and ``secrets``. "Contract §n" is EspoCRM
contract §n in ``docs/contracts.md``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from docsync_cli.crm.fields import FieldSchema, inspect_fields
from docsync_cli.errors import RejectedError, SetupError
from docsync_cli.model import CrmDocument, Field, SyncStatus
from docsync_cli.secrets import printable, scrub

log = logging.getLogger("docsync.espocrm")

PAGE = 200  # EspoCRM's default recordListMaxSizeLimit: maxSize above the configured one is a 403 (§10.4)
PARTIAL_LEVELS = ("own", "team", "account", "contact")
"""ACL levels that allow an action on only some records (EspoCRM's role levels besides ``all``, ``no``, ``yes``)."""
BOOKKEEPING = frozenset({"modifiedAt", "modifiedById", "modifiedByName", "versionNumber"})


@dataclass(frozen=True)
class ApiUser:
    """What docsync reads of the ``GET App/user`` answer (contract §1.3, §7.2, §10.4): the API user's names, the
    list page cap, and what its role's ACL table denies. ``acl_known`` is False when the answer carried no table
    (then nothing can be judged)."""

    user_name: str = ""
    name: str = ""
    page_cap: int | None = None  # settings.recordListMaxSizeLimit, when a positive integer
    acl_known: bool = False
    disabled_scopes: frozenset[str] = frozenset()  # scopes the table sets to false (e.g. GlobalStream)
    denied: frozenset[tuple[str, str]] = frozenset()  # (scope, action) the table answers "no" (or false)
    limited: frozenset[tuple[str, str, str]] = frozenset()  # (scope, action, level): "own", "team", … (not "all")
    field_denied: frozenset[tuple[str, str, str]] = frozenset()  # (scope, field, action) acl.fieldTable says "no"
    version: str | None = None  # settings.version: the EspoCRM version

    @property
    def label(self) -> str:
        """How the user is named in messages: ``userName``, else ``name``, else ``?``."""
        return self.user_name or self.name or "?"

    def denies(self, scope: str, action: str) -> bool:
        return (scope, action) in self.denied

    def denies_field(self, scope: str, field: str, action: str) -> bool:
        """The role's field level denies ``action`` on ``field`` (contract §11.2: a PUT then drops the field
        silently, HTTP 200, no 403)."""
        return (scope, field, action) in self.field_denied

    def limit(self, scope: str, action: str) -> str | None:
        """The level (``own``, ``team``, …) when the role allows ``action`` on only some ``scope`` records; None
        when it allows all of them, none, or the table does not say. EspoCRM then hides the others from this user:
        lists leave them out (HTTP 200), a read of one is 403 (contract §11.2)."""
        return next((level for s, a, level in self.limited if (s, a) == (scope, action)), None)


def parse_api_user(answer: Any) -> ApiUser:
    """The ``App/user`` answer, leniently: anything malformed reads as not said."""
    if not isinstance(answer, dict):
        return ApiUser()
    user, settings, acl = answer.get("user"), answer.get("settings"), answer.get("acl")
    user = user if isinstance(user, dict) else {}
    cap = settings.get("recordListMaxSizeLimit") if isinstance(settings, dict) else None
    table = acl.get("table") if isinstance(acl, dict) else None
    if not isinstance(table, dict):
        table = None
    return ApiUser(
        user_name=str(user.get("userName") or ""), name=str(user.get("name") or ""),
        page_cap=cap if isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None,
        acl_known=table is not None,
        disabled_scopes=frozenset(str(s) for s, rights in (table or {}).items() if rights is False),
        denied=frozenset((str(s), str(a)) for s, rights in (table or {}).items() if isinstance(rights, dict)
                         for a, level in rights.items() if level in ("no", False)),
        limited=frozenset((str(s), str(a), level) for s, rights in (table or {}).items() if isinstance(rights, dict)
                          for a, level in rights.items() if level in PARTIAL_LEVELS),
        field_denied=_field_denials(acl.get("fieldTable") if isinstance(acl, dict) else None),
        version=_text(settings.get("version")) if isinstance(settings, dict) else None)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _field_denials(table: Any) -> frozenset[tuple[str, str, str]]:
    """``acl.fieldTable`` (``{"Document": {"file": {"read": "yes", "edit": "no"}}}``): what it denies."""
    if not isinstance(table, dict):
        return frozenset()
    return frozenset((str(scope), str(name), str(action)) for scope, fields in table.items()
                     if isinstance(fields, dict) for name, rights in fields.items() if isinstance(rights, dict)
                     for action, level in rights.items() if level in ("no", False))

KNOWN_FIELDS = frozenset(Field)


class LearnedSchema:
    """``configured`` are the configured attribute names (logical name -> attribute name)."""

    def __init__(self, configured: Mapping[str, str]) -> None:
        self.configured = dict(configured)
        self.attributes = dict(configured)  # logical name -> attribute name
        self.preview_attr = f"{self.attributes[Field.PREVIEW]}Id"
        self.fields = FieldSchema(names=dict(configured), known=False)
        self.page_size = PAGE  # documents per list request: min(200, App/user settings.recordListMaxSizeLimit)
        self.api_user: ApiUser | None = None  # App/user's API user, None until read (the change feeds read its ACL)

    # -- learning --------------------------------------------------------------------------------------

    def adopt_fields(self, metadata: Any) -> FieldSchema:
        """Judge the ``Metadata?key=entityDefs.Document.fields`` answer (None: it could not be read) and, when
        it is known, use the attribute names it has."""
        if isinstance(metadata, dict) and isinstance(metadata.get("entityDefs"), dict):
            metadata = metadata["entityDefs"].get("Document", {}).get("fields")  # 8.0/8.1 ignore `key`
        schema = inspect_fields(metadata if isinstance(metadata, dict) and metadata else None, self.configured)
        if schema.known:
            self.attributes.update(schema.names)
            self.preview_attr = f"{self.attributes[Field.PREVIEW]}Id"
            found = {logical: name for logical, name in schema.names.items()
                     if name != self.configured.get(logical, logical)}
            if found:  # one line per run, not one per field: a timer runs this every minute
                log.info("EspoCRM prefixes custom fields with 'c'; docsync uses %s (set them under "
                         "[espocrm.fields] to silence this; `docsync check` lists them)",
                         ", ".join(f"{name} for {logical}" for logical, name in sorted(found.items())))
        self.fields = schema
        return schema

    def adopt_app_user(self, user: ApiUser | None) -> None:
        """The ``App/user`` answer (None: it could not be read): the page cap is ``settings.recordListMaxSizeLimit``,
        at most 200 (§10.4)."""
        self.api_user = user
        cap = user.page_cap if user is not None else None
        self.page_size = min(PAGE, cap) if cap is not None else PAGE

    # -- docsync's values -> the wire -----------------------------------------------------------------

    def writable(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (logical names) with every enum value made one the field accepts: "pending" becomes
        "syncing" where "pending" is not an option; a cleared status ("" or null) is left out where "" is not an
        option (EspoCRM refuses null there too). Any other value the field refuses is a :class:`SetupError`."""
        schema = self.fields
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key not in schema.options or schema.accepts(key, value):
                out[key] = value
            elif value == SyncStatus.PENDING and schema.accepts(key, SyncStatus.SYNCING.value):
                out[key] = SyncStatus.SYNCING.value
            elif value is None or value == "":
                continue
            else:
                raise SetupError(
                    f"EspoCRM's Document field {self.attributes.get(key, key)} has no option {value!r}, which docsync "
                    f"must write (options: {', '.join(map(repr, schema.options[key])) or 'none'})",
                    "add the option in Administration > Entity Manager > Document > Fields, then run "
                    "`docsync check`")
        return out

    def update_body(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`writable` ``values`` under this CRM's attribute names. The boundary: nothing docsync writes into
        the CRM carries a secret (xaiSyncError holds server text). A name that is neither one of docsync's fields
        (:class:`~docsync_cli.model.Field`) nor the preview's attachment attribute is refused with ``ValueError``
        before anything is sent: EspoCRM would drop it silently with 200 (EspoCRM contract §11.1)."""
        unknown = sorted(str(key) for key in values if key not in KNOWN_FIELDS and key != self.preview_attr)
        if unknown:
            raise ValueError(f"docsync does not write the Document attribute(s) {', '.join(unknown)}")
        return {self.attributes.get(key, key): scrub(value) if isinstance(value, str) else value
                for key, value in self.writable(values).items()}

    @property
    def list_attributes(self) -> list[str]:
        """The attributes a Document listing selects: everything :meth:`to_document` reads."""
        names = ["id", "name", "modifiedAt", "fileId", "fileName", "versionNumber", self.preview_attr]
        names += [self.attributes[key] for key in Field if key is not Field.PREVIEW]
        return names

    # -- the wire -> docsync's model ------------------------------------------------------------------

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

        collections_attr = self.attributes[Field.XAI_COLLECTIONS]
        collections = _collections(record.get(collections_attr), collections_attr, problems)
        version = record.get("versionNumber")
        return CrmDocument(
            id=record["id"],
            name=printable(text("name")),  # untrusted: no control characters, bidi overrides or NULs
            modified_at=text("modifiedAt") or "",
            file_id=text("fileId"),
            file_name=printable(text("fileName")) or None,
            datei_status=text(self.attributes[Field.DATEI_STATUS]),
            md5=text(self.attributes[Field.MD5]),
            sha=text(self.attributes[Field.SHA]),
            xai_file_id=text(self.attributes[Field.XAI_FILE_ID]),
            xai_collections=collections,
            xai_synced_hash=text(self.attributes[Field.XAI_SYNCED_HASH]),
            xai_sync_status=text(self.attributes[Field.XAI_SYNC_STATUS]),
            xai_sync_error=text(self.attributes[Field.XAI_SYNC_ERROR]),
            preview_id=text(self.preview_attr),
            version=version if isinstance(version, int) and not isinstance(version, bool) else None,
            problems=tuple(problems),
            fingerprint=fingerprint(record),
            accounts=_ids(record.get("accountsIds")),
        )


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


def _ids(value: Any) -> tuple[str, ...] | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(sorted(value))
    return None
