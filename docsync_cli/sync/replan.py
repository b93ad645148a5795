"""The one re-plan of a document (pure): what the step learned while carrying out its plan goes back here once, and
the whole rest is decided together — the write-back values, the break half (removals and retirements), what this
host remembers, and what became of the document.

:func:`plan.plan_document` decides the document's action list from what was read (upload or keep, join, leave,
retire). The step then does the I/O; what it learns on the way — the xAI file it ended up with, where xAI's
processing stands after the bounded wait, the preview — is a :class:`Learned`. :func:`replan` turns that into a
:class:`Finish`, which the step carries out without deciding anything of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from docsync_cli.model import (
    Content,
    CrmDocument,
    DocPlan,
    Indexing,
    LocalRecord,
    Outcome,
    Preview,
    PreviewFailure,
)
from docsync_cli.sync.plan import cleanup_steps, preview_failed, remembered_after, write_back_values


@dataclass(frozen=True)
class Learned:
    """What carrying out a :class:`DocPlan` taught the step."""

    file_id: str  # the document's xAI file now: new, kept or adopted ("" when it is in no collection)
    uploaded: bool  # this step put ``file_id`` into xAI
    indexing: Indexing  # where xAI's processing stands in every required collection
    message: str  # xAI's reason when processing failed (already clipped for the CRM)
    preview_id: str | None  # the preview attachment written now, if any
    preview: str | None  # the preview result (:class:`Preview`, or a failure text)
    preview_failure: PreviewFailure | None


@dataclass(frozen=True)
class Finish:
    """The rest of a document's work, decided at once from its plan and what was learned."""

    doc: CrmDocument
    content: Content
    required: frozenset[str]
    learned: Learned
    previous: LocalRecord | None
    values: dict[str, Any]  # the one conditional update (logical names; the preview id is added by its writer)
    cleanup: tuple[tuple[str, str], ...]  # journalled before the write-back, carried out after it (if settled)
    outcome: Outcome  # SYNCED, PENDING or FAILED (processing failed)
    roll_back: bool  # take this step's upload back out: xAI could not process it

    @property
    def settled(self) -> bool:
        """Searchable everywhere: the superseded files are due for retirement once EspoCRM points at the new one."""
        return self.learned.indexing is Indexing.PROCESSED

    def remember(self, crm_modified_at: str) -> LocalRecord:
        """What this host remembers after the write-back answered with ``crm_modified_at``."""
        learned = self.learned
        return remembered_after(
            self.doc, self.content, learned.file_id, self.required, learned.indexing, crm_modified_at, self.previous,
            preview_now=bool(learned.preview_id) or learned.preview == Preview.UNCHANGED,
            preview_failed=preview_failed(learned.preview, learned.preview_failure, self.content, self.previous))


OUTCOMES = {Indexing.PROCESSED: Outcome.SYNCED, Indexing.PENDING: Outcome.PENDING, Indexing.FAILED: Outcome.FAILED}


def replan(doc: CrmDocument, content: Content, required: frozenset[str], doc_plan: DocPlan, learned: Learned,
           previous: LocalRecord | None) -> Finish:
    """The rest of ``doc``'s work after ``doc_plan`` was carried out and taught the step ``learned``."""
    return Finish(
        doc=doc, content=content, required=required, learned=learned, previous=previous,
        values=write_back_values(learned.indexing, learned.message, content, learned.file_id, required),
        cleanup=tuple(cleanup_steps(doc_plan, learned.file_id)),
        outcome=OUTCOMES[learned.indexing],
        roll_back=learned.uploaded and learned.indexing is Indexing.FAILED,
    )
