"""The API user's role and the database's collation, for the EspoCRM emulator (contract §11, observed on 9.2.7).

* :class:`Role`: what the API user's role allows, as the real server answers it in ``GET App/user`` → ``acl``
  (``table`` entries ``{"read", "stream", "edit", "delete", "create"}`` in that order; ``fieldTable`` entries
  ``{"read": "yes", "edit": "no"}``; ``fieldTableQuickAccess`` with the attributes of each field). The scopes are the
  ones the loopback fixture's role "docsync API" sets (``../shared/real-espocrm/configure.py``), plus Contact read.
* Record-level ACL as ``Core/Acl/DefaultOwnershipChecker.php`` decides it: "own" means *assigned to* the user for
  entity types with an ``assignedUser`` field (Account, Document); ``createdBy`` only counts without one.
* :class:`CiTable`: a record table keyed by id that finds ids as the collation does (case, accents and trailing
  spaces ignored) and refuses an id that equals a stored one under it (MariaDB ``utf8mb4_unicode_ci`` primary
  key: duplicate entry), and :func:`id_key`, the sort/compare key of an id (``ORDER BY id``, ``id > 'x'``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docsync_sandbox.espocrm_collation import collation_key

__all__ = ["LEVELS", "CiTable", "Role", "id_key"]

LEVELS = ("all", "team", "own", "no")


def id_key(value: Any) -> str:
    """The collation key of an id under ``utf8mb4_unicode_ci`` (:mod:`.espocrm_collation`)."""
    return collation_key(value)


class CiTable(dict[str, dict[str, Any]]):
    """``{id: record}`` where lookups ignore the case of the id, as a ``WHERE id = ?`` does on MariaDB."""

    def __init__(self) -> None:
        super().__init__()
        self._fold: dict[str, str] = {}

    def stored_id(self, record_id: str) -> str | None:
        """The id as stored for ``record_id`` in any case, or None."""
        return self._fold.get(id_key(record_id))

    def __setitem__(self, key: str, value: dict[str, Any]) -> None:
        existing = self._fold.get(id_key(key))
        if existing is not None and existing != key:
            raise ValueError(f"Duplicate entry '{key}' for key 'PRIMARY' (collides with '{existing}')")
        self._fold[id_key(key)] = key
        super().__setitem__(key, value)

    def __getitem__(self, key: str) -> dict[str, Any]:
        if dict.__contains__(self, key):
            return super().__getitem__(key)
        stored = self._fold.get(id_key(key))
        if stored is None:
            raise KeyError(key)
        return super().__getitem__(stored)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and id_key(key) in self._fold

    def __delitem__(self, key: str) -> None:
        stored = self._fold.pop(id_key(key))
        super().__delitem__(stored)

    def clear(self) -> None:
        self._fold.clear()
        super().clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> CiTable:
        twin = CiTable()
        for key, value in self.items():
            twin[key] = copy.deepcopy(value, memo)
        return twin


@dataclass
class Role:
    """The API user's role. ``account_read``/``account_stream`` are levels of :data:`LEVELS` (the emulator
    implements "all", "own" and "no"); ``read_only_fields`` are Document field (or attribute) names whose
    field-level edit is "no"; ``global_stream`` is the GlobalStream scope."""

    account_read: str = "all"
    account_stream: str = "all"
    global_stream: bool = False
    read_only_fields: set[str] = field(default_factory=set)
    document_read: str = "all"  # "team"/"own": some Documents may be hidden from the role (hide_document)

    def check(self) -> None:
        for name in ("account_read", "account_stream"):
            if getattr(self, name) not in ("all", "own", "no"):
                raise ValueError(f"{name} must be 'all', 'own' or 'no', not {getattr(self, name)!r}")
        if self.document_read not in ("all", "team", "own"):
            raise ValueError(f"document_read must be 'all', 'team' or 'own', not {self.document_read!r}")

    # -- record level ------------------------------------------------------------------------------

    @staticmethod
    def allows(level: str, record: Mapping[str, Any], user_id: str) -> bool:
        """DefaultAccessChecker for one record at ``level`` (entity types with an ``assignedUser`` field)."""
        if level == "all":
            return True
        if level == "own":
            return record.get("assignedUserId") == user_id
        return False

    def account_readable(self, record: Mapping[str, Any], user_id: str) -> bool:
        return self.allows(self.account_read, record, user_id)

    def account_streamable(self, record: Mapping[str, Any], user_id: str) -> bool:
        """Stream access to one Account (GlobalRecordService ``checkAccess``): the stream level alone decides,
        a role may stream "all" while reading "own" (the real server accepts and applies that)."""
        return self.allows(self.account_stream, record, user_id)

    def streams_accounts(self) -> bool:
        """Account is among GlobalStream's parent types: scope read and stream both above "no"."""
        return self.account_read != "no" and self.account_stream != "no"

    # -- App/user ----------------------------------------------------------------------------------

    def read_only_field_names(self, fields: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """The Document fields named in :attr:`read_only_fields` (attribute names map to their field)."""
        names: list[str] = []
        for name in sorted(self.read_only_fields):
            owner = _field_of(name, fields)
            if owner is not None and owner not in names:
                names.append(owner)
        return names

    def acl(self, fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """``GET App/user`` → ``acl`` for the API user, shaped as EspoCRM 9.2.7 answers it."""
        table: dict[str, Any] = {
            "Attachment": _scope("own", "no", "own", "own", "yes"),
            "GlobalStream": self.global_stream,
            "Account": _scope(self.account_read, self.account_stream, "no", "no", "no"),
            "Contact": _scope("all", "no", "no", "no", "no"),
            "Document": _scope(self.document_read, self.document_read, self.document_read, "no", "no"),
        }
        read_only = self.read_only_field_names(fields)
        field_table = {"Account": {}, "Contact": {}, "Attachment": {},
                       "Document": {name: {"read": "yes", "edit": "no"} for name in read_only}}
        quick = {entity: _quick_access(entity_fields, fields if entity == "Document" else {})
                 for entity, entity_fields in field_table.items()}
        return {"table": table, "fieldTable": field_table, "assignmentPermission": "no",
                "exportPermission": "no", "massUpdatePermission": "no", "userPermission": "no",
                "portalPermission": "no", "fieldTableQuickAccess": quick}

    def edit_forbidden(self, attribute: str, fields: Mapping[str, Mapping[str, Any]]) -> bool:
        """A Document attribute whose field the role may not edit (silently dropped from a PUT, §11.2)."""
        if attribute in self.read_only_fields:
            return True
        owner = _field_of(attribute, fields)
        return owner is not None and owner in self.read_only_fields


def _scope(read: str, stream: str, edit: str, delete: str, create: str) -> dict[str, str]:
    return {"read": read, "stream": stream, "edit": edit, "delete": delete, "create": create}


def _field_of(name: str, fields: Mapping[str, Mapping[str, Any]]) -> str | None:
    if name in fields:
        return name
    for suffix in ("Ids", "Names", "Id", "Name"):
        base = name.removesuffix(suffix)
        if base != name and base in fields:
            return base
    return None


def attributes_of(name: str, definition: Mapping[str, Any]) -> list[str]:
    kind = definition.get("type")
    if kind in ("link", "file", "image"):
        return [name + "Id", name + "Name"]
    if kind in ("linkMultiple", "attachmentMultiple"):
        return [name + "Ids", name + "Names"]
    return [name]


def _quick_access(forbidden: Mapping[str, Mapping[str, str]],
                  fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    def split(action: str, kind: str) -> dict[str, list[str]]:
        yes: list[str] = []
        no: list[str] = []
        for name, levels in forbidden.items():
            names = attributes_of(name, fields.get(name, {})) if kind == "attributes" else [name]
            (yes if levels[action] == "yes" else no).extend(names)
        return {"yes": yes, "no": no}

    return {kind: {action: split(action, kind) for action in ("read", "edit")} for kind in ("attributes", "fields")}
