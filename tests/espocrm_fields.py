"""docsync's own field definitions as an admin installs them into the emulated EspoCRM: the tests hand over what
``docsync espocrm-fields`` prints, exactly as an admin pastes it; the emulator never imports docsync's definitions."""

from __future__ import annotations

from typing import Any

from docsync_cli.crm.fields import entity_defs
from docsync_sandbox.crm_profiles import CrmProfile, installed_fields, profile


def generated_entity_defs() -> dict[str, dict[str, Any]]:
    """The ``fields`` of the ``entityDefs/Document.json`` that ``docsync espocrm-fields`` prints (default names)."""
    fields: dict[str, dict[str, Any]] = entity_defs({})["fields"]
    return fields


def generated_fields() -> dict[str, dict[str, Any]]:
    """The design document's Document fields after installing docsync's generated entityDefs."""
    return installed_fields(generated_entity_defs())


def crm_profile(name: str) -> CrmProfile:
    """The emulator profile ``name``; ``generated`` gets docsync's entityDefs installed."""
    return profile(name, installed=generated_entity_defs() if name == "generated" else None)
