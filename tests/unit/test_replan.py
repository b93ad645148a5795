"""``sync/replan.py``: what the step learned goes back to the planner once, and the rest of the document's work —
write-back values, the break half, what is remembered, the outcome, a roll-back — is decided together."""

from __future__ import annotations

from docsync_cli.model import CrmDocument, DocPlan, Indexing, Membership, Outcome, Preview, PreviewFailure
from docsync_cli.sync.plan import plan_document
from docsync_cli.sync.replan import Learned, replan

from .test_plan import OTHER_SHA, PROCESSED, SHA, content, local_for, synced_doc

REQUIRED = frozenset({"col_a"})


def learned(indexing: Indexing, *, uploaded: bool = True, preview_id: str | None = "att_p",
            preview: str | None = Preview.WRITTEN, failure: PreviewFailure | None = None) -> Learned:
    return Learned("file_new", uploaded, indexing, "cannot parse" if indexing is Indexing.FAILED else "",
                   preview_id, preview, failure)


def changed_plan() -> tuple[CrmDocument, DocPlan]:
    doc = synced_doc(xai_collections=("col_a", "col_old"))
    current = Membership("file_1", {"col_a": PROCESSED, "col_old": PROCESSED})
    return doc, plan_document(doc, content(OTHER_SHA), REQUIRED, current, ())


def test_a_processed_upload_is_synced_and_retires_what_it_superseded() -> None:
    doc, doc_plan = changed_plan()
    before = local_for(doc)
    finish = replan(doc, content(OTHER_SHA), REQUIRED, doc_plan, learned(Indexing.PROCESSED), before)
    assert finish.outcome is Outcome.SYNCED and finish.settled and not finish.roll_back
    assert finish.values["dateiStatus"] == "Gesynct" and finish.values["xaiFileId"] == "file_new"
    assert ("file_1", "") in finish.cleanup and all(step[0] != "file_new" for step in finish.cleanup)
    remembered = finish.remember("2026-12-05 08:00:00")
    assert (remembered.xai_file_id, remembered.sha256, remembered.preview_sha) == ("file_new", OTHER_SHA, OTHER_SHA)


def test_a_pending_upload_is_remembered_as_pending_and_retires_nothing_yet() -> None:
    doc, doc_plan = changed_plan()
    finish = replan(doc, content(OTHER_SHA), REQUIRED, doc_plan, learned(Indexing.PENDING, preview_id=None,
                                                                          preview=Preview.OFF), local_for(doc))
    assert finish.outcome is Outcome.PENDING and not finish.settled and not finish.roll_back
    assert "dateiStatus" not in finish.values  # the record keeps saying what xAI fully holds
    remembered = finish.remember("2026-12-05 08:00:00")
    assert remembered.pending and remembered.sha256 == SHA and remembered.xai_file_id == "file_1"


def test_an_upload_xai_cannot_process_fails_and_is_rolled_back_a_kept_file_is_not() -> None:
    doc, doc_plan = changed_plan()
    failed = replan(doc, content(OTHER_SHA), REQUIRED, doc_plan,
                    learned(Indexing.FAILED, failure=PreviewFailure.RENDER, preview="render_failed", preview_id=None),
                    None)
    assert failed.outcome is Outcome.FAILED and failed.roll_back
    assert failed.values["xaiSyncError"] == "cannot parse"
    assert failed.remember("2026-12-05 08:00:00").preview_failed == OTHER_SHA
    kept = replan(doc, content(OTHER_SHA), REQUIRED, doc_plan, learned(Indexing.FAILED, uploaded=False), None)
    assert kept.outcome is Outcome.FAILED and not kept.roll_back
