"""The two backends of the EspoCRM contract suite: the emulator and a real EspoCRM (9.2.7 on loopback, or any
instance given by environment variables).

A test talks to the server as docsync does (an API user, over HTTP) and prepares what it needs the way a person or
an admin would: through :class:`Backend` (records, links, file replacements, role variants, server settings). On the
emulator those are its seed helpers and option attributes; on the real server they are admin API calls (Basic
auth), and, only where nothing else can do it (ids that differ from EspoCRM's own), SQL through the instance's
MariaDB socket when ``DOCSYNC_REAL_ADMIN_SHELL`` names the instance dir (the ``DIR`` of ``setup.sh DIR``).

Role variants (:class:`RoleSpec`): the real fixture's role "docsync API" (Document read/edit all, ``status``
read-only, Account read and stream all, GlobalStream) is the default; other variants get their own role and API
user on the real server, made once and found again by name on later runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from docsync_sandbox.espocrm import EspoEmulator

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n"
API_KEY = "contract-key"
REAL_ENV = ("ESPOCRM_URL", "ESPOCRM_API_KEY", "ESPOCRM_ADMIN_USER", "ESPOCRM_ADMIN_PASSWORD")
CONTRACT_TEAM = "docsync-contract"


def real_missing() -> list[str]:
    """The environment variables a real backend needs that are not set."""
    return [name for name in REAL_ENV if not os.environ.get(name)]


def admin_shell() -> str | None:
    """The real instance's dir (``DOCSYNC_REAL_ADMIN_SHELL``) for what only SQL can make, or None."""
    value = os.environ.get("DOCSYNC_REAL_ADMIN_SHELL")
    return value if value and os.path.isdir(value) else None


@dataclass(frozen=True)
class RoleSpec:
    """A role for the API user. ``document_read`` "team" makes :meth:`Backend.hide` possible on the real server."""

    account_read: str = "all"
    account_stream: str = "all"
    read_only: frozenset[str] = field(default_factory=lambda: frozenset({"status"}))
    document_read: str = "all"

    @property
    def slug(self) -> str:
        text = json.dumps([self.account_read, self.account_stream, sorted(self.read_only), self.document_read])
        return hashlib.sha256(text.encode()).hexdigest()[:10]


DEFAULT_ROLE = RoleSpec()


class Backend:
    """What a contract test may do besides speaking to the API as docsync does."""

    name = ""

    def client(self, role: RoleSpec = DEFAULT_ROLE) -> httpx.Client:
        raise NotImplementedError

    def api_user_id(self, role: RoleSpec = DEFAULT_ROLE) -> str:
        raise NotImplementedError

    def add_document(self, name: str, content: bytes = PDF, file_name: str = "file.pdf", **attrs: Any) -> str:
        raise NotImplementedError

    def add_account(self, name: str, assigned_user_id: str | None = None) -> str:
        raise NotImplementedError

    def link(self, doc_id: str, account_ids: list[str]) -> None:
        """A person relates a Document to Accounts (one request for several: a Relate note per pair)."""
        raise NotImplementedError

    def unlink(self, doc_id: str, account_id: str) -> None:
        raise NotImplementedError

    def person_update(self, doc_id: str, **attrs: Any) -> None:
        raise NotImplementedError

    def replace_file(self, doc_id: str, content: bytes, file_name: str = "new.pdf") -> str:
        """A person uploads a new file for the Document; returns the new attachment id."""
        raise NotImplementedError

    def delete_document(self, doc_id: str) -> None:
        raise NotImplementedError

    def hide(self, doc_id: str) -> None:
        """Make the Document unreadable for a :class:`RoleSpec` with ``document_read="team"``."""
        raise NotImplementedError

    def unhide(self, doc_id: str) -> None:
        raise NotImplementedError

    @contextmanager
    def count_disabled(self) -> Iterator[None]:
        """entityDefs.Document.collection.countDisabled on for the duration ("Disable record count")."""
        raise NotImplementedError
        yield

    def add_document_with_id(self, record_id: str, name: str) -> str:
        """A Document with an explicit id (imported, migrated); None-able on the real server without SQL."""
        raise NotImplementedError

    def hmac_user(self) -> tuple[str, str] | None:
        """(API key, secret key) of an API user with HMAC authentication, or None when there is none."""
        raise NotImplementedError

    def unique(self, stem: str) -> str:
        """A name no other test (or earlier run on a shared server) uses."""
        return f"{stem} {uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------------


class EmulatorBackend(Backend):
    name = "emulator"

    def __init__(self, emulator: EspoEmulator) -> None:
        self.emu = emulator
        self._clients: list[httpx.Client] = []

    def reset(self) -> None:
        emu = self.emu
        emu.reset()
        emu.api_key, emu.secret_key = API_KEY, None
        emu.global_stream = True
        emu.account_read = emu.account_stream = emu.document_read = "all"
        emu.read_only_fields = {"status"}
        emu.count_disabled = emu.short_pages = emu.relate_note_dedup = False
        emu.date_skew = 0.0

    def close(self) -> None:
        for http in self._clients:
            http.close()
        self._clients.clear()

    def client(self, role: RoleSpec = DEFAULT_ROLE) -> httpx.Client:
        self.emu.account_read = role.account_read
        self.emu.account_stream = role.account_stream
        self.emu.read_only_fields = set(role.read_only)
        self.emu.document_read = role.document_read
        http = httpx.Client(base_url=self.emu.url + "/api/v1/", headers={"X-Api-Key": API_KEY}, timeout=30)
        self._clients.append(http)
        return http

    def api_user_id(self, role: RoleSpec = DEFAULT_ROLE) -> str:
        return self.emu.api_user_id

    def add_document(self, name: str, content: bytes = PDF, file_name: str = "file.pdf", **attrs: Any) -> str:
        return self.emu.add_document(name, content, file_name, **attrs)

    def add_account(self, name: str, assigned_user_id: str | None = None) -> str:
        return self.emu.add_account(name, assigned_user_id=assigned_user_id)

    def link(self, doc_id: str, account_ids: list[str]) -> None:
        for account_id in account_ids:
            self.emu.link(doc_id, "accounts", account_id)

    def unlink(self, doc_id: str, account_id: str) -> None:
        self.emu.unlink(doc_id, "accounts", account_id)

    def person_update(self, doc_id: str, **attrs: Any) -> None:
        self.emu.user_update(doc_id, **attrs)

    def replace_file(self, doc_id: str, content: bytes, file_name: str = "new.pdf") -> str:
        return self.emu.replace_file(doc_id, content, file_name)

    def delete_document(self, doc_id: str) -> None:
        self.emu.delete_document(doc_id)

    def hide(self, doc_id: str) -> None:
        self.emu.hide_document(doc_id)

    def unhide(self, doc_id: str) -> None:
        self.emu.unhide_document(doc_id)

    @contextmanager
    def count_disabled(self) -> Iterator[None]:
        self.emu.count_disabled = True
        try:
            yield
        finally:
            self.emu.count_disabled = False

    def add_document_with_id(self, record_id: str, name: str) -> str:
        return self.emu.add_document(name, PDF, "file.pdf", record_id=record_id)

    def hmac_user(self) -> tuple[str, str] | None:
        self.emu.api_key, self.emu.secret_key = "contract-hmac-key", "contract-hmac-secret"  # until reset()
        return self.emu.api_key, self.emu.secret_key


# ---------------------------------------------------------------------------------------------------


class RealBackend(Backend):
    """A running EspoCRM: ``ESPOCRM_URL``, ``ESPOCRM_API_KEY`` (the docsync API user of the fixture's role),
    ``ESPOCRM_ADMIN_USER``/``ESPOCRM_ADMIN_PASSWORD`` (Basic auth, to make records and role variants)."""

    name = "real"

    def __init__(self) -> None:
        self.url = os.environ["ESPOCRM_URL"].rstrip("/") + "/api/v1/"
        auth = (os.environ["ESPOCRM_ADMIN_USER"], os.environ["ESPOCRM_ADMIN_PASSWORD"])
        self.admin = httpx.Client(base_url=self.url, auth=auth, timeout=120)
        self._clients: dict[RoleSpec, httpx.Client] = {}
        self._users: dict[RoleSpec, str] = {}
        self._team_id: str | None = None

    def close(self) -> None:
        for http in self._clients.values():
            http.close()
        self.admin.close()

    # -- admin calls -------------------------------------------------------------------------------

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self.admin.request(method, path, json=body)
        if response.status_code != 200:
            raise AssertionError(f"admin {method} {path}: {response.status_code} "
                                 f"{response.headers.get('x-status-reason')} {response.text[:300]}")
        return response.json() if response.content else None

    def _find(self, entity: str, attribute: str, value: str, extra: str = "") -> list[dict[str, Any]]:
        found = self._admin("GET", f"{entity}?where[0][type]=equals&where[0][attribute]={attribute}"
                                   f"&where[0][value]={value}{extra}")
        return [r for r in found["list"] if r.get(attribute) == value]

    def team_id(self) -> str:
        if self._team_id is None:
            teams = self._find("Team", "name", CONTRACT_TEAM)
            self._team_id = teams[0]["id"] if teams else str(self._admin("POST", "Team", {"name": CONTRACT_TEAM})["id"])
        return self._team_id

    # -- the API user, per role --------------------------------------------------------------------

    def client(self, role: RoleSpec = DEFAULT_ROLE) -> httpx.Client:
        if role not in self._clients:
            key = os.environ["ESPOCRM_API_KEY"] if role == DEFAULT_ROLE else self._role_user(role)[1]
            self._clients[role] = httpx.Client(base_url=self.url, headers={"X-Api-Key": key}, timeout=60)
        return self._clients[role]

    def api_user_id(self, role: RoleSpec = DEFAULT_ROLE) -> str:
        if role not in self._users:
            if role == DEFAULT_ROLE:
                me = self.client(role).get("App/user").json()
                self._users[role] = str(me["user"]["id"])
            else:
                self._users[role] = self._role_user(role)[0]
        return self._users[role]

    def _role_user(self, role: RoleSpec) -> tuple[str, str]:
        """(user id, API key) of the API user with this role, made on first use."""
        name = f"docsync-contract-{role.slug}"
        data = {
            "Document": {"create": "no", "read": role.document_read, "edit": role.document_read, "delete": "no",
                         "stream": role.document_read},
            "Account": {"create": "no", "read": role.account_read, "edit": "no", "delete": "no",
                        "stream": role.account_stream},
            "GlobalStream": True,
        }
        field_data = {"Document": {f: {"read": "yes", "edit": "no"} for f in sorted(role.read_only)}}
        roles = self._find("Role", "name", name)
        if roles:
            role_id = roles[0]["id"]
            self._admin("PUT", f"Role/{role_id}", {"data": data, "fieldData": field_data})
        else:
            role_id = self._admin("POST", "Role", {"name": name, "data": data, "fieldData": field_data})["id"]
        users = self._find("User", "userName", name, "&userType=api")
        if users:  # made by an earlier run: bring its role and team up to date
            user_id = str(users[0]["id"])
            self._admin("PUT", f"User/{user_id}", {"rolesIds": [role_id], "teamsIds": [self.team_id()],
                                                   "isActive": True})
        else:
            user_id = str(self._admin("POST", "User", {
                "userName": name, "lastName": name, "type": "api", "authMethod": "ApiKey", "isActive": True,
                "rolesIds": [role_id], "teamsIds": [self.team_id()]})["id"])
        user = self._admin("GET", f"User/{user_id}")
        return user_id, str(user["apiKey"])

    # -- records as a person makes them ------------------------------------------------------------

    def _attachment(self, content: bytes, file_name: str) -> str:
        mime = "application/pdf" if file_name.endswith(".pdf") else "text/plain"
        data = f"data:{mime};base64," + base64.b64encode(content).decode()
        return str(self._admin("POST", "Attachment", {"name": file_name, "type": mime, "role": "Attachment",
                                                      "relatedType": "Document", "field": "file",
                                                      "file": data})["id"])

    def add_document(self, name: str, content: bytes = PDF, file_name: str = "file.pdf", **attrs: Any) -> str:
        body = {"name": name, "fileId": self._attachment(content, file_name), "publishDate": "2025-01-01",
                "teamsIds": [self.team_id()], **attrs}
        return str(self._admin("POST", "Document", body)["id"])

    def add_account(self, name: str, assigned_user_id: str | None = None) -> str:
        return str(self._admin("POST", "Account", {"name": name, "assignedUserId": assigned_user_id})["id"])

    def link(self, doc_id: str, account_ids: list[str]) -> None:
        self._admin("POST", f"Document/{doc_id}/accounts", {"ids": account_ids})

    def unlink(self, doc_id: str, account_id: str) -> None:
        response = self.admin.request("DELETE", f"Document/{doc_id}/accounts", json={"id": account_id})
        assert response.status_code == 200, response.headers.get("x-status-reason")

    def person_update(self, doc_id: str, **attrs: Any) -> None:
        self._admin("PUT", f"Document/{doc_id}", attrs)

    def replace_file(self, doc_id: str, content: bytes, file_name: str = "new.pdf") -> str:
        attachment = self._attachment(content, file_name)
        self._admin("PUT", f"Document/{doc_id}", {"fileId": attachment})
        return attachment

    def delete_document(self, doc_id: str) -> None:
        self._admin("DELETE", f"Document/{doc_id}")

    def hide(self, doc_id: str) -> None:
        self._admin("PUT", f"Document/{doc_id}", {"teamsIds": []})

    def unhide(self, doc_id: str) -> None:
        self._admin("PUT", f"Document/{doc_id}", {"teamsIds": [self.team_id()]})

    @contextmanager
    def count_disabled(self) -> Iterator[None]:
        # Administration > Entity Manager > Document > "Disable record count"; takes effect at once (no rebuild)
        self._admin("POST", "EntityManager/action/updateEntity", {"name": "Document", "countDisabled": True})
        try:
            self._wait_for_total(lambda total: total < 0)
            yield
        finally:
            self._admin("POST", "EntityManager/action/updateEntity", {"name": "Document", "countDisabled": False})
            self._wait_for_total(lambda total: total >= 0)

    def _wait_for_total(self, ok: Any) -> None:
        """Every PHP worker answers with the new metadata (several requests in a row agree)."""
        deadline = time.monotonic() + 30
        streak = 0
        while streak < 8:
            total = self.client().get("Document", params={"select": "id", "maxSize": 1}).json()["total"]
            streak = streak + 1 if ok(total) else 0
            if time.monotonic() > deadline:
                raise AssertionError("the real server did not take the countDisabled change within 30 s")

    def hmac_user(self) -> tuple[str, str] | None:
        key, secret = os.environ.get("ESPOCRM_HMAC_API_KEY"), os.environ.get("ESPOCRM_SECRET_KEY")
        return (key, secret) if key and secret else None

    def add_document_with_id(self, record_id: str, name: str) -> str:
        shell = admin_shell()
        if shell is None:
            raise RuntimeError("needs DOCSYNC_REAL_ADMIN_SHELL")
        made = self.add_document(name)
        socket = os.path.join(shell, "db", "run", "mysqld.sock")
        sql = f"UPDATE document SET id = '{record_id}' WHERE id = '{made}'"
        subprocess.run(["mariadb", "--no-defaults", f"--socket={socket}", "-uroot", "espocrm", "-e", sql],
                       check=True, capture_output=True, timeout=60)
        return record_id
