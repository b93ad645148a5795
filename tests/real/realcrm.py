"""A real EspoCRM for the tests in ``tests/real`` (and the benchmarks): where it is, an admin who makes test data
through its REST API the way a person would, and the docsync CLI pointed at it with xAI as our emulator.

The CRM is named by the variables the fixture's ``env.sh`` exports (``../shared/real-espocrm``): ``ESPOCRM_URL``,
``ESPOCRM_API_KEY``, ``ESPOCRM_HMAC_API_KEY`` + ``ESPOCRM_SECRET_KEY`` (an HMAC API user), ``ESPOCRM_ADMIN_USER``
and ``ESPOCRM_ADMIN_PASSWORD`` (Basic auth, for making test data). ``REAL_ESPOCRM_DIR`` (the fixture's instance
directory) and ``REAL_ESPOCRM_FIXTURE`` (the fixture's folder) are set by ``scripts/test.sh`` only: the tests
that change the CRM's metadata need them.

Everything the admin makes is named ``docsync-real-test <run> …`` and deleted again (:meth:`Admin.cleanup`);
a session starts by deleting what a crashed earlier session left (:func:`sweep_leftovers`)."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from docsync_sandbox.xai import XaiEmulator
from tests.real.proxy import CountingProxy

TAG = "docsync-real-test"
"""Every record the suite makes is named with this, so a crashed session's leftovers can be found and deleted."""

NEEDED = ("ESPOCRM_URL", "ESPOCRM_API_KEY", "ESPOCRM_ADMIN_USER", "ESPOCRM_ADMIN_PASSWORD")
SKIP_REASON = ("no real EspoCRM to test against: scripts/test.sh starts one from ../shared/real-espocrm when that "
               "folder exists; elsewhere set " + ", ".join(NEEDED) + " (README: 'Test against your own EspoCRM "
               "before going live')")
LOGICAL = ("dateiStatus", "md5", "sha", "xaiFileId", "xaiCollections", "xaiSyncedHash", "xaiSyncStatus",
           "xaiSyncError", "preview")


@dataclass(frozen=True)
class RealCrm:
    """Where the real EspoCRM is and who may speak to it."""

    url: str
    api_key: str
    admin_user: str
    admin_password: str
    hmac_api_key: str | None = None
    secret_key: str | None = None
    instance_dir: Path | None = None  # REAL_ESPOCRM_DIR: the fixture's DIR (set by scripts/test.sh)
    fixture_dir: Path | None = None  # REAL_ESPOCRM_FIXTURE: ../shared/real-espocrm

    @classmethod
    def from_environ(cls, env: Mapping[str, str]) -> RealCrm | None:
        if not all(env.get(name) for name in NEEDED):
            return None
        directory, fixture = env.get("REAL_ESPOCRM_DIR"), env.get("REAL_ESPOCRM_FIXTURE")
        return cls(url=env["ESPOCRM_URL"].rstrip("/"), api_key=env["ESPOCRM_API_KEY"],
                   admin_user=env["ESPOCRM_ADMIN_USER"], admin_password=env["ESPOCRM_ADMIN_PASSWORD"],
                   hmac_api_key=env.get("ESPOCRM_HMAC_API_KEY") or None,
                   secret_key=env.get("ESPOCRM_SECRET_KEY") or None,
                   instance_dir=Path(directory) if directory else None,
                   fixture_dir=Path(fixture) if fixture else None)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.hmac_api_key, self.secret_key, self.admin_password) if s)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 80

    def api_user_env(self, *, hmac: bool = False, url: str | None = None) -> dict[str, str]:
        """docsync's EspoCRM settings for the API-key user, or the HMAC user (``url``: a proxy in front)."""
        if not hmac:
            return {"ESPOCRM_URL": url or self.url, "ESPOCRM_API_KEY": self.api_key}
        assert self.hmac_api_key and self.secret_key, "the CRM has no HMAC API user (ESPOCRM_HMAC_API_KEY)"
        return {"ESPOCRM_URL": url or self.url, "ESPOCRM_API_KEY": self.hmac_api_key,
                "ESPOCRM_SECRET_KEY": self.secret_key}


class Admin:
    """A person with admin rights making and changing records through the REST API (Basic auth).

    Field values are read and written by logical name (``dateiStatus``); the instance's attribute names (plain or
    the Entity Manager's ``c`` prefix) are learned from its metadata, again after :meth:`learn_fields`."""

    def __init__(self, crm: RealCrm, *, run: str | None = None) -> None:
        self.crm = crm
        self.run = run or secrets.token_hex(3)
        self.http = httpx.Client(base_url=crm.url + "/api/v1/", auth=(crm.admin_user, crm.admin_password),
                                 timeout=60, headers={"Content-Type": "application/json"})
        self.made: list[tuple[str, str]] = []  # (entity type, id), in the order made
        self.names: dict[str, str] = {}
        self.learn_fields()

    def close(self) -> None:
        self.http.close()

    # ---- plumbing ------------------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None, *, ok: Iterable[int] = (200,)) -> Any:
        answer = self.http.request(method, path, content=None if body is None else json.dumps(body))
        if answer.status_code not in tuple(ok):
            raise AssertionError(f"admin {method} {path}: HTTP {answer.status_code} "
                                 f"{answer.headers.get('X-Status-Reason')} {answer.text[:300]}")
        return answer.json() if answer.content else None

    def learn_fields(self) -> None:
        """The Document attribute names of docsync's fields in this instance (plain, else ``c``-prefixed)."""
        fields = self.call("GET", "Metadata?key=entityDefs.Document.fields") or {}
        self.names = {}
        for logical in LOGICAL:
            prefixed = "c" + logical[0].upper() + logical[1:]
            self.names[logical] = logical if logical in fields else prefixed
        account = self.call("GET", "Metadata?key=entityDefs.Account.fields") or {}
        self.names["xaiCollectionId"] = "xaiCollectionId" if "xaiCollectionId" in account else "cXaiCollectionId"

    def attr(self, logical: str) -> str:
        return self.names.get(logical, logical)

    def settings(self) -> dict[str, str]:
        """What an admin of this CRM configures for docsync beyond the defaults: the link rule's field, when the
        Entity Manager named it ``cXaiCollectionId`` (docsync finds c-prefixed Document fields by itself)."""
        field = self.attr("xaiCollectionId")
        return {} if field == "xaiCollectionId" else {"DOCSYNC_COLLECTIONS__LINKS": f"accounts:{field}"}

    def label(self, what: str) -> str:
        return f"{TAG} {self.run} {what}"

    def _made(self, entity: str, record_id: str) -> str:
        self.made.append((entity, record_id))
        return record_id

    # ---- records -------------------------------------------------------------------------------------

    def account(self, name: str, collection_id: str | None) -> str:
        body = {"name": self.label(name), self.attr("xaiCollectionId"): collection_id}
        return self._made("Account", str(self.call("POST", "Account", body)["id"]))

    def set_account_collection(self, account_id: str, collection_id: str | None) -> None:
        self.call("PUT", f"Account/{account_id}", {self.attr("xaiCollectionId"): collection_id})

    def attachment(self, content: bytes, file_name: str, mime: str = "application/octet-stream") -> str:
        """``POST Attachment`` for the Document's ``file`` field, as the UI uploads a file (contract §5.2)."""
        data = "data:" + mime + ";base64," + base64.b64encode(content).decode()
        body = {"name": file_name, "type": mime, "role": "Attachment", "relatedType": "Document",
                "field": "file", "file": data}
        return self._made("Attachment", str(self.call("POST", "Attachment", body)["id"]))

    def document(self, name: str, content: bytes | None, file_name: str | None = None, *,
                 mime: str = "application/octet-stream", status: str = "Neu", accounts: Iterable[str] = (),
                 teams: Iterable[str] = (), **attributes: Any) -> str:
        """A Document with its file and links, made as a person does (attachment first, then the record)."""
        body: dict[str, Any] = {"name": self.label(name), "publishDate": "2025-01-15",
                                self.attr("dateiStatus"): status, "accountsIds": list(accounts),
                                "teamsIds": list(teams), **attributes}
        if content is not None:
            body["fileId"] = self.attachment(content, file_name or name, mime)
        return self._made("Document", str(self.call("POST", "Document", body)["id"]))

    def replace_file(self, doc_id: str, content: bytes, file_name: str, mime: str = "application/octet-stream",
                     **attributes: Any) -> str:
        """A person uploads a new file into the Document (the status stays as it is unless given)."""
        attachment_id = self.attachment(content, file_name, mime)
        self.update(doc_id, fileId=attachment_id, **attributes)
        return attachment_id

    def update(self, doc_id: str, **values: Any) -> None:
        """``PUT Document/{id}``; keys are logical names where docsync has a field, else attribute names."""
        self.call("PUT", f"Document/{doc_id}", {self.attr(k): v for k, v in values.items()})

    def link(self, doc_id: str, account_id: str) -> None:
        self.call("POST", f"Document/{doc_id}/accounts", {"id": account_id})

    def unlink(self, doc_id: str, account_id: str) -> None:
        self.call("DELETE", f"Document/{doc_id}/accounts", {"id": account_id})

    def delete(self, entity: str, record_id: str) -> None:
        self.call("DELETE", f"{entity}/{record_id}", ok=(200, 404))

    def restore(self, entity: str, record_id: str) -> None:
        """An admin restores a deleted record (Deleted filter > Restore)."""
        self.call("POST", f"{entity}/action/restoreDeleted", {"id": record_id})

    def read(self, doc_id: str) -> dict[str, Any]:
        """The Document as the admin sees it, docsync's fields under their logical names as well."""
        record: dict[str, Any] = self.call("GET", f"Document/{doc_id}")
        for logical in LOGICAL:
            record.setdefault(logical, record.get(self.attr(logical)))
        record["previewId"] = record.get(self.attr("preview") + "Id")
        return record

    def file_bytes(self, attachment_id: str) -> bytes:
        answer = self.http.get(f"Attachment/file/{attachment_id}")
        assert answer.status_code == 200, (answer.status_code, answer.headers.get("X-Status-Reason"))
        return answer.content

    def team(self, name: str) -> str:
        return self._made("Team", str(self.call("POST", "Team", {"name": self.label(name)})["id"]))

    def api_user(self, name: str, *, role_data: dict[str, Any], teams: Iterable[str] = (),
                 field_data: dict[str, Any] | None = None) -> tuple[str, str]:
        """A role and an API user (API key) with it; returns (user id, API key)."""
        role = self._made("Role", str(self.call("POST", "Role", {
            "name": self.label(name), "data": role_data, "fieldData": field_data or {},
            "assignmentPermission": "no", "userPermission": "no", "exportPermission": "no",
            "massUpdatePermission": "no"})["id"]))
        user_name = f"{TAG}-{self.run}-{name}".lower().replace(" ", "-")
        user_id = self._made("User", str(self.call("POST", "User", {
            "userName": user_name, "type": "api", "authMethod": "ApiKey", "isActive": True,
            "rolesIds": [role], "teamsIds": list(teams), "lastName": user_name})["id"]))
        key = self.call("GET", f"User/{user_id}").get("apiKey")
        assert key, "EspoCRM gave the API user no key"
        return user_id, str(key)

    def cleanup(self) -> None:
        """Delete everything this admin made, newest first (documents before their accounts and attachments)."""
        order = {"Document": 0, "Attachment": 1, "Account": 2, "User": 3, "Role": 4, "Team": 5}
        for entity, record_id in sorted(reversed(self.made), key=lambda item: order.get(item[0], 9)):
            self.delete(entity, record_id)
        self.made.clear()


def sweep_leftovers(admin: Admin) -> int:
    """Delete the records an earlier session of the suite left behind (it crashed before its cleanup)."""
    swept = 0
    for entity, attribute in (("Document", "name"), ("Account", "name"), ("User", "userName"),
                              ("Role", "name"), ("Team", "name")):
        while True:
            found = admin.call("GET", f"{entity}?maxSize=200&select=id&where[0][type]=startsWith"
                                      f"&where[0][attribute]={attribute}&where[0][value]={TAG}")
            if not found["list"]:
                break
            for record in found["list"]:
                admin.delete(entity, record["id"])
                swept += 1
    return swept


def delete_foreign_documents(admin: Admin) -> int:
    """Delete every Document this suite did not make (only on a throwaway instance: see the ``real`` fixture)."""
    deleted = 0
    while True:
        found = admin.call("GET", "Document?maxSize=200&select=id&where[0][type]=notLike&where[0][attribute]=name"
                                  f"&where[0][value]={TAG}%25")
        if not found["list"]:
            return deleted
        for record in found["list"]:
            admin.delete("Document", record["id"])
            deleted += 1


def foreign_documents(admin: Admin) -> int:
    """How many Documents exist that this suite did not make (a sync would touch them too)."""
    found = admin.call("GET", f"Document?maxSize=1&select=id&where[0][type]=notLike"
                              f"&where[0][attribute]=name&where[0][value]={TAG}%25")
    return int(found["total"])


# ---- the xAI emulator and the CLI ------------------------------------------------------------------------


@contextmanager
def xai_emulator(processing_delay: float = 0.0) -> Iterator[XaiEmulator]:
    xai = XaiEmulator(api_key="xai-" + secrets.token_hex(12), management_key="xai-mgmt-" + secrets.token_hex(12),
                      processing_delay=processing_delay)
    xai.start(ports={"api": 0, "management": 0})
    try:
        yield xai
    finally:
        xai.stop()


@contextmanager
def counting_proxy(crm: RealCrm) -> Iterator[CountingProxy]:
    proxy = CountingProxy(crm.url)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


@dataclass
class Docsync:
    """The docsync CLI as a subprocess: EspoCRM is the real one (as the API-key user or the HMAC user), reached
    through ``proxy`` (which journals every request), xAI the emulator, a private state directory. :meth:`run`
    asserts that no key and no password appears in its output."""

    crm: RealCrm
    xai: XaiEmulator
    state: Path
    proxy: CountingProxy
    hmac: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    timeout: float = 180.0

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
        env |= self.crm.api_user_env(hmac=self.hmac, url=self.proxy.url)
        env |= {"XAI_API_URL": self.xai.api_url, "XAI_MANAGEMENT_URL": self.xai.management_url,
                "XAI_API_KEY": self.xai.api_key, "XAI_MANAGEMENT_KEY": self.xai.management_key,
                "DOCSYNC_STATE_DIR": str(self.state), "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2",
                "DOCSYNC_SYNC__MAX_ATTEMPTS": "3", "DOCSYNC_SYNC__CONCURRENCY": "4"}
        return env | self.extra

    def run(self, *args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "docsync_cli", *args], env=self.environment() | (extra_env or {}),
                              text=True, capture_output=True, timeout=self.timeout, check=False)
        for secret in (*self.crm.secrets, self.xai.api_key, self.xai.management_key):
            assert secret not in done.stdout, f"a secret was printed by {args}"
            assert secret not in done.stderr, f"a secret was logged by {args}"
        return done

    def crm_writes(self) -> list[str]:
        """The EspoCRM writes docsync sent since the journal was last cleared, as ``METHOD path`` lines."""
        return [f"{e.method} {e.path}" for e in self.proxy.writes()]

    def clear_journals(self) -> None:
        self.proxy.clear_journal()
        self.xai.clear_journal()

    def ok(self, *args: str, code: int = 0, extra_env: dict[str, str] | None = None) -> str:
        done = self.run(*args, extra_env=extra_env)
        assert done.returncode == code, f"docsync {' '.join(args)} exited {done.returncode}:\n" + done.stdout \
            + done.stderr
        return done.stdout

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self.ok(*args, "--json", code=code))


def members(xai: XaiEmulator, collection_id: str) -> dict[str, str]:
    """crm document id -> xAI file id, for the collection's documents docsync put there."""
    return {doc["fields"]["crm_document_id"]: file_id
            for file_id, doc in xai.collection_documents(collection_id).items()
            if "crm_document_id" in doc["fields"]}
