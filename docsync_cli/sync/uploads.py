"""The lifecycle of the files docsync puts into xAI: which file is this installation's (the ownership rule, for
one document and for the ``--full`` listing of the managed collections and orphaned files; another installation's
record on a document's file stops the run), the journalled
upload, adoption of an upload whose answer was lost, the rollback of an upload nothing may point at, and the
single step of a cleanup (take a file out of a collection, or delete it).

An upload is journalled in the local state before it is sent (``upload_started``) and settled after
(``upload_done``): a run that crashed or lost the answer looks the file up by its marked name (``xai.py``) before
it ever uploads again; only files this installation's journal names are adopted.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable, Mapping
from pathlib import Path

from docsync_cli.errors import AmbiguousWriteError, ForeignInstallation, NotFoundError, TransientDocumentError
from docsync_cli.model import Content, CrmDocument, DocumentLocks, LocalRecord, Membership, RemoteMember
from docsync_cli.state import StateStore
from docsync_cli.sync.plan import candidate_collections
from docsync_cli.xai.client import MANAGED_BY, XaiClient, is_service_id, started_upload, upload_name

log = logging.getLogger("docsync.engine")
ORPHAN_MIN_AGE = 3600.0  # seconds: a younger file may be an upload of a run still going on


class Uploads:
    """This installation's files at xAI (thread-safe as its clients and state are)."""

    def __init__(self, xai: XaiClient, state: StateStore, locks: DocumentLocks) -> None:
        self.xai = xai
        self.state = state
        self.locks = locks
        self.installation = state.installation_id

    def membership(self, doc: CrmDocument, required: frozenset[str], local: LocalRecord | None
                   ) -> Membership | None:
        """Where the document's current xAI file sits, when that file is this installation's upload for this very
        document. None when there is no such file, or when it is not ours (a duplicated record's, another
        installation's, a hand-made file): then the document gets its own upload and that file is left alone."""
        file_id = doc.xai_file_id
        if not file_id or not self.xai.file_exists(file_id):
            return None
        statuses: dict[str, str] = {}
        fields: dict[str, Mapping[str, str]] = {}
        for collection_id in sorted(candidate_collections(doc, required, local)):
            try:
                member = self.xai.member(collection_id, file_id)
            except NotFoundError:
                member = None
            if member is not None:
                statuses[collection_id] = member.status
                fields[collection_id] = member.fields
        others = sorted({v["installation_id"] for v in fields.values() if v.get("crm_document_id") == doc.id
                         and v.get("installation_id") and v["installation_id"] != self.installation})
        if others and self.state.owner(file_id) is None:
            # Another installation's ownership record on this document's file: two installations sync one CRM
            # into one xAI team. A copy of ours would only start a loop of re-uploads (each replacing the other's
            # xaiFileId) and double search hits: stop instead, a configuration error.
            raise ForeignInstallation(others, [doc.id])
        if not self.owns(file_id, doc, fields, local):
            log.info("%s: xaiFileId %s is not this installation's upload for this document; it gets its own",
                     doc.id, file_id)
            return None

        def added_by_docsync(values: Mapping[str, str]) -> bool:
            return values.get("crm_document_id") == doc.id and (
                values.get("installation_id") == self.installation
                or (not values.get("installation_id") and values.get("managed_by") == MANAGED_BY))

        # A membership docsync did not make (a person put the file into their own collection) is not docsync's
        # to undo: only required collections and docsync's own memberships count.
        statuses = {c: s for c, s in statuses.items() if c in required or added_by_docsync(fields[c])}
        unmarked = frozenset(c for c in statuses if fields[c].get("installation_id") != self.installation
                             or fields[c].get("crm_document_id") != doc.id)
        return Membership(file_id, statuses, unmarked)

    def owns(self, file_id: str, doc: CrmDocument, fields: Mapping[str, Mapping[str, str]],
             local: LocalRecord | None) -> bool:
        """The ownership rule: this installation's record (local state, or the collection document's fields with
        this installation's id) says ``file_id`` is its upload for ``doc``. An upload of an older docsync (fields
        without an installation id) is adopted when this host's record of the document names that file and the
        content hash agrees."""
        owner = self.state.owner(file_id)
        if owner is not None:
            return owner == doc.id
        for values in fields.values():
            if values.get("crm_document_id") != doc.id:
                continue
            if values.get("installation_id") == self.installation:
                self.state.own(file_id, doc.id, values.get("content_sha256") or None)
                return True
            legacy = (not values.get("installation_id") and values.get("managed_by") == MANAGED_BY
                      and local is not None and local.xai_file_id == file_id and local.sha256 is not None
                      and values.get("content_sha256") == local.sha256 == doc.xai_synced_hash)
            if legacy:
                self.state.own(file_id, doc.id, local.sha256 if local else None)
                return True
        return False

    def upload(self, doc: CrmDocument, content: Content, path: Path, actions: list[str]) -> str:
        """The xAI file holding ``content`` for ``doc``: an earlier upload the journal names (adopted), or a new
        one. Each step taken is appended to ``actions``."""
        name = upload_name(doc.id, content.sha256, doc.file_name or doc.name or "document", self.installation)
        intent = self.state.upload_intent(doc.id, content.sha256)
        if intent is not None:
            adopted = self.adopt(doc, content, intent[1])
            if adopted:
                actions.append(f"adopt {adopted}")
                return adopted
        self.locks.check()
        self.state.upload_started(doc.id, content.sha256, name)
        mime = mimetypes.guess_type(doc.file_name or "")[0] or "application/octet-stream"
        try:
            answer = self.xai.upload(path, name, mime)
        except AmbiguousWriteError:
            adopted = self.adopt(doc, content, None)
            if adopted:
                actions.append(f"adopt {adopted} (answer was lost)")
                return adopted
            answer = self.xai.upload(path, name, mime)  # looked up: it did not arrive, so one more try is safe
        file_id = answer.id
        if answer.size not in (None, content.size):
            self.xai.delete_file(file_id)
            raise TransientDocumentError(f"xAI stored {answer.size} bytes of {content.size}; removed it",
                                         "upload_truncated")
        self.state.upload_done(doc.id, content.sha256, file_id)
        actions.append(f"upload {file_id}")
        return file_id

    def adopt(self, doc: CrmDocument, content: Content, known_id: str | None) -> str | None:
        """Find an earlier upload of exactly this content; keep the oldest, delete duplicates."""
        if known_id and self.xai.file_exists(known_id):
            return known_id
        # Only names carrying this installation's tag, and only because this host's journal says it started the
        # upload: another installation's upload of the same document is never adopted.
        found = [f for f in self.xai.find_uploads(doc.id, content.sha256, self.installation)
                 if f.size in (None, content.size)]
        if not found:
            return None
        found.sort(key=lambda f: (f.created_at or 0, f.id))
        keep = found[0].id
        for duplicate in found[1:]:
            self.xai.delete_file(duplicate.id)
            self.state.disown(duplicate.id)
        self.state.upload_done(doc.id, content.sha256, keep)
        return keep

    def roll_back(self, file_id: str, required: frozenset[str], doc_id: str, sha256: str) -> None:
        """Take a new upload back out of every collection it was added to and delete it (nothing points at it)."""
        for collection_id in sorted(required):
            self.xai.remove_document(collection_id, file_id)
        self.xai.delete_file(file_id)
        self.state.disown(file_id)
        self.state.upload_settled(doc_id, sha256)

    def remote_members(self, collections: list[str], wall: Callable[[], float]) -> list[RemoteMember]:
        """Every document of this installation in the managed collections (raises if any listing fails): its
        fields carry this installation's id, or this host's ownership record names the file for that document.
        Members of people, of other installations on the same xAI team, or of older docsyncs this host cannot
        vouch for are never listed here, so never deleted. Then this installation's files in no collection."""
        members = []
        owned = self.state.owned_files()
        for collection_id in collections:
            for member in self.xai.iter_documents(collection_id):
                file_id, owner = member.file_id, member.fields.get("crm_document_id", "")
                ours = member.fields.get("installation_id") == self.installation or (
                    bool(owner) and owned.get(file_id) == owner)
                if not ours or not owner or not is_service_id(file_id):
                    continue
                members.append(RemoteMember(collection_id, file_id, owner, member.fields.get("content_sha256", ""),
                                            member.status))
        return members + self.orphan_files({m.file_id for m in members}, wall)

    def orphan_files(self, in_collections: set[str], wall: Callable[[], float]) -> list[RemoteMember]:
        """This installation's files that are in no managed collection — leftovers of a crash between upload and
        add, or between leaving the collections and the delete. Only files this host's ownership record names
        (or an upload it started whose answer never came, by its exact name) count: a name that merely looks
        like docsync's marker is never a reason to delete. Files younger than ``ORPHAN_MIN_AGE`` are left alone."""
        owned = self.state.owned_files()
        started = self.state.open_upload_names()
        found = []
        for item in self.xai.marked_files():
            file_id = item.id
            owner = owned.get(file_id) or started_upload(item.name, started)
            created = item.created_at
            if file_id in in_collections or owner is None or created is None:
                continue
            if wall() - created < ORPHAN_MIN_AGE:
                continue
            found.append(RemoteMember("", file_id, owner, ""))
        return found

    def take_back(self, file_id: str, collection_id: str) -> None:
        """One cleanup step: take ``file_id`` out of ``collection_id``, or ("") delete the file and forget it was
        ours. The caller journals the step (``state.cleanup_planned``/``cleanup_done``)."""
        if collection_id:
            self.xai.remove_document(collection_id, file_id)
        else:
            self.xai.delete_file(file_id)
            self.state.disown(file_id)
