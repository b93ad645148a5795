"""The invariants of ``reliability.md`` section (c), checked from the emulators' state — never through docsync.

:func:`check_invariants` returns a list of violations (empty = all good), so a test can print every problem at
once; :func:`assert_invariants` fails with that list.

What is checked:

1. **Synced means present.** A CRM document with ``dateiStatus = Gesynct`` has ``xaiSyncStatus = synced``, an
   ``xaiFileId`` naming a live xAI file whose bytes are the current attachment's bytes; that file sits in
   **exactly** the required collections (the ``xaiCollectionId`` of every linked account), is PROCESSED in each,
   and carries ``fields.crm_document_id`` = the document and ``fields.content_sha256`` = CRM ``sha`` = sha256 of
   the current attachment; ``xaiSyncedHash`` = ``sha`` and ``xaiCollections`` = the required set.
2. **No orphans or duplicates.** Every xAI file named ``crm-…`` and every collection member carrying docsync's
   fields is the current ``xaiFileId`` of exactly one live CRM document (and, for fields, of the document they
   name). Files a person added by hand (no marker) are left out.
3. **Status honesty.** No document is left ``syncing`` after a clean run; with ``all_synced`` every live
   document that has a file is ``Gesynct``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from docsync_cli.xai.client import installation_tag
from docsync_sandbox.espocrm import EspoEmulator
from docsync_sandbox.seed import Sandbox

GESYNCT = "Gesynct"
PROCESSED = "DOCUMENT_STATUS_PROCESSED"


def required_collections(sandbox: Sandbox, doc: dict[str, Any], crm: EspoEmulator | None = None) -> set[str]:
    """The ``xaiCollectionId`` of every live account the document is linked to (read from the CRM emulator)."""
    espo = crm or sandbox.espo
    field = espo.attr("xaiCollectionId")
    required: set[str] = set()
    with espo.lock:
        accounts = espo.records["Account"]
        for account_id in doc.get("accountsIds") or []:
            account = accounts.get(account_id)
            if account is None or account.get("deleted"):
                continue
            value = account.get(field)
            if value:
                required.add(str(value))
    return required


def check_invariants(
    sandbox: Sandbox,
    *,
    orphans: bool = True,
    all_synced: bool = False,
    clean: bool = True,
    crm: EspoEmulator | None = None,
    installation: str | None = None,
) -> list[str]:
    """Every violation found in the emulators' current state (empty list = the invariants hold).

    ``orphans``: also require that no managed xAI file is left over (true after a clean ``--full`` run).
    ``all_synced``: every live document with a file must be ``Gesynct`` (the run was expected to sync all).
    ``clean``: the last run finished without a crash or a fault (no document may be left ``syncing``).
    ``crm``/``installation``: check that CRM (default: the sandbox's) and, when several installations share the
    xAI team, only the files and members of that installation for orphans and duplicates.
    """
    espo, xai = crm or sandbox.espo, sandbox.xai

    def ours_by_name(filename: str) -> bool:
        if not filename.startswith("crm-"):
            return False
        return installation is None or filename.split("-")[3:4] == [installation_tag(installation)]

    def ours_by_fields(fields: dict[str, Any]) -> bool:
        if not (fields.get("managed_by") or fields.get("crm_document_id")):
            return False  # a person's file
        return installation is None or fields.get("installation_id") == installation

    a = espo.attr
    problems: list[str] = []
    docs = espo.documents()
    files = xai.files()
    members: dict[str, dict[str, dict[str, Any]]] = {}  # collection id -> file id -> member
    for collection_id in xai.collection_ids():
        members[collection_id] = xai.collection_documents(collection_id)

    current_file_of: dict[str, str] = {}  # xAI file id -> CRM document id pointing at it
    pointers = Counter(str(d.get(a("xaiFileId"))) for d in docs if d.get(a("xaiFileId")))
    for file_id, count in pointers.items():
        if count > 1:
            problems.append(f"xAI file {file_id} is the xaiFileId of {count} CRM documents")

    for doc in docs:
        doc_id = str(doc["id"])
        name = f"document {doc_id} ({doc.get('name')})"
        status = doc.get(a("dateiStatus"))
        sync_status = doc.get(a("xaiSyncStatus"))
        xai_file_id = doc.get(a("xaiFileId"))
        if xai_file_id:
            current_file_of[str(xai_file_id)] = doc_id
        if clean and sync_status == "syncing":
            problems.append(f"{name}: left 'syncing' after a clean run")
        content = espo.attachment_bytes(str(doc["fileId"])) if doc.get("fileId") else None
        if all_synced and content is not None and status != GESYNCT:
            problems.append(
                f"{name}: expected Gesynct, is {status!r} / {sync_status!r} ({doc.get(a('xaiSyncError'))!r})"
            )
        if status != GESYNCT:
            continue
        # 1. synced means present
        if sync_status != "synced":
            problems.append(f"{name}: Gesynct but xaiSyncStatus is {sync_status!r}")
        if content is None:
            problems.append(f"{name}: Gesynct but has no attachment")
            continue
        sha = hashlib.sha256(content).hexdigest()
        if doc.get(a("sha")) != sha:
            problems.append(f"{name}: CRM sha {doc.get(a('sha'))!r} is not the sha256 of its attachment {sha}")
        if doc.get(a("md5")) != hashlib.md5(content).hexdigest():
            problems.append(f"{name}: CRM md5 is not the md5 of its attachment")
        if doc.get(a("xaiSyncedHash")) != sha:
            problems.append(f"{name}: xaiSyncedHash {doc.get(a('xaiSyncedHash'))!r} != attachment sha {sha}")
        required = required_collections(sandbox, doc, espo)
        if not required:
            # In no collection: nothing to index, so no file at xAI either.
            if xai_file_id or doc.get(a("xaiCollections")):
                problems.append(f"{name}: in no collection, yet points at {xai_file_id!r} / "
                                f"{doc.get(a('xaiCollections'))!r}")
            continue
        if not xai_file_id:
            problems.append(f"{name}: Gesynct without an xaiFileId")
            continue
        file = files.get(str(xai_file_id))
        if file is None:
            problems.append(f"{name}: Gesynct, but its xAI file {xai_file_id} does not exist")
            continue
        if file["sha256"] != sha:
            problems.append(f"{name}: xAI file {xai_file_id} holds other bytes than the current attachment")
        held = {cid for cid, docs_in in members.items() if str(xai_file_id) in docs_in}
        if held != required:
            problems.append(f"{name}: file {xai_file_id} is in {sorted(held)}, required are {sorted(required)}")
        recorded = doc.get(a("xaiCollections")) or []
        if sorted(recorded) != sorted(required):
            problems.append(f"{name}: xaiCollections {sorted(recorded)} != required {sorted(required)}")
        for collection_id in sorted(held & required):
            member = members[collection_id][str(xai_file_id)]
            if member["status"] != PROCESSED:
                problems.append(f"{name}: in {collection_id} the file is {member['status']}, not PROCESSED")
            fields = member["fields"]
            if fields.get("content_sha256") != sha:
                problems.append(
                    f"{name}: in {collection_id} fields.content_sha256 = "
                    f"{fields.get('content_sha256')!r}, attachment sha = {sha}"
                )
            if fields.get("crm_document_id") != doc_id:
                problems.append(
                    f"{name}: in {collection_id} fields.crm_document_id = {fields.get('crm_document_id')!r}"
                )

    if orphans:
        # 2. no orphans or duplicates: files with docsync's name marker ...
        for file_id, file in sorted(files.items()):
            if not ours_by_name(str(file["filename"])):
                continue
            owner = current_file_of.get(file_id)
            if owner is None:
                problems.append(f"orphan xAI file {file_id} ({file['filename']}): no live CRM document points at it")
            elif not str(file["filename"]).startswith(f"crm-{owner}-"):
                problems.append(
                    f"xAI file {file_id} ({file['filename']}) is the xaiFileId of {owner}, but its "
                    "name belongs to another document"
                )
        # ... and collection members carrying docsync's fields
        for collection_id, in_collection in sorted(members.items()):
            for file_id, member in sorted(in_collection.items()):
                fields = member["fields"]
                if not ours_by_fields(fields):
                    continue  # a person's file, or another installation's
                owner = current_file_of.get(file_id)
                if owner is None:
                    problems.append(
                        f"orphan member {file_id} in {collection_id} (fields {fields}): no live CRM "
                        "document points at it"
                    )
                elif fields.get("crm_document_id") != owner:
                    problems.append(
                        f"member {file_id} in {collection_id} names CRM document "
                        f"{fields.get('crm_document_id')!r}, but {owner} points at it"
                    )
        # at most one file per (CRM id, hash)
        by_key = Counter(
            (str(f["filename"])[len("crm-") :].split("-", 1)[0], f["sha256"])
            for f in files.values()
            if ours_by_name(str(f["filename"]))
        )
        for (doc_id, sha), count in sorted(by_key.items()):
            if count > 1:
                problems.append(f"{count} xAI files for document {doc_id} with content {sha[:12]}…")
    return problems


def assert_invariants(sandbox: Sandbox, **kwargs: Any) -> None:
    problems = check_invariants(sandbox, **kwargs)
    assert not problems, "invariants violated:\n  " + "\n  ".join(problems)
