"""How a problem becomes a document's failure (pure): a record docsync cannot work on, an HTTP error by the
service that raised it (transient: healed by a later run; permanent: waits until the document changes), a local
disk problem (fatal for the run), and the text written into ``xaiSyncError``."""

from __future__ import annotations

import errno

from docsync_cli.errors import (
    AmbiguousWriteError,
    DocumentError,
    HttpError,
    LocalEnvironmentError,
    PermanentDocumentError,
    TransientDocumentError,
    TransientHttpError,
)
from docsync_cli.model import CrmDocument
from docsync_cli.secrets import printable
from docsync_cli.transport.http import short
from docsync_cli.xai.client import is_service_id

MAX_ERROR_TEXT = 1000
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def check_record(doc: CrmDocument) -> None:
    """Refuse a record docsync cannot work on. CRM values are untrusted: ids docsync would put into xAI URL
    paths must look like xAI ids."""
    if doc.problems:
        raise PermanentDocumentError("unexpected field values: " + "; ".join(doc.problems), "bad_fields")
    if not doc.file_id:
        raise PermanentDocumentError("the document has no file attached", "no_file")
    if doc.xai_file_id and not is_service_id(doc.xai_file_id):
        raise PermanentDocumentError(f"xaiFileId {printable(doc.xai_file_id, 80)!r} is not an xAI file id; "
                                     "clear the field in EspoCRM", "bad_file_id")
    bad = [c for c in doc.xai_collections if not is_service_id(c)]
    if bad:
        raise PermanentDocumentError(f"xaiCollections holds {printable(bad[0], 80)!r}, which is not an xAI "
                                     "collection id; clear the field in EspoCRM", "bad_collection_id")


def as_document_error(exc: HttpError) -> DocumentError:
    """The document's failure for an HTTP error no step handled itself."""
    if isinstance(exc, TransientHttpError | AmbiguousWriteError):
        return TransientDocumentError(str(exc), "transient")
    if exc.service == "espocrm":
        # EspoCRM refusing docsync's own request (a 403 with a data reason, contract §10.3) is a problem of the
        # setup or of docsync, not of the document: never permanent, the next run tries again.
        return TransientDocumentError(str(exc), "crm_rejected")
    if exc.service == "xai-management":
        # Collection calls (add, remove, field definitions) carry ids and docsync's fields, not the document's
        # content: a refusal there is the setup's or docsync's, healed by a later run.
        return TransientDocumentError(str(exc), "xai_rejected")
    return PermanentDocumentError(str(exc), "rejected")  # the Files API refused the content itself


def disk_problem(exc: OSError) -> LocalEnvironmentError | None:
    """A full, over-quota or read-only disk stops the run (every further document would fail the same way)."""
    if exc.errno in DISK_ERRNOS:
        return LocalEnvironmentError(f"local disk problem: {exc.strerror}")
    return None


def clip(text: str) -> str:
    """The error text as written into the CRM's ``xaiSyncError``."""
    return short(text, MAX_ERROR_TEXT)
