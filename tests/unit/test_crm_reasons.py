"""``docsync_cli.crm.reasons``: what EspoCRM's refusals mean by their ``X-Status-Reason`` (EspoCRM contract
§10.3, §10.9 in ``docs/contracts.md``). Pure: headers and classified errors are built here."""

from __future__ import annotations

import httpx
import pytest

from docsync_cli.crm.reasons import espo_detail, file_field_not_editable, is_auth_failure, refused_write
from docsync_cli.errors import ConflictError, RejectedError, SetupError
from docsync_cli.outcome import error_code

REPLACED = "Can't relate with non-existing record. entity type: Document, link: file."
INVALID = "Field validation failure; entityType: Document, field: cMd5, type: maxLength."


def reason(text: str) -> httpx.Headers:
    return httpx.Headers({"X-Status-Reason": text} if text else {})


def refusal(status: int, detail: str) -> RejectedError:
    return RejectedError("espocrm", "PUT", "Document/d1", status, detail)


def test_the_detail_is_the_reason_and_the_body_in_one_short_line() -> None:
    assert espo_detail(reason("No edit access."), b' {"x": 1}\n') == 'No edit access. {"x": 1}'
    assert espo_detail(reason(""), b"") == ""
    assert len(espo_detail(reason("r" * 500), b"")) <= 200


def test_an_html_page_is_named_not_quoted() -> None:
    detail = espo_detail(reason(""), b"<!DOCTYPE html><html><body>nginx</body></html>")
    assert detail == "an HTML page instead of an API answer (a proxy or the wrong URL?)"


@pytest.mark.parametrize(("status", "text", "auth"), [
    (401, "", True), (401, "Field 'x' does not exist.", True),
    (403, "", True), (403, "No read access.", True), (403, "No edit access.", True),
    (403, "No access to Document", True), (403, "  No access.  ", True),
    (403, "Field 'preview' does not exist.", False), (403, "Not allowed file type.", False),
    (403, "No access to field 'xaiSyncError'.", False), (403, REPLACED, False),
    (400, "", False), (404, "", False), (500, "No read access.", False),
])
def test_only_401_and_a_403_with_an_acl_reason_or_none_are_auth_failures(status: int, text: str,
                                                                         auth: bool) -> None:
    assert is_auth_failure(status, reason(text), b"") is auth


def test_the_file_field_not_editable_is_a_403_naming_it() -> None:
    assert file_field_not_editable(refusal(403, "No access to field 'file'."))
    assert not file_field_not_editable(refusal(400, "No access to field 'file'."))
    assert not file_field_not_editable(refusal(403, "No access to field 'name'."))


def test_a_missing_file_id_sent_by_docsync_means_the_file_was_replaced() -> None:
    meaning = refused_write(refusal(403, REPLACED), "d1", {"fileId": "att-old"}, "att-old")
    assert isinstance(meaning, ConflictError) and "replaced" in str(meaning)
    assert refused_write(refusal(403, REPLACED), "d1", {}, None) is None  # no fileId sent: not about the file


def test_a_validation_failure_of_docsyncs_value_is_a_setup_error_naming_field_and_value() -> None:
    meaning = refused_write(refusal(400, INVALID), "d1", {"cMd5": "a" * 40}, None)
    assert isinstance(meaning, SetupError) and error_code(meaning) == 2
    assert f"cMd5 = '{'a' * 40}'" in str(meaning) and "'maxLength'" in str(meaning)


@pytest.mark.parametrize(("status", "text"), [(400, "Bad where."), (403, INVALID), (403, "Not allowed file type.")])
def test_other_refusals_mean_nothing_more(status: int, text: str) -> None:
    assert refused_write(refusal(status, text), "d1", {"md5": "x"}, "att-1") is None
