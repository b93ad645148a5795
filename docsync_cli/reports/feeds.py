"""What the change feeds and the deletion check mean for how fast a change is noticed: the ``feeds`` part of
``docsync status`` (its JSON shape and its text lines)."""

from __future__ import annotations

from typing import TypedDict

from docsync_cli.model import DeletionMethod
from docsync_cli.state import StreamFeed


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
    deletions: str | None



def feeds_explained(feeds: Feeds) -> list[str]:
    """What the feeds mean for how fast each kind of change is noticed (the status text)."""
    minutes = f"{feeds['listing_interval_seconds'] / 60:g} min"
    if not feeds["enabled"]:
        return ["Change feeds are off (sync.change_feeds = false): every run lists every document."]
    lines = [f"Watermark: {feeds['watermark'] or '(none yet: the next run makes a listing pass)'} (EspoCRM time); "
             f"last listing pass: {feeds['last_listing'] or 'never'} (every {minutes} and in every --full)."]
    lines.append("New, changed, replaced and deleted documents and accounts given a collection: noticed by the "
                 "next run.")
    if feeds["stream"] == StreamFeed.ACTIVE:
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
