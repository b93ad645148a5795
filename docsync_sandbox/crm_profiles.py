"""How a real firm's EspoCRM may define docsync's Document fields: the emulator's field profiles.

The default (``design``) is the design document the firm built its CRM from (not public; its Document fields are
:data:`DESIGN_DOC_FIELDS` below), with exactly its enum options: ``dateiStatus`` Neu/Geändert/Gesynct/Fehler and
``xaiSyncStatus`` syncing/synced/failed (no ``""``, no ``"pending"``), and ``preview`` an image field. Those are
fields an admin created by hand in Administration > Entity Manager, with the lengths the design gives (``md5`` 32,
``sha`` and ``xaiSyncedHash`` 64, ``xaiFileId`` 100, as the real loopback EspoCRM of ``../shared/real-espocrm`` is
set up; ``tests/contract/test_answers.py`` compares them) and no enum default for ``xaiSyncStatus``. They are
deliberately *not* taken from docsync's own definitions (:mod:`docsync_cli.crm.fields`): the emulator must
disagree with docsync wherever a real CRM would.

The other profiles are the variations seen in production: the fields ``docsync espocrm-fields`` generates, as an
admin installs them (handed in by whoever starts the emulator, never imported from docsync),
the ``c``-prefixed names EspoCRM ≥ 8.2 gives custom fields (Account's ``cXaiCollectionId`` too, so docsync's link
rule must name it), ``preview`` as a ``file`` field, a lowered
``recordListMaxSizeLimit`` and an HMAC API user.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DESIGN_DOC_FIELDS: dict[str, dict[str, Any]] = {
    "dateiStatus": {"type": "enum", "options": ["Neu", "Geändert", "Gesynct", "Fehler"], "default": "Neu"},
    "md5": {"type": "varchar", "maxLength": 32},
    "sha": {"type": "varchar", "maxLength": 64},
    "xaiFileId": {"type": "varchar", "maxLength": 100},
    "xaiCollections": {"type": "array"},
    "xaiSyncedHash": {"type": "varchar", "maxLength": 64},
    "xaiSyncStatus": {"type": "enum", "options": ["syncing", "synced", "failed"]},
    "xaiSyncError": {"type": "text"},
    "preview": {"type": "image"},
}
"""The design document's Document fields, by logical name, as the Entity Manager stores them."""

LOGICAL_NAMES = tuple(DESIGN_DOC_FIELDS)


def c_prefixed(name: str) -> str:
    """The attribute name EspoCRM ≥ 8.2 gives a custom field typed in as ``name``."""
    return "c" + name[:1].upper() + name[1:]


@dataclass(frozen=True)
class CrmProfile:
    """One way a CRM may be set up: Document field definitions (by logical name), the attribute names they
    got, the list page cap and whether the API user authenticates with HMAC."""

    name: str
    fields: dict[str, dict[str, Any]] = field(default_factory=lambda: copy.deepcopy(DESIGN_DOC_FIELDS))
    field_names: dict[str, str] = field(default_factory=dict)
    max_size_limit: int = 200
    hmac: bool = False


def installed_fields(custom_fields: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The design document's fields after an admin installed ``custom_fields`` (the ``fields`` of a custom
    ``entityDefs/Document.json``, e.g. what ``docsync espocrm-fields`` prints) and rebuilt: EspoCRM merges custom
    metadata over what is there, key by key; ``isCustom`` is bookkeeping, not a property of the field."""
    fields = copy.deepcopy(DESIGN_DOC_FIELDS)
    for name, definition in custom_fields.items():
        merged = {**fields.get(name, {}), **copy.deepcopy(dict(definition))}
        merged.pop("isCustom", None)
        fields[name] = merged
    return fields


def _preview_file() -> dict[str, dict[str, Any]]:
    fields = copy.deepcopy(DESIGN_DOC_FIELDS)
    fields["preview"] = {"type": "file"}
    return fields


def profile(name: str, *, installed: Mapping[str, Mapping[str, Any]] | None = None) -> CrmProfile:
    """The named profile; ``ValueError`` for an unknown name (see :data:`PROFILE_NAMES`). ``generated`` is the
    design document's CRM after an admin installed the entityDefs ``fields`` given as ``installed`` (the emulator
    never reads docsync's own definitions: whoever starts it hands over what the admin would paste)."""
    if name == "design":
        return CrmProfile("design")
    if name == "generated":
        if installed is None:
            raise ValueError("the generated profile needs the installed fields (docsync espocrm-fields' entityDefs)")
        return CrmProfile("generated", fields=installed_fields(installed))
    if name == "c-prefixed":
        # the Entity Manager prefixes the Account field too (found against a real 9.2.7: disagreements.md #3)
        names = {n: c_prefixed(n) for n in (*LOGICAL_NAMES, "xaiCollectionId")}
        return CrmProfile("c-prefixed", field_names=names)
    if name == "preview-file":
        return CrmProfile("preview-file", fields=_preview_file())
    if name == "page-cap-50":
        return CrmProfile("page-cap-50", max_size_limit=50)
    if name == "hmac":
        return CrmProfile("hmac", hmac=True)
    raise ValueError(f"unknown CRM profile {name!r}; choose one of {', '.join(PROFILE_NAMES)}")


PROFILE_NAMES = ("design", "generated", "c-prefixed", "preview-file", "page-cap-50", "hmac")
