"""``crm/role.py``: what the API user's role lets the change feeds see (EspoCRM contract §10.7, §11.2)."""

from __future__ import annotations

from docsync_cli.crm.role import dedups_relate_notes, narrowed_reads, stream_gaps
from docsync_cli.crm.schema import ApiUser, parse_api_user


def user(account: dict[str, str], version: str = "9.2.7", file_edit: str = "yes") -> ApiUser:
    return parse_api_user({"user": {"userName": "api"}, "settings": {"version": version},
                           "acl": {"table": {"GlobalStream": True, "Account": account},
                                   "fieldTable": {"Document": {"file": {"read": "yes", "edit": file_edit}}}}})


def test_a_role_that_streams_every_account_sees_every_note() -> None:
    assert stream_gaps(user({"read": "own", "stream": "all"}), ["Account"]) == []  # the stream level decides


def test_stream_own_or_no_and_read_no_are_gaps_with_their_fix() -> None:
    own = stream_gaps(user({"read": "all", "stream": "own"}), ["Account"])
    assert [g.what for g in own] == ["Account stream is 'own': notes only for those Account records"]
    assert own[0].fix == "Administration > Roles > the API user's role: Account stream 'all'"
    assert [g.what for g in stream_gaps(user({"read": "no", "stream": "all"}), ["Account"])] == [
        "Account read is 'no': no notes of links to Account records"]
    assert stream_gaps(None, ["Account"])[0].what.startswith("the API user's role could not be read")


def test_no_global_stream_scope_is_no_feed_not_a_partial_one() -> None:
    off = parse_api_user({"acl": {"table": {"GlobalStream": False, "Account": {"stream": "own"}}}})
    assert stream_gaps(off, ["Account"]) == []


def test_8_4_to_9_0_de_duplicate_relate_notes() -> None:
    assert [dedups_relate_notes(v) for v in ("8.3.6", "8.4.0", "8.4.2", "9.0.3", "9.1.0", "9.2.7", "", None)] == [
        False, True, True, True, False, False, False, False]
    gaps = stream_gaps(user({"read": "all", "stream": "all"}, version="9.0.3"), ["Account"])
    assert [g.fix for g in gaps] == ["update EspoCRM to 9.1 or later"]


def test_the_file_guard_needs_field_level_edit() -> None:
    assert not user({"read": "all"}).denies_field("Document", "file", "edit")
    assert user({"read": "all"}, file_edit="no").denies_field("Document", "file", "edit")


def test_a_role_that_reads_only_some_linked_records_is_narrowed() -> None:
    assert narrowed_reads(user({"read": "own", "stream": "all"}), ["Account"]) == [("Account", "own")]
    assert narrowed_reads(user({"read": "team", "stream": "no"}), ["Account", "Contact"]) == [("Account", "team")]
    assert narrowed_reads(user({"read": "all", "stream": "own"}), ["Account"]) == []  # streaming is not reading
    assert narrowed_reads(None, ["Account"]) == []  # App/user unreadable: nothing to judge
