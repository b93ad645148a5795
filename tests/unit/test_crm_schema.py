"""``docsync_cli.crm.schema.LearnedSchema``: what one CRM's answers teach (attribute names, enum options, the
page cap), records mapped to ``CrmDocument`` and docsync's values made into an update body every field accepts.
Pure: the answers are given as data (EspoCRM contract §6.2, §10.1, §10.2, §10.4 in ``docs/contracts.md``)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from docsync_cli.config import FieldNames
from docsync_cli.crm.schema import PAGE, ApiUser, LearnedSchema, fingerprint, parse_api_user
from docsync_cli.errors import RejectedError, SetupError
from docsync_cli.outcome import error_code
from docsync_cli.secrets import register

RENAMED = {"dateiStatus": "cDateiStatus", "md5": "cMd5", "sha": "cSha", "xaiFileId": "cXaiFileId",
           "xaiCollections": "cXaiCollections", "xaiSyncedHash": "cXaiSyncedHash",
           "xaiSyncStatus": "cXaiSyncStatus", "xaiSyncError": "cXaiSyncError", "preview": "cPreview"}
DESIGN_FIELDS = {
    "cDateiStatus": {"type": "enum", "options": ["Neu", "Geändert", "Gesynct", "Fehler"]},
    **{f"c{n}": {"type": "varchar", "maxLength": 100} for n in ("Md5", "Sha", "XaiFileId", "XaiSyncedHash")},
    "cXaiCollections": {"type": "array"}, "cXaiSyncError": {"type": "text"},
    "cXaiSyncStatus": {"type": "enum", "options": ["syncing", "synced", "failed"]},
    "cPreview": {"type": "file"},
}


def make_schema(*, renamed: bool = False) -> LearnedSchema:
    return LearnedSchema(RENAMED if renamed else FieldNames().model_dump())


def record(doc_id: str, **values: Any) -> dict[str, Any]:
    return {"id": doc_id, "name": f"Doc {doc_id}", "modifiedAt": "2025-03-01 12:00:00", "fileId": f"att-{doc_id}",
            "fileName": f"{doc_id}.pdf", "versionNumber": 3, **values}


# -- before anything is learned ------------------------------------------------------------------------


def test_until_learned_the_configured_names_and_the_design_documents_options_hold() -> None:
    schema = make_schema(renamed=True)
    assert schema.attributes == RENAMED and schema.preview_attr == "cPreviewId"
    assert not schema.fields.known and schema.page_size == PAGE == 200 and schema.api_user is None
    assert schema.fields.accepts("xaiSyncStatus", "syncing") and not schema.fields.accepts("xaiSyncStatus", "")
    assert schema.writable({"xaiSyncStatus": "pending"}) == {"xaiSyncStatus": "syncing"}


# -- learning ------------------------------------------------------------------------------------------


def test_the_fields_answer_gives_the_c_prefixed_names_options_and_preview_type() -> None:
    schema = make_schema()
    learned = schema.adopt_fields(DESIGN_FIELDS)
    assert schema.fields is learned and learned.known and learned.preview_type == "file"
    assert schema.attributes["dateiStatus"] == "cDateiStatus" and schema.preview_attr == "cPreviewId"
    assert learned.options["xaiSyncStatus"] == ("syncing", "synced", "failed")


def test_espocrm_8_0_answers_the_whole_tree_and_the_fields_are_found_in_it() -> None:
    schema = make_schema()
    assert schema.adopt_fields({"entityDefs": {"Document": {"fields": DESIGN_FIELDS}}, "scopes": {}}).known
    assert schema.attributes["xaiSyncStatus"] == "cXaiSyncStatus"


@pytest.mark.parametrize("answer", [None, {}, [], "text"])
def test_fields_that_cannot_be_read_leave_the_configured_names(answer: Any) -> None:
    schema = make_schema(renamed=True)
    assert not schema.adopt_fields(answer).known
    assert schema.attributes == RENAMED and schema.preview_attr == "cPreviewId"


def test_names_found_by_themselves_are_logged_in_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="docsync"):
        make_schema().adopt_fields(DESIGN_FIELDS)
        make_schema(renamed=True).adopt_fields(DESIGN_FIELDS)  # configured as they are: nothing to say
    lines = [r.getMessage() for r in caplog.records if "prefixes custom fields" in r.getMessage()]
    assert len(lines) == 1 and "cDateiStatus for dateiStatus" in lines[0]


@pytest.mark.parametrize(("answer", "page"), [
    ({"settings": {"recordListMaxSizeLimit": 50}}, 50), ({"settings": {"recordListMaxSizeLimit": 500}}, 200),
    ({"settings": {"recordListMaxSizeLimit": 0}}, 200), ({"settings": {"recordListMaxSizeLimit": True}}, 200),
    ({"settings": {"recordListMaxSizeLimit": "50"}}, 200), ({"settings": []}, 200), ({"user": {}}, 200),
    (None, 200), ([], 200),
])
def test_the_page_cap_is_app_users_record_list_max_size_limit_at_most_200(answer: Any, page: int) -> None:
    schema = make_schema()
    user = parse_api_user(answer)
    schema.adopt_app_user(user)
    assert schema.page_size == page
    assert schema.api_user is user  # the change feeds read its ACL
    schema.adopt_app_user(None)  # App/user could not be read
    assert schema.page_size == PAGE and schema.api_user is None


def test_the_api_user_is_named_by_user_name_then_name() -> None:
    # EspoCRM contract §1.3: App/user's `user`.
    assert parse_api_user({"user": {"userName": "docsync-api", "name": "Docsync"}}).label == "docsync-api"
    assert parse_api_user({"user": {"name": "Docsync"}}).label == "Docsync"
    assert parse_api_user({"user": "odd"}).label == "?"
    assert parse_api_user(None) == ApiUser() and ApiUser().label == "?"


def test_the_acl_table_tells_denied_rights_and_disabled_scopes() -> None:
    # EspoCRM contract §7.2: the role's table, scope -> false | {action: level}; "no" (or false) denies.
    user = parse_api_user({"acl": {"table": {"Document": {"read": "all", "edit": "no"}, "Attachment": {"create": False},
                                             "GlobalStream": False, "Account": True, "Note": {"read": "own"}}}})
    assert user.acl_known and user.disabled_scopes == {"GlobalStream"}
    assert user.denied == {("Document", "edit"), ("Attachment", "create")}
    assert user.denies("Document", "edit") and not user.denies("Document", "read")
    assert not user.denies("Lead", "read")  # not in the table: not denied
    no_tables: list[Any] = [{"acl": {}}, {"acl": {"table": []}}, {"acl": "odd"}, {}, []]
    for no_table in no_tables:
        assert parse_api_user(no_table) == ApiUser()  # nothing to judge


# -- docsync's values -> the wire ----------------------------------------------------------------------


def test_values_the_fields_accept_are_written_as_they_are() -> None:
    values = {"xaiSyncStatus": "synced", "dateiStatus": "Gesynct", "md5": "m" * 32, "xaiSyncError": ""}
    assert make_schema().writable(values) == values


def test_pending_becomes_syncing_and_a_cleared_status_is_left_out_where_they_are_no_options() -> None:
    schema = make_schema()
    schema.adopt_fields(DESIGN_FIELDS)  # xaiSyncStatus: syncing, synced, failed; dateiStatus without ""
    assert schema.writable({"xaiSyncStatus": "pending", "dateiStatus": "", "md5": ""}) == {
        "xaiSyncStatus": "syncing", "md5": ""}
    assert schema.writable({"xaiSyncStatus": None}) == {}


def test_a_value_the_field_refuses_is_a_setup_error_naming_field_and_options() -> None:
    schema = make_schema()
    schema.adopt_fields(DESIGN_FIELDS)
    with pytest.raises(SetupError) as caught:
        schema.writable({"dateiStatus": "Gelöscht"})
    assert error_code(caught.value) == 2
    assert "cDateiStatus has no option 'Gelöscht'" in str(caught.value) and "'Neu'" in str(caught.value)


def test_the_update_body_uses_this_crms_names_and_never_carries_a_secret() -> None:
    register(["sk-body-secret-1234"])
    body = make_schema(renamed=True).update_body({"xaiSyncError": "401: key sk-body-secret-1234 refused",
                                                  "xaiCollections": ["c1"], "xaiSyncStatus": "pending"})
    assert set(body) == {"cXaiSyncError", "cXaiCollections", "cXaiSyncStatus"}
    assert "sk-body-secret-1234" not in body["cXaiSyncError"] and body["cXaiCollections"] == ["c1"]


# -- the wire -> docsync's model -----------------------------------------------------------------------


def test_the_fingerprint_ignores_only_the_modification_bookkeeping() -> None:
    base = record("d1")
    same = base | {"modifiedAt": "2025-03-02 00:00:00", "versionNumber": 9, "modifiedById": "u2",
                   "modifiedByName": "Someone"}
    assert fingerprint(base) == fingerprint(same) != fingerprint(base | {"name": "Other"})


def test_listing_selects_every_attribute_docsync_reads() -> None:
    select = make_schema(renamed=True).list_attributes
    assert set(select) >= {"id", "name", "modifiedAt", "fileId", "fileName", "versionNumber", "cPreviewId",
                           "cDateiStatus", "cMd5", "cSha", "cXaiFileId", "cXaiCollections", "cXaiSyncedHash",
                           "cXaiSyncStatus", "cXaiSyncError"}


# -- mapping -------------------------------------------------------------------------------------------


def test_renamed_fields_are_mapped_to_the_model() -> None:
    doc = make_schema(renamed=True).to_document(record(
        "d1", cDateiStatus="Gesynct", cMd5="m" * 32, cSha="s" * 64, cXaiFileId="file_1",
        cXaiCollections=["col_a", "col_b"], cXaiSyncedHash="s" * 64, cXaiSyncStatus="synced", cXaiSyncError="",
        cPreviewId="att-prev", dateiStatus="Neu"))
    assert (doc.datei_status, doc.md5, doc.sha, doc.xai_file_id) == ("Gesynct", "m" * 32, "s" * 64, "file_1")
    assert doc.xai_collections == ("col_a", "col_b")
    assert (doc.xai_synced_hash, doc.xai_sync_status, doc.xai_sync_error) == ("s" * 64, "synced", None)
    assert (doc.preview_id, doc.version, doc.file_id, doc.file_name) == ("att-prev", 3, "att-d1", "d1.pdf")
    assert doc.modified_at == "2025-03-01 12:00:00" and doc.problems == ()


def test_collections_as_json_text_are_tolerated() -> None:
    doc = make_schema().to_document(record("d1", xaiCollections='["col_a"]'))
    assert doc.xai_collections == ("col_a",) and doc.problems == ()


@pytest.mark.parametrize("value", [None, "", []])
def test_empty_collections_are_empty(value: Any) -> None:
    doc = make_schema().to_document(record("d1", xaiCollections=value))
    assert doc.xai_collections == () and doc.problems == ()


def test_wrong_types_are_reported_as_problems() -> None:
    doc = make_schema(renamed=True).to_document(record("d1", cXaiCollections=5, cSha=["a", "b"]))
    assert doc.sha is None and doc.xai_collections == ()
    assert any("cSha" in p and "list" in p for p in doc.problems)
    assert any("cXaiCollections" in p for p in doc.problems)


def test_collections_text_that_is_not_json_is_a_problem() -> None:
    doc = make_schema().to_document(record("d1", xaiCollections="col_a, col_b"))
    assert doc.problems == ("xaiCollections is not a JSON array",)


def test_a_boolean_version_number_is_ignored() -> None:
    assert make_schema().to_document(record("d1", versionNumber=True)).version is None


def test_a_record_without_id_is_rejected() -> None:
    with pytest.raises(RejectedError):
        make_schema().to_document({"name": "x"})




def test_a_role_that_allows_only_some_records_says_which_level() -> None:
    # §11.2: a role level below "all" hides the other records (lists leave them out, a read is 403).
    user = parse_api_user({"acl": {"table": {"Document": {"read": "team", "edit": "team"},
                                             "Account": {"read": "own", "edit": "no"}, "Contact": {"read": "all"},
                                             "GlobalStream": True}}})
    assert user.limit("Document", "read") == "team" and user.limit("Account", "read") == "own"
    assert user.limit("Contact", "read") is None and user.limit("Account", "edit") is None
    assert user.denies("Account", "edit") and not user.denies("Account", "read")
    assert ApiUser().limit("Document", "read") is None


def test_the_field_table_says_which_fields_the_role_may_not_edit() -> None:
    # §11.2: acl.fieldTable, e.g. the Document file field read-only; a PUT of it is then dropped silently
    user = parse_api_user({"acl": {"table": {"Document": {"read": "all"}},
                                   "fieldTable": {"Document": {"file": {"read": "yes", "edit": "no"},
                                                               "status": {"read": "yes", "edit": "yes"}}}}})
    assert user.denies_field("Document", "file", "edit") and not user.denies_field("Document", "file", "read")
    assert not user.denies_field("Document", "status", "edit")
    assert parse_api_user({"acl": {"table": {}, "fieldTable": []}}).field_denied == frozenset()
