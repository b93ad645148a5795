"""What EspoCRM's refusals mean, read from their ``X-Status-Reason`` (EspoCRM contract §10.3, §10.9 in
``docs/contracts.md``).

EspoCRM answers 400/403 for very different things and says which in the ``X-Status-Reason`` header: an ACL
reason is an auth failure of the whole run, a data reason is a problem of that one request, a validation failure
of docsync's own write is a setup problem, a ``fileId`` that no longer exists means a person replaced the file.
Pure functions over the header and the classified error; no I/O. Imports ``errors`` and ``transport.short``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import httpx

from docsync_cli.errors import ConflictError, DocsyncError, RejectedError, SetupError
from docsync_cli.transport.http import short

ACL_REASON = re.compile(r"^No (?:\w+ )?access(?: to [A-Z]\w*)?\.?$")
VALIDATION_REASON = re.compile(r"Field validation failure; entityType: (\w+), field: (\w+), type: (\w+)")


def espo_detail(headers: httpx.Headers, body: bytes) -> str:
    """EspoCRM puts the reason in ``X-Status-Reason``; bodies are usually empty or a small JSON object."""
    reason = headers.get("x-status-reason", "")
    text = body.decode("utf-8", "replace").strip()
    if text.startswith("<"):
        text = "an HTML page instead of an API answer (a proxy or the wrong URL?)"
    return short(" ".join(part for part in (reason, text) if part))


def is_auth_failure(status: int, headers: httpx.Headers, body: bytes) -> bool:
    """Contract §10.3: 401 always; 403 only with an ACL reason (``No read access.``, ``No edit access.``) or none
    (the failed-login limit). A 403 with a data reason (``Field 'x' does not exist.``, ``Not allowed file
    type.``, ``Max size should not exceed N…``, ``Can't relate with non-existing record…``) is a problem of that
    request."""
    if status == 401:
        return True
    if status != 403:
        return False
    reason = headers.get("x-status-reason", "").strip()
    return not reason or ACL_REASON.match(reason) is not None


def record_hidden(detail: str) -> bool:
    """A 403 of ``GET {Entity}/{id}`` that says the role may not read *this record* (``No 'read' access.``, contract
    §11.3): it exists but is hidden from the API user (a role or team change). Without scope read access the
    reason is ``No read access.``, which is the role's problem with every record, not this one's."""
    return detail.strip().startswith("No 'read' access")


def file_field_not_editable(refusal: RejectedError) -> bool:
    """The API user may not edit the Document's ``file`` field, so a write that carries ``fileId`` (the check
    that the file was not replaced) is refused as a whole."""
    return refusal.status == 403 and "field 'file'" in refusal.detail


def refused_write(refusal: RejectedError, doc_id: str, body: Mapping[str, Any],
                  file_id: str | None) -> DocsyncError | None:
    """What the refusal of docsync's ``PUT Document/{id}`` with ``body`` means: a :class:`ConflictError` when
    the ``fileId`` sent no longer exists (§10.9), a :class:`SetupError` naming field and value when a field's
    validation refused docsync's own value; None when it means nothing more than itself."""
    if refusal.status == 403 and file_id is not None and "non-existing record" in refusal.detail:
        return ConflictError("espocrm", "PUT", f"Document/{doc_id}", 403,
                             "the file was replaced while docsync worked on it")
    failed = VALIDATION_REASON.search(refusal.detail)
    if refusal.status == 400 and failed is not None:
        attr = failed.group(2)
        return SetupError(
            f"EspoCRM refused docsync's write of {attr} = {body.get(attr)!r} (validation "
            f"'{failed.group(3)}' of Document field {attr})",
            f"make the Document field {attr} accept that value (Administration > Entity Manager > "
            "Document > Fields), then run `docsync check`; the document keeps its status")
    return None
