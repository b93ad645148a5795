"""``docsync status``' change-feed part: what plain runs recorded in ``state.sqlite3`` about how they find changes
(watermark, listing pass, GlobalStream, the clocks' offset, deletions) and what that means in plain words."""

from __future__ import annotations

import contextlib
import json
from typing import TypedDict

from docsync_cli.config import Settings
from docsync_cli.model import DeletionMethod
from docsync_cli.state import ReadOnlyState, StreamFeed
from docsync_cli.timestamps import unix_to_timestamp


class Feeds(TypedDict):
    enabled: bool
    watermark: str | None
    last_listing: str | None
    listing_interval_seconds: float
    stream: str | None
    accounts_override: bool | None
    note_cursor: int | None
    clock_skew_seconds: float | None
    clock_set_back: bool | None
    stream_partial: list[str] | None
    stream_early_end: bool | None
    partial_listing_interval_seconds: float
    deletions: str | None




def collect_feeds(settings: Settings, feeds: Feeds) -> list[dict[str, str]]:
    """The change-feed bookkeeping plain runs keep in ``state.sqlite3`` (read-only), into ``feeds``; returns the
    documents hidden from the API user's role."""
    state = ReadOnlyState(settings.state_dir)
    if not state.exists():  # a corrupt state file raises here: the report stops (exit 4), as a run does
        return []
    meta = state.meta()  # empty: an older state file without the table, or unreadable: nothing recorded
    feeds["watermark"] = meta.get("watermark")
    if meta.get("last_listing"):
        feeds["last_listing"] = unix_to_timestamp(float(meta["last_listing"]))
    if meta.get("note_cursor"):
        feeds["note_cursor"] = int(meta["note_cursor"])
    with contextlib.suppress(ValueError, TypeError):
        seen = json.loads(meta.get("feeds") or "{}")
        feeds["stream"] = seen.get("stream")
        feeds["accounts_override"] = seen.get("accounts_override")
        feeds["clock_set_back"] = seen.get("clock_set_back")
        partial = seen.get("stream_partial")
        feeds["stream_partial"] = [str(p) for p in partial] if isinstance(partial, list) else None
        feeds["stream_early_end"] = seen.get("stream_early_end")
        feeds["deletions"] = seen.get("deletions")
    with contextlib.suppress(ValueError, TypeError):
        feeds["clock_skew_seconds"] = float(meta["clock_skew"]) if meta.get("clock_skew") else None
    return [{"id": doc_id, "reason": reason, "since": unix_to_timestamp(since)}
            for doc_id, (reason, since) in state.hidden().items()]


def feeds_explained(feeds: Feeds) -> list[str]:
    """What the feeds mean for how fast each kind of change is noticed (the status text)."""
    minutes = f"{feeds['listing_interval_seconds'] / 60:g} min"
    if not feeds["enabled"]:
        return ["Change feeds are off (sync.change_feeds = false): every run lists every document."]
    lines = [f"Watermark: {feeds['watermark'] or '(none yet: the next run makes a listing pass)'} (EspoCRM time); "
             f"last listing pass: {feeds['last_listing'] or 'never'} (every {minutes} and in every --full)."]
    lines.append("New, changed, replaced and deleted documents and accounts given a collection: noticed by the "
                 "next run.")
    early = ["its last answer ended early (total -2 after 50 rounds of filtering)"]
    partial = (feeds.get("stream_partial") or []) + (early if feeds.get("stream_early_end") else [])
    if feeds["stream"] == StreamFeed.ACTIVE and partial:
        sooner = f"{feeds.get('partial_listing_interval_seconds', 900.0) / 60:g} min"
        lines.append("Stream notes (GlobalStream): partial — " + "; ".join(partial) + ". Link changes it cannot see "
                     f"wait for the listing pass, which runs every {sooner} while the feed is partial "
                     "(sync.partial_listing_interval_seconds); `docsync check` says how to fix the role.")
    elif feeds["stream"] == StreamFeed.ACTIVE:
        lines.append("Stream notes (GlobalStream): active — a document linked to or unlinked from an account is "
                     "noticed by the next run.")
    else:
        state = feeds["stream"] or "not checked yet"
        lines.append(f"Stream notes (GlobalStream): {state} — linking/unlinking (which does not change the "
                     f"document) is noticed by the next listing pass, within {minutes}. Give the API user's role "
                     "the GlobalStream scope to notice it in the next run.")
    if feeds["accounts_override"]:
        lines.append("accountsIds override (noLoad: false): active — listing passes read each document's accounts "
                     "from the listing itself.")
    else:
        lines.append("accountsIds override: " + ("not set" if feeds["accounts_override"] is False else
                                                 "not checked yet") + " — listing passes list the documents of each "
                     "account with a collection (see `docsync espocrm-fields` for the override).")
    method = feeds.get("deletions")
    lines.append("Deletions: " + (
        "counts — a count each run, each candidate confirmed by EspoCRM (404) before its files are retired."
        if method == DeletionMethod.COUNTS else
        f"listing — EspoCRM does not count Documents (Disable record count): the listing pass compares ids, so a "
        f"deletion is noticed within {minutes}." if method == DeletionMethod.LISTING else "not checked yet."))
    skew = feeds.get("clock_skew_seconds")
    lines.append("EspoCRM's clocks: " + ("not measured yet (docsync measures them on its own write-backs)"
                                         if skew is None else
                                         f"Date {skew:+.0f} s against modifiedAt (the feed's overlap is widened by it)"
                                         if skew > 1 else f"Date {skew:+.0f} s against modifiedAt (in step)")
                 + ("; the last run found the clock set back and listed every document" if feeds.get("clock_set_back")
                    else "") + ".")
    return lines


__all__ = ["Feeds", "collect_feeds", "feeds_explained"]
