"""EspoCRM custom fields: metadata and labels under logical and renamed names, and the live-metadata check."""

from __future__ import annotations

import json
from typing import Any

import pytest

from docsync_cli.crm.fields import (
    ACCOUNT_FIELDS,
    REQUIRED_FIELDS,
    XAI_SYNC_STATUS_OPTIONS,
    check_fields,
    entity_defs,
    i18n_labels,
    inspect_fields,
)

LOGICAL = {name: name for name in REQUIRED_FIELDS}
PREFIXED = {name: "c" + name[0].upper() + name[1:] for name in REQUIRED_FIELDS}  # EspoCRM >= 8.2 style


def test_required_fields_match_the_contract() -> None:
    assert REQUIRED_FIELDS["dateiStatus"] == {
        "type": "enum",
        "options": ["", "Neu", "Geändert", "Gesynct", "Fehler"],
        "default": "Neu",
    }
    assert REQUIRED_FIELDS["md5"]["maxLength"] == 32
    assert REQUIRED_FIELDS["sha"]["maxLength"] == 64
    assert REQUIRED_FIELDS["xaiFileId"]["maxLength"] == 100
    assert REQUIRED_FIELDS["xaiCollections"]["type"] == "array"
    assert REQUIRED_FIELDS["xaiSyncedHash"]["maxLength"] == 64
    assert REQUIRED_FIELDS["xaiSyncStatus"]["options"] == ["", "pending", "syncing", "synced", "failed"]
    assert REQUIRED_FIELDS["xaiSyncError"]["type"] == "text"
    assert REQUIRED_FIELDS["preview"]["type"] == "image"
    assert ACCOUNT_FIELDS == {"xaiCollectionId": {"type": "varchar", "maxLength": 100}}


def test_duplicating_a_record_in_espocrm_does_not_copy_the_xai_fields() -> None:
    fields = entity_defs(PREFIXED)["fields"]
    xai = [name for logical, name in PREFIXED.items() if logical.startswith("xai")]
    assert len(xai) == 5
    assert all(fields[name].get("duplicateIgnore") is True for name in xai), fields


def test_entity_defs_uses_logical_names_by_default() -> None:
    defs = entity_defs({})
    assert set(defs["fields"]) == set(REQUIRED_FIELDS)
    assert all(field["isCustom"] is True for field in defs["fields"].values())
    assert defs["fields"]["md5"] == {"type": "varchar", "maxLength": 32, "isCustom": True}
    json.dumps(defs)  # ready to write as Document.json


def test_entity_defs_with_renamed_fields_and_no_shared_state() -> None:
    defs = entity_defs(PREFIXED)
    assert set(defs["fields"]) == set(PREFIXED.values())
    assert defs["fields"]["cDateiStatus"]["options"] == ["", "Neu", "Geändert", "Gesynct", "Fehler"]
    defs["fields"]["cDateiStatus"]["options"].append("mutated")
    assert "mutated" not in entity_defs(PREFIXED)["fields"]["cDateiStatus"]["options"]


def test_entity_defs_for_account() -> None:
    assert entity_defs({"xaiCollectionId": "cXaiCollectionId"}, entity="Account") == {
        "fields": {"cXaiCollectionId": {"type": "varchar", "maxLength": 100, "isCustom": True}}
    }
    with pytest.raises(ValueError, match="Contact"):
        entity_defs({}, entity="Contact")


@pytest.mark.parametrize(
    ("language", "status_label", "new_label"), [("de_DE", "Datei-Status", "Neu"), ("en_US", "File Status", "New")]
)
def test_labels(language: str, status_label: str, new_label: str) -> None:
    labels = i18n_labels(PREFIXED, language)
    assert set(labels["fields"]) == set(PREFIXED.values())
    assert labels["fields"]["cDateiStatus"] == status_label
    assert labels["options"]["cDateiStatus"]["Neu"] == new_label
    assert set(labels["options"]["cXaiSyncStatus"]) == set(XAI_SYNC_STATUS_OPTIONS)


def test_labels_reject_unknown_language() -> None:
    with pytest.raises(ValueError, match="de_DE"):
        i18n_labels({}, "fr_FR")


def live_metadata(names: dict[str, str]) -> dict[str, Any]:
    """What GET Metadata?key=entityDefs.Document.fields would return with all fields set up correctly."""
    fields: dict[str, Any] = {"name": {"type": "varchar"}, "file": {"type": "file"}}
    fields.update(entity_defs(names)["fields"])
    return fields


def test_check_accepts_correct_fields_logical_and_renamed() -> None:
    assert check_fields(live_metadata(LOGICAL), LOGICAL) == []
    assert check_fields(live_metadata(PREFIXED), PREFIXED) == []
    assert (
        check_fields({"cXaiCollectionId": {"type": "varchar"}}, {"xaiCollectionId": "cXaiCollectionId"}, "Account")
        == []
    )


def test_check_reports_every_missing_field_with_the_fix() -> None:
    problems = check_fields(None, LOGICAL)
    assert len(problems) == len(REQUIRED_FIELDS)
    assert all("Administration > Entity Manager > Document > Fields" in problem for problem in problems)
    assert all("docsync espocrm-fields" in problem for problem in problems)


def test_c_prefixed_fields_are_found_without_a_mapping_and_said_so() -> None:
    schema = inspect_fields(live_metadata(PREFIXED), {})
    assert schema.problems == ()
    assert schema.names == PREFIXED
    assert len(schema.notes) == len(REQUIRED_FIELDS)
    assert 'espocrm.fields.dateiStatus = "cDateiStatus"' in schema.notes[0]
    # A name the admin configured is used as it is: no guessing behind it.
    problems = check_fields(live_metadata(PREFIXED), {"dateiStatus": "statusDatei"})
    assert len(problems) == 1 and "statusDatei (docsync's dateiStatus)" in problems[0]


def design_doc_metadata() -> dict[str, Any]:
    """The Document fields exactly as the design document defines them (the emulator's default profile)."""
    from docsync_sandbox.crm_profiles import DESIGN_DOC_FIELDS

    return {"name": {"type": "varchar"}, **{n: {**d, "isCustom": True} for n, d in DESIGN_DOC_FIELDS.items()}}


def test_check_passes_on_the_design_documents_own_fields_with_hints_for_extras() -> None:
    schema = inspect_fields(design_doc_metadata(), LOGICAL)
    assert schema.problems == ()
    assert schema.options["xaiSyncStatus"] == ("syncing", "synced", "failed")
    assert not schema.accepts("xaiSyncStatus", "pending") and not schema.accepts("xaiSyncStatus", "")
    assert not schema.accepts("xaiSyncStatus", None) and schema.accepts("xaiSyncStatus", "syncing")
    assert [hint for hint in schema.hints if "'pending'" in hint and "optional" in hint]


def test_preview_may_be_a_file_field_but_not_a_text_field() -> None:
    metadata = design_doc_metadata()
    metadata["preview"] = {"type": "file"}
    assert inspect_fields(metadata, LOGICAL).preview_type == "file"
    metadata["preview"] = {"type": "varchar"}
    assert "'image' or 'file'" in check_fields(metadata, LOGICAL)[0]


def test_an_option_docsync_writes_missing_is_a_problem() -> None:
    metadata = design_doc_metadata()
    metadata["xaiSyncStatus"] = {"type": "enum", "options": ["synced", "failed"]}
    problems = check_fields(metadata, LOGICAL)
    assert len(problems) == 1 and "'syncing' that docsync writes" in problems[0]


def test_unreadable_metadata_assumes_the_design_documents_options() -> None:
    schema = inspect_fields(None, LOGICAL)
    assert not schema.known and not schema.accepts("xaiSyncStatus", "pending")
    assert schema.accepts("dateiStatus", "Gesynct") and not schema.accepts("dateiStatus", "")


def test_check_reports_wrong_type_missing_option_short_varchar_and_read_only() -> None:
    metadata = live_metadata(PREFIXED)
    metadata["cMd5"] = {"type": "text"}
    metadata["cDateiStatus"] = {"type": "enum", "options": ["", "Neu", "Geändert"]}
    metadata["cSha"] = {"type": "varchar", "maxLength": 40}
    metadata["cXaiFileId"] = {"type": "varchar", "maxLength": 100, "readOnly": True}
    problems = check_fields(metadata, PREFIXED)
    assert len(problems) == 4, problems
    by_field = {problem.split()[2]: problem for problem in problems}
    assert "type 'text' but docsync needs 'varchar'" in by_field["cMd5"]
    assert "(docsync's md5)" in by_field["cMd5"]
    assert "'Gesynct', 'Fehler'" in by_field["cDateiStatus"]
    assert "Entity Manager > Document > Fields" in by_field["cDateiStatus"]
    assert "set Max Length to 64" in by_field["cSha"]
    assert "read-only" in by_field["cXaiFileId"]


def test_an_unknown_label_language_is_a_usage_error_before_anything_is_printed() -> None:
    """`docsync espocrm-fields --language fr_FR` printed the entityDefs, then a ValueError traceback (exit 1)."""
    from typer.testing import CliRunner

    from docsync_cli.cli.app import app

    done = CliRunner().invoke(app, ["espocrm-fields", "--language", "fr_FR"], env={"DOCSYNC_CONFIG": "/nonexistent"})
    assert done.exit_code == 2, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert "fr_FR" in done.output and "de_DE" in done.output and "en_US" in done.output
    assert "entityDefs" not in done.output
