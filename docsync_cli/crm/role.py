"""What the API user's role lets the change feeds see, judged from ``GET App/user`` (pure; EspoCRM contract §10.7,
§11.2). GlobalStream shows a ``Relate``/``Unrelate`` note only for parent types the role may read **and** stream, and
each note only when the role may stream that record: a role with stream "own" or "no" gets fewer notes, with HTTP
200. 8.4.0-9.0.x write no second note for a pair that already had one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from docsync_cli.crm.schema import ApiUser


@dataclass(frozen=True)
class Gap:
    """One thing the role or the server hides from the stream feed, and how to fix it."""

    what: str
    fix: str


def stream_gaps(user: ApiUser | None, parents: Sequence[str]) -> list[Gap]:
    """Why GlobalStream may not show every Relate/Unrelate note of ``parents`` (empty: it shows them all)."""
    if user is not None and "GlobalStream" in user.disabled_scopes:
        return []  # no stream feed at all (no access), not a partial one
    if user is None or not user.acl_known:
        return [Gap("the API user's role could not be read (App/user)", "make `docsync check` pass")]
    gaps = []
    for parent in parents:
        for action in ("read", "stream"):
            if user.denies(parent, action):
                gaps.append(Gap(f"{parent} {action} is 'no': no notes of links to {parent} records",
                                f"Administration > Roles > the API user's role: {parent} {action} 'all'"))
        level = user.limit(parent, "stream")
        if level is not None and not user.denies(parent, "read"):
            gaps.append(Gap(f"{parent} stream is '{level}': notes only for those {parent} records",
                            f"Administration > Roles > the API user's role: {parent} stream 'all'"))
    if dedups_relate_notes(user.version):
        gaps.append(Gap(f"EspoCRM {user.version} writes no second note when a pair is linked again (8.4-9.0)",
                        "update EspoCRM to 9.1 or later"))
    return gaps


def narrowed_reads(user: ApiUser | None, entities: Sequence[str]) -> list[tuple[str, str]]:
    """``(entity, level)`` of the linked entity types the role reads only some records of (``own``, ``team``, …):
    EspoCRM then hides the others and their links from the API user with HTTP 200 (contract §11.2), so their
    documents would seem to belong to no collection. Empty when App/user could not be read (nothing to judge)."""
    if user is None:
        return []
    return [(entity, level) for entity in entities if (level := user.limit(entity, "read")) is not None]


def dedups_relate_notes(version: str | None) -> bool:
    """EspoCRM 8.4.0-9.0.x: a re-link of a pair linked before writes no note (contract §10.7)."""
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if match is None:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return (major == 8 and minor >= 4) or (major == 9 and minor == 0)


__all__ = ["Gap", "dedups_relate_notes", "narrowed_reads", "stream_gaps"]
