"""The EspoCRM side of the contract: the custom fields docsync needs, as metadata, labels and a check.

This module owns the *definitions* of docsync's custom fields (type, options, lengths) under their logical
names, and three pure functions over them:

* :func:`entity_defs`: the ``custom/Espo/Custom/Resources/metadata/entityDefs/<Entity>.json`` content that
  creates them (then Administration > Rebuild),
* :func:`i18n_labels`: the matching ``custom/Espo/Custom/Resources/i18n/<language>/<Entity>.json``
  (``de_DE`` or ``en_US``),
* :func:`check_fields`: the problems in a live ``entityDefs.<Entity>.fields`` metadata object (as returned by
  ``GET Metadata?key=entityDefs.Document.fields``), each with its fix.

The admin may give the fields other attribute names (EspoCRM ≥ 8.2 prefixes custom fields with ``c``:
``dateiStatus`` becomes ``cDateiStatus``). Every function therefore takes ``names``, a mapping from logical
name to real attribute name (``settings.espocrm.fields.model_dump()``); a logical name missing from it is used
as is. No I/O here: fetching metadata is ``crm/client.py``'s job, printing is ``cli.py``'s.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from docsync_cli.model import Field

DOCUMENT = "Document"
ACCOUNT = "Account"

DATEI_STATUS_OPTIONS = ["", "Neu", "Geändert", "Gesynct", "Fehler"]
XAI_SYNC_STATUS_OPTIONS = ["", "pending", "syncing", "synced", "failed"]

REQUIRED_FIELDS: dict[str, dict[str, object]] = {
    # Workflow status shown to users; docsync sets Gesynct/Fehler, users (or a formula) set Neu/Geändert.
    Field.DATEI_STATUS: {"type": "enum", "options": DATEI_STATUS_OPTIONS, "default": "Neu"},
    # Hex digests of the attached file, written after each download.
    Field.MD5: {"type": "varchar", "maxLength": 32},
    Field.SHA: {"type": "varchar", "maxLength": 64},
    # The xAI file id of the uploaded copy.
    Field.XAI_FILE_ID: {"type": "varchar", "maxLength": 100, "duplicateIgnore": True},
    # The xAI collection ids the file is in.
    Field.XAI_COLLECTIONS: {"type": "array", "storeArrayValues": True, "duplicateIgnore": True},
    # SHA-256 of the content that is in xAI: differs from ``sha`` while an update is pending.
    Field.XAI_SYNCED_HASH: {"type": "varchar", "maxLength": 64, "duplicateIgnore": True},
    Field.XAI_SYNC_STATUS: {"type": "enum", "options": XAI_SYNC_STATUS_OPTIONS, "default": "", "duplicateIgnore": True},
    # The last error in one line (no secrets, no document content).
    Field.XAI_SYNC_ERROR: {"type": "text", "duplicateIgnore": True},
    # WebP preview of the first page.
    Field.PREVIEW: {"type": "image"},
}
"""Custom ``Document`` fields, by logical name. The xai* fields say ``duplicateIgnore``: EspoCRM's "Duplicate"
leaves them empty in the copy, so a copied record never claims the original's xAI file (docsync checks ownership
anyway: a copy that does carry them gets its own upload)."""

ACCOUNT_FIELDS: dict[str, dict[str, object]] = {
    # The xAI collection that holds this account's documents.
    "xaiCollectionId": {"type": "varchar", "maxLength": 100},
}
"""Custom ``Account`` fields, by logical name."""

FIELDS_BY_ENTITY: dict[str, dict[str, dict[str, object]]] = {DOCUMENT: REQUIRED_FIELDS, ACCOUNT: ACCOUNT_FIELDS}

_LABELS: dict[str, dict[str, str]] = {
    "de_DE": {
        Field.DATEI_STATUS: "Datei-Status",
        Field.MD5: "MD5",
        Field.SHA: "SHA-256",
        Field.XAI_FILE_ID: "xAI-Datei-ID",
        Field.XAI_COLLECTIONS: "xAI-Collections",
        Field.XAI_SYNCED_HASH: "xAI: synchronisierter Hash",
        Field.XAI_SYNC_STATUS: "xAI-Sync-Status",
        Field.XAI_SYNC_ERROR: "xAI-Sync-Fehler",
        Field.PREVIEW: "Vorschau",
        "xaiCollectionId": "xAI-Collection-ID",
    },
    "en_US": {
        Field.DATEI_STATUS: "File Status",
        Field.MD5: "MD5",
        Field.SHA: "SHA-256",
        Field.XAI_FILE_ID: "xAI File ID",
        Field.XAI_COLLECTIONS: "xAI Collections",
        Field.XAI_SYNCED_HASH: "xAI Synced Hash",
        Field.XAI_SYNC_STATUS: "xAI Sync Status",
        Field.XAI_SYNC_ERROR: "xAI Sync Error",
        Field.PREVIEW: "Preview",
        "xaiCollectionId": "xAI Collection ID",
    },
}

_OPTION_LABELS: dict[str, dict[str, dict[str, str]]] = {
    "de_DE": {
        Field.DATEI_STATUS: {"": "", "Neu": "Neu", "Geändert": "Geändert", "Gesynct": "Gesynct", "Fehler": "Fehler"},
        Field.XAI_SYNC_STATUS: {
            "": "",
            "pending": "Ausstehend",
            "syncing": "Wird synchronisiert",
            "synced": "Synchronisiert",
            "failed": "Fehlgeschlagen",
        },
    },
    "en_US": {
        Field.DATEI_STATUS: {"": "", "Neu": "New", "Geändert": "Changed", "Gesynct": "Synced", "Fehler": "Error"},
        Field.XAI_SYNC_STATUS: {
            "": "",
            "pending": "Pending",
            "syncing": "Syncing",
            "synced": "Synced",
            "failed": "Failed",
        },
    },
}

LANGUAGES = tuple(_LABELS)


def real_name(names: Mapping[str, str], logical: str) -> str:
    """The attribute name the admin chose for ``logical`` (``logical`` itself when ``names`` has no entry)."""
    return names.get(logical) or logical


def entity_defs(names: Mapping[str, str], entity: str = DOCUMENT) -> dict[str, Any]:
    """The ``entityDefs/<entity>.json`` content defining docsync's custom fields of ``entity``.

    ``{"fields": {<real name>: {"type": ..., ..., "isCustom": true}}}``, ready for ``json.dump``. Raises
    ``ValueError`` for an entity other than ``Document`` or ``Account``.
    """
    fields = _fields_of(entity)
    return {
        "fields": {
            real_name(names, logical): {**copy.deepcopy(definition), "isCustom": True}
            for logical, definition in fields.items()
        }
    }


ACCOUNTS_OVERRIDE: dict[str, Any] = {"accounts": {"noLoad": False}}
"""The optional override on the standard ``Document.accounts`` field (contract §10.6): listings then carry
``accountsIds``, so a listing pass sees every document's accounts without a request per document."""


def with_accounts_override(defs: dict[str, Any]) -> dict[str, Any]:
    """``entity_defs(...)`` for Document plus :data:`ACCOUNTS_OVERRIDE` (the same custom file holds both)."""
    merged = copy.deepcopy(defs)
    merged.setdefault("fields", {}).update(copy.deepcopy(ACCOUNTS_OVERRIDE))
    return merged


def i18n_labels(names: Mapping[str, str], language: str = "de_DE", entity: str = DOCUMENT) -> dict[str, Any]:
    """The ``i18n/<language>/<entity>.json`` content: field labels and enum option labels, by real name.

    ``language`` is ``"de_DE"`` or ``"en_US"``; anything else raises ``ValueError``.
    """
    if language not in _LABELS:
        raise ValueError(f"no labels for language {language!r}; choose one of {', '.join(LANGUAGES)}")
    fields = _fields_of(entity)
    labels = {real_name(names, logical): _LABELS[language][logical] for logical in fields}
    options = {
        real_name(names, logical): dict(option_labels)
        for logical, option_labels in _OPTION_LABELS[language].items()
        if logical in fields
    }
    return {"fields": labels, "options": options}


WRITTEN_OPTIONS: dict[str, tuple[str, ...]] = {
    Field.DATEI_STATUS: ("Gesynct", "Fehler"),
    Field.XAI_SYNC_STATUS: ("syncing", "synced", "failed"),
}
"""The enum options docsync writes: a field without one of them cannot be used (``sync`` refuses to start)."""

READ_OPTIONS: dict[str, tuple[str, ...]] = {Field.DATEI_STATUS: ("Neu", "Geändert")}
"""Options people (or a formula) set and docsync reads: missing ones are a hint, not a failure."""

OFFERED_OPTIONS: dict[str, tuple[str, ...]] = {Field.XAI_SYNC_STATUS: ("pending",)}
"""Options docsync uses when they exist: ``pending`` (uploaded, xAI still indexing) is otherwise written as
``syncing``; this host's state keeps the difference."""

FALLBACK_OPTIONS: dict[str, tuple[str, ...]] = {
    Field.DATEI_STATUS: ("Neu", "Geändert", "Gesynct", "Fehler"),
    Field.XAI_SYNC_STATUS: ("syncing", "synced", "failed"),
}
"""The design document's options: what docsync assumes when the field definitions cannot be read."""

PREVIEW_TYPES = ("image", "file")


@dataclass(frozen=True)
class FieldSchema:
    """The Document fields as this CRM really defines them.

    ``names`` maps every logical name to the attribute that exists (``cDateiStatus`` found by itself when the
    plain name does not exist and no other name was configured); ``options`` the enum options; ``preview_type``
    ``image`` or ``file``; ``problems`` what makes syncing impossible (each with its fix); ``hints`` optional
    extras; ``notes`` the names docsync found by itself; ``known`` False when the definitions could not be read
    (then the design document's options are assumed).
    """

    names: dict[str, str]
    options: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(FALLBACK_OPTIONS))
    preview_type: str = "image"
    problems: tuple[str, ...] = ()
    hints: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    known: bool = True
    problem_fields: tuple[str, ...] = ()  # the logical field of each problem, in the same order

    def accepts(self, logical: str, value: object) -> bool:
        """Whether the field ``logical`` accepts ``value`` (non-enum fields accept anything here). EspoCRM maps
        an option ``""`` to null and compares loosely, so ``""`` and null are accepted only where ``""`` is one
        of the options (contract §10.1)."""
        options = self.options.get(logical)
        if options is None:
            return True
        if value is None or value == "":
            return "" in options
        return value in options


def inspect_fields(metadata_fields: Mapping[str, Any] | None, names: Mapping[str, str],
                   entity: str = DOCUMENT) -> FieldSchema:
    """Read ``entityDefs.<entity>.fields`` (``None``: the metadata could not be read or was empty) against
    docsync's needs. ``names`` are the configured attribute names (a logical name missing from it, or mapped
    to itself, may be found under its ``c``-prefixed name)."""
    present: Mapping[str, Any] = metadata_fields or {}
    problems: list[str] = []
    problem_fields: list[str] = []
    hints: list[str] = []
    notes: list[str] = []
    resolved: dict[str, str] = {}
    options: dict[str, tuple[str, ...]] = {}
    preview_type = "image"
    for logical, wanted in _fields_of(entity).items():
        name = real_name(names, logical)
        prefixed = "c" + name[:1].upper() + name[1:]
        if (name == logical and not isinstance(present.get(name), Mapping)
                and isinstance(present.get(prefixed), Mapping)):
            notes.append(f"{entity} field {logical} is {prefixed} in this CRM (EspoCRM ≥ 8.2 prefixes custom "
                         f'fields with \'c\'); docsync uses it. Set espocrm.fields.{logical} = "{prefixed}" to say so')
            name = prefixed
        resolved[logical] = name
        label = name if name == logical else f"{name} (docsync's {logical})"
        fix = f"fix it in Administration > Entity Manager > {entity} > Fields, or run `docsync espocrm-fields`"
        actual = present.get(name)
        if not isinstance(actual, Mapping):
            _add(problems, problem_fields, logical, _missing(entity, logical, name, label, wanted, present))
            continue
        kinds = PREVIEW_TYPES if logical == Field.PREVIEW else (str(wanted["type"]),)
        if actual.get("type") not in kinds:
            need = " or ".join(repr(kind) for kind in kinds)
            _add(problems, problem_fields, logical,
                f"{entity} field {label} has type {actual.get('type')!r} but docsync needs {need}: "
                f"remove it and add it again with type {kinds[0]} in Administration > Entity Manager > "
                f"{entity} > Fields, or point espocrm.fields.{logical} at a field of that type"
            )
            continue
        if logical == Field.PREVIEW:
            preview_type = str(actual.get("type"))
        if wanted["type"] == "enum":
            have = [str(option) for option in _as_list(actual.get("options"))]
            options[logical] = tuple(have)
            missing = [option for option in WRITTEN_OPTIONS.get(logical, ()) if option not in have]
            if missing:
                shown = ", ".join(repr(option) for option in missing)
                _add(problems, problem_fields, logical,
                     f"{entity} field {label} lacks the option(s) {shown} that docsync writes: {fix} (add the options)")
            unread = [option for option in READ_OPTIONS.get(logical, ()) if option not in have]
            if unread:
                shown = ", ".join(repr(option) for option in unread)
                hints.append(f"{entity} field {label} has no option(s) {shown}: people cannot mark documents as "
                             "new or changed (an empty status counts as new)")
            offered = [option for option in OFFERED_OPTIONS.get(logical, ()) if option not in have]
            if offered:
                shown = ", ".join(repr(option) for option in offered)
                hints.append(f"optional: add the option(s) {shown} to {entity} field {label}: while xAI is still "
                             "indexing an upload docsync then writes 'pending' (now 'syncing'; the next run "
                             "finishes it either way)")
        if wanted["type"] == "varchar":
            needed = int(str(wanted["maxLength"]))
            have_length = actual.get("maxLength")
            if isinstance(have_length, int) and have_length < needed:
                _add(problems, problem_fields, logical,
                    f"{entity} field {label} allows only {have_length} characters but docsync writes up to "
                    f"{needed}: {fix} (set Max Length to {needed})"
                )
        if actual.get("readOnly"):
            _add(problems, problem_fields, logical,
                f"{entity} field {label} is read-only, so EspoCRM silently ignores docsync's writes to it: "
                f"{fix} (untick Read-only)"
            )
    known = metadata_fields is not None
    merged = {**FALLBACK_OPTIONS, **options} if entity == DOCUMENT else options
    return FieldSchema(names=resolved, options=merged, preview_type=preview_type, problems=tuple(problems),
                       hints=tuple(hints), notes=tuple(notes), known=known, problem_fields=tuple(problem_fields))


def _add(problems: list[str], fields: list[str], logical: str, text: str) -> None:
    problems.append(text)
    fields.append(logical)


def check_fields(
    metadata_fields: Mapping[str, Any] | None, names: Mapping[str, str], entity: str = DOCUMENT
) -> list[str]:
    """Every problem with docsync's fields in ``metadata_fields`` (``entityDefs.<entity>.fields``), with its fix.

    Reports a missing field, a wrong type, an enum without an option docsync writes, a varchar shorter than
    needed and a read-only field (EspoCRM silently drops API writes to read-only fields). An empty list means all
    is well. ``None`` (an empty answer of ``GET Metadata?key=...``) counts as "no fields". Optional extras are
    :attr:`FieldSchema.hints` of :func:`inspect_fields`, not problems.
    """
    return list(inspect_fields(metadata_fields, names, entity).problems)


def _missing(
    entity: str,
    logical: str,
    name: str,
    label: str,
    wanted: Mapping[str, object],
    present: Mapping[str, Any],
) -> str:
    message = (
        f"{entity} field {label} (type {wanted['type']}) is missing: add it in Administration > Entity Manager > "
        f"{entity} > Fields, or run `docsync espocrm-fields`"
    )
    prefixed = "c" + name[:1].upper() + name[1:]
    if isinstance(present.get(prefixed), Mapping):
        message += (
            f"; {prefixed} exists (EspoCRM ≥ 8.2 prefixes custom fields with 'c'): if it is this field, set "
            f'espocrm.fields.{logical} = "{prefixed}" in the config'
        )
    return message


def _fields_of(entity: str) -> dict[str, dict[str, object]]:
    try:
        return FIELDS_BY_ENTITY[entity]
    except KeyError:
        raise ValueError(f"docsync defines no fields for entity {entity!r}; choose Document or Account") from None


def _as_list(value: object) -> list[object]:
    return list(value) if isinstance(value, list | tuple) else []
