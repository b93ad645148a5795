"""``docsync check``: is this installation ready to sync? Every check prints one ✓/✗ line, and its fix.

Only read requests go to the services: ``GET App/user`` and ``GET Metadata`` (EspoCRM), ``GET /v1/files?limit=1``
(xAI Files), ``GET /v1/collections/{id}`` or ``GET /v1/collections?limit=1`` (xAI Management). The preview tools
are looked up, not started (no LibreOffice launch). Collections named by linked records (one per client) are not
checked: there may be thousands; ``docsync explain --id`` shows them for one document.

Nothing printed contains a secret: every line goes through :func:`~.config.redact` once the settings are known,
and configuration problems are already secret-free.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from .config import Settings, load_settings, redact
from .errors import AuthError, ConfigError, DocsyncError, NotFoundError, ServiceUnreachable
from .espocrm_fields import ACCOUNT, check_fields
from .outcome import EXIT_OK, EXIT_REMOTE, EXIT_USAGE
from .services import Services

OK, FAIL, WARN, SKIP = "✓", "✗", "!", "–"


class _Report:
    """Prints check lines and remembers whether any failed."""

    def __init__(self, console: Any) -> None:
        self.console = console
        self.ok = True
        self.unreachable = False  # a service that could not be reached or refused the key: exit 3, like sync
        self.settings: Settings | None = None

    def _print(self, text: str, style: str | None = None) -> None:
        if self.settings is not None:
            text = redact(text, self.settings)
        self.console.print(text, markup=False, highlight=False, soft_wrap=True, style=style)

    def good(self, what: str, detail: str = "") -> None:
        self._print(f"{OK} {what}" + (f": {detail}" if detail else ""), "green")

    def bad(self, what: str, detail: str, fix: str, more: list[str] | None = None) -> None:
        self.ok = False
        self._print(f"{FAIL} {what}: {detail}", "red")
        for line in more or []:
            self._print(f"    • {line}")
        self._print(f"    fix: {fix}")

    def warn(self, what: str, detail: str, fix: str = "") -> None:
        self._print(f"{WARN} {what}: {detail}" + (f"\n    fix: {fix}" if fix else ""), "yellow")

    def skip(self, what: str, why: str) -> None:
        self._print(f"{SKIP} {what}: skipped ({why})", "dim")


def run_checks(config_path: Path | None, console: Any) -> int:
    """Run every check, print one ✓/✗ line each (with the fix for each ✗), and return the exit code: 0 when all
    passed, 3 when a service was unreachable or refused a key (as ``sync`` would exit), else 2.

    Order: configuration (including the config file's permissions) → EspoCRM (key, API user's rights, Document
    fields, link fields) → xAI Files key → xAI Management key and each ``collections.static`` collection →
    preview tools → state directory → lock backend. A configuration that does not load stops the service
    checks (they need it); the preview tools are still checked. Never raises for a failed check.
    """
    report = _Report(console)
    try:
        settings = load_settings(config_path)
    except ConfigError as exc:
        report.bad("configuration", f"{len(exc.problems)} problem(s)",
                   "correct the settings named above (see `docsync --help` and the README's Configure "
                   "section); then run `docsync check` again", exc.problems)
        _check_preview_tools(report, None)
        return EXIT_USAGE
    report.settings = settings
    where = f"from {settings.config_path}" if settings.config_path else "from the environment (no config file)"
    report.good("configuration", f"loaded {where}")

    from .report_status import report_services

    try:
        with report_services(settings) as services:
            if _check_espocrm(report, settings, services):
                _check_document_fields(report, settings, services)
                _check_link_fields(report, settings, services)
                _check_change_feeds(report, services)
            _check_xai_files(report, services)
            _check_xai_management(report, settings, services)
    except DocsyncError as exc:  # a client that cannot even be built; the checks above catch the rest
        report.bad("services", str(exc), "check the URLs and keys in the configuration")
    _check_preview_tools(report, settings)
    _check_libreoffice_shared_cache(report)
    if _check_state_dir(report, settings) or settings.lock.backend != "file":
        _check_lock(report, settings)
    else:
        report.skip(f"lock backend ({settings.lock.backend})", "its lock files live in the state directory")
    report._print("All checks passed." if report.ok else "Some checks failed; see the fixes above.",
                  "bold green" if report.ok else "bold red")
    return EXIT_OK if report.ok else EXIT_REMOTE if report.unreachable else EXIT_USAGE


# ---------------------------------------------------------------------------------------------- EspoCRM


def _check_espocrm(report: _Report, settings: Settings, services: Services) -> bool:
    what = f"EspoCRM at {settings.espocrm.url}"
    try:
        answer = services.espo.app_user()
    except AuthError as exc:
        report.unreachable = True
        if exc.status == 401:
            fix = ("check ESPOCRM_API_KEY (and ESPOCRM_SECRET_KEY for HMAC): it must be the API key of the "
                   "API user (Administration > API Users)")
        else:
            fix = "give the API user a role that may use the API (Administration > Roles)"
        report.bad(what, str(exc), fix)
        return False
    except ServiceUnreachable as exc:
        report.unreachable = True
        report.bad(what, str(exc), "check ESPOCRM_URL (espocrm.url) and the network (DNS, firewall, proxy)")
        return False
    except DocsyncError as exc:
        report.bad(what, str(exc), "check ESPOCRM_URL: it must be the EspoCRM site URL (without /api/v1)")
        return False
    user = answer.get("user") if isinstance(answer, dict) else None
    name = str(user.get("userName") or user.get("name") or "?") if isinstance(user, dict) else "?"
    report.good(what, f"reachable, key accepted (API user {name})")
    _check_acl(report, answer)
    return True


def _check_acl(report: _Report, answer: Any) -> None:
    """Best effort: the API user's role must let it read and edit Documents and create Attachments."""
    acl = answer.get("acl") if isinstance(answer, dict) else None
    table = acl.get("table") if isinstance(acl, dict) else None
    if not isinstance(table, dict):
        return
    needs = [("Document", "read"), ("Document", "edit"), ("Attachment", "create")]
    missing = []
    for scope, action in needs:
        rights = table.get(scope)
        if isinstance(rights, dict) and rights.get(action) in ("no", False):
            missing.append(f"{scope} {action}")
    if missing:
        report.bad("EspoCRM API user rights", "the role does not allow " + ", ".join(missing),
                   "Administration > Roles: give the API user's role Document read+edit (all) and Attachment "
                   "create")
    else:
        report.good("EspoCRM API user rights", "Document read/edit and Attachment create allowed")


def _check_document_fields(report: _Report, settings: Settings, services: Services) -> None:
    """The same required checks ``sync`` runs before its first write (``Engine.learn_fields``), plus hints."""
    try:
        schema = services.espo.learn()
    except DocsyncError as exc:
        report.bad("Document fields", f"cannot read the metadata: {exc}",
                   "let the API user read metadata, or check the fields by hand against `docsync espocrm-fields`")
        return
    if not schema.known:
        report.bad("Document fields", "EspoCRM gave no Document field definitions (GET Metadata?key=... needs "
                   "EspoCRM 8.2 or later)",
                   "upgrade EspoCRM, or check the fields by hand against `docsync espocrm-fields`; sync then "
                   "writes only the design document's options")
        return
    for note in schema.notes:
        report.warn("Document field name", note)
    if schema.problems:
        report.bad("Document fields", f"{len(schema.problems)} problem(s); `docsync sync` refuses to start",
                   "run `docsync espocrm-fields` for the field definitions to add, then Administration > Rebuild; "
                   "or point espocrm.fields.<name> at the fields that exist", list(schema.problems))
    else:
        report.good("Document fields", f"all docsync fields exist with the right types and options (preview is "
                    f"{'an image' if schema.preview_type == 'image' else 'a file'} field)")
    for hint in schema.hints:
        report.warn("hint", hint)
    report.good("EspoCRM list page size", f"{services.espo.page_size} documents per request "
                "(App/user settings.recordListMaxSizeLimit)")


def _check_link_fields(report: _Report, settings: Settings, services: Services) -> None:
    for rule in settings.collections.links:
        what = f"link {rule.link}:{rule.field}"
        try:
            link = services.espo.metadata(f"entityDefs.Document.links.{rule.link}")
            entity = link.get("entity") if isinstance(link, dict) else None
            if not isinstance(entity, str):
                report.bad(what, f"Document has no link {rule.link!r}",
                           "correct collections.links (DOCSYNC_COLLECTIONS__LINKS=link:field,...) to name a link "
                           "of Document, e.g. accounts:xaiCollectionId")
                continue
            fields = services.espo.metadata(f"entityDefs.{entity}.fields")
        except DocsyncError as exc:
            report.warn(what, f"cannot read the metadata ({exc}); not checked")
            continue
        definition = fields.get(rule.field) if isinstance(fields, dict) else None
        if not isinstance(definition, dict):
            report.bad(what, f"{entity} has no field {rule.field!r}",
                       f"add a varchar field {rule.field} to {entity} (Administration > Entity Manager > {entity} > "
                       "Fields) holding the xAI collection id, or correct collections.links")
            continue
        if entity == ACCOUNT:
            problems = check_fields({rule.field: definition}, {"xaiCollectionId": rule.field}, ACCOUNT)
        elif definition.get("type") not in ("varchar", "text", "enum", "url"):
            problems = [f"{entity} field {rule.field} has type {definition.get('type')!r}; a collection id needs a "
                        "text field (varchar)"]
        else:
            problems = []
        if problems:
            report.bad(what, "; ".join(problems), "correct the field or collections.links")
        else:
            report.good(what, f"{entity}.{rule.field} exists")


def _check_change_feeds(report: _Report, services: Services) -> None:
    """Which change feeds plain runs can use (contract §10.6, §10.7); neither is required."""
    espo = services.espo
    try:
        espo.stream_notes(None, (), ())
        report.good("Stream notes (GlobalStream)", "readable: link changes are noticed by the next run")
    except AuthError as exc:
        if exc.status == 401:
            raise
        report.warn("Stream notes (GlobalStream)", "the API user's role has no GlobalStream scope: linking or "
                    "unlinking a document is noticed only by the next listing pass (sync.listing_interval_seconds)",
                    "Administration > Roles > the API user's role: set GlobalStream to enabled")
    except DocsyncError as exc:
        report.warn("Stream notes (GlobalStream)", f"cannot be read ({exc}); link changes wait for the next "
                    "listing pass")
    try:
        no_load = espo.metadata("entityDefs.Document.fields.accounts.noLoad")
    except DocsyncError as exc:
        report.warn("accountsIds override", f"cannot read the metadata ({exc}); not checked")
        return
    if no_load is False:
        report.good("accountsIds override", "active (noLoad: false): listing passes read links from the listing")
    else:
        report.warn("accountsIds override", "not set: each listing pass lists the documents of every account "
                    "with a collection (one or more requests per account)",
                    "optional: add the accounts override shown by `docsync espocrm-fields`, then Rebuild")


# ---------------------------------------------------------------------------------------------- xAI


def _check_xai_files(report: _Report, services: Services) -> None:
    what = "xAI Files API key"
    try:
        services.xai.files.json("GET", "/v1/files", params={"limit": 1})
    except AuthError as exc:
        report.unreachable = True
        report.bad(what, str(exc), "check XAI_API_KEY: an xAI API key with access to the Files API "
                   "(console.x.ai > API Keys)")
    except ServiceUnreachable as exc:
        report.unreachable = True
        report.bad(what, str(exc), "check XAI_API_URL (xai.api_url) and the network")
    except DocsyncError as exc:
        report.bad(what, str(exc), "check XAI_API_URL (xai.api_url) and XAI_API_KEY")
    else:
        report.good(what, "accepted")


def _check_xai_management(report: _Report, settings: Settings, services: Services) -> None:
    what = "xAI Management API key"
    static = settings.collections.static
    try:
        if not static:
            listing = services.xai.management.json("GET", "/v1/collections", params={"limit": 1})
            report.good(what, "accepted (no collections.static to check)")
            first = _first_collection_id(listing)
            if first is not None:
                _check_document_permissions(report, services, first)
            report.skip("collections of linked records", "one per client; `docsync explain --id` shows them")
            return
        missing: list[str] = []
        for collection_id in static:
            try:
                collection = services.xai.get_collection(collection_id)
            except NotFoundError:
                missing.append(collection_id)
                continue
            name = collection.get("collection_name") or collection.get("name") or ""
            report.good(f"collection {collection_id}", f"exists{f' ({name})' if name else ''}")
            _check_document_permissions(report, services, collection_id)
        if missing:
            report.bad("collections.static", "collection(s) not found: " + ", ".join(missing),
                       "create them in the xAI console (or use their right ids), or remove them from "
                       "collections.static / DOCSYNC_COLLECTIONS__STATIC")
        report.good(what, "accepted")
        report.skip("collections of linked records", "one per client; `docsync explain --id` shows them")
    except (AuthError, ServiceUnreachable) as exc:
        report.unreachable = True
        fix = ("check XAI_MANAGEMENT_KEY: a management key (console.x.ai > Management Keys) of the team that owns "
               "the collections" if isinstance(exc, AuthError)
               else "check XAI_MANAGEMENT_URL (xai.management_url) and the network")
        report.bad(what, str(exc), fix)
    except DocsyncError as exc:
        report.bad(what, str(exc), "check XAI_MANAGEMENT_URL and XAI_MANAGEMENT_KEY")


PROBE_FILE_ID = "file_00000000-0000-0000-0000-000000000000"  # asked for, never expected to exist


def _first_collection_id(listing: Any) -> str | None:
    collections = listing.get("collections") if isinstance(listing, dict) else None
    if isinstance(collections, list) and collections and isinstance(collections[0], dict):
        found = collections[0].get("collection_id")
        return found if isinstance(found, str) and found else None
    return None


def _check_document_permissions(report: _Report, services: Services, collection_id: str) -> None:
    """The management key's read permissions docsync uses (list and batch-get documents, xAI contract §15).
    Add, remove and update collection cannot be tested without writing; a key without them fails at the first
    document with exit 3."""
    what = f"management key permissions on {collection_id}"
    denied: list[str] = []
    for name, probe in (
        ("list documents", lambda: services.xai.management.json(
            "GET", f"/v1/collections/{collection_id}/documents", params={"limit": 1})),
        ("batch-get documents", lambda: services.xai.statuses(collection_id, [PROBE_FILE_ID])),
    ):
        try:
            probe()
        except AuthError as exc:
            denied.append(f"{name} ({exc})")
        except NotFoundError:
            continue  # the probe id is unknown: the call itself was allowed
    if denied:
        report.bad(what, "refused: " + "; ".join(denied),
                   "give the management key the collection document permissions (console.x.ai > Management "
                   "Keys): list, batch-get, add and remove documents, update collection")
    else:
        report.good(what, "list and batch-get documents allowed (add, remove and update collection cannot be "
                    "tested without writing)")


# ---------------------------------------------------------------------------------------------- local


def _check_preview_tools(report: _Report, settings: Settings | None) -> None:
    if settings is not None and not settings.preview.enabled:
        report.skip("preview tools", "previews are off (preview.enabled = false)")
        return
    try:
        from .preview import PreviewService

        with PreviewService(workers=1) as service:
            status = service.tools_status()
    except Exception as exc:  # noqa: BLE001 - a broken install shows as any import or library error
        report.bad("preview tools", f"cannot load the preview libraries ({type(exc).__name__}: {exc})",
                   "reinstall docsync with its dependencies (Pillow, pypdfium2), or set preview.enabled = false")
        return
    broken = {tool: text for tool, text in status.items() if not text.startswith("ok")}
    hard = {tool: text for tool, text in broken.items() if tool != "fonts"}
    if hard:
        report.bad("preview tools", "; ".join(f"{tool}: {text}" for tool, text in hard.items()),
                   "install what is named above (office previews need LibreOffice and python3-uno), or set "
                   "preview.enabled = false")
    else:
        report.good("preview tools", ", ".join(f"{tool} {text.removeprefix('ok').strip(' ()')}".strip()
                                               for tool, text in status.items() if tool not in broken))
    if "fonts" in broken:
        report.warn("preview fonts", broken["fonts"])


def _check_state_dir(report: _Report, settings: Settings) -> bool:
    """True when the state directory is usable (exists and writable, or can be created)."""
    from .statedir import state_dir_problem, user_name

    state_dir = settings.state_dir
    what = f"state directory {state_dir}"
    problem = state_dir_problem(state_dir)
    if problem is not None:
        detail, _, fix = problem.partition("; fix (as root): ")
        report.bad(what, detail.replace(f"the state directory {state_dir} ", ""), f"as root: {fix}" if fix else
                   "see above")
        return False
    if not state_dir.exists():
        report.good(what, "does not exist yet; the first run creates it")
        return True
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".docsync-check-"):
            pass
    except OSError as exc:
        report.bad(what, f"not writable ({exc.strerror or exc})",
                   f"chown it to the user running docsync (uid {os.geteuid()}) and chmod 700 {state_dir}")
        return False
    owner = state_dir.stat().st_uid
    if owner != os.geteuid():
        report.warn(what, f"writable, but owned by {user_name(owner)}: files this run creates would be "
                    f"{user_name(os.geteuid())}'s and could lock the owner out",
                    f"run docsync as {user_name(owner)} (e.g. runuser -u {user_name(owner)} -- docsync check)")
        return True
    report.good(what, "writable")
    from .state import peek_installation_id

    ident = peek_installation_id(state_dir, settings.sync.installation_id)
    report.good("installation id", ident or "not made yet; the first sync stores one in the state directory")
    return True


def _check_libreoffice_shared_cache(report: _Report) -> None:
    """A shared LibreOffice extension cache the current user cannot read (left by a root LibreOffice started
    under a private umask, e.g. by an older docsync) breaks every other LibreOffice of this user."""
    from .preview.office import unreadable_shared_cache

    bad = unreadable_shared_cache()
    if bad is not None:
        report.warn("LibreOffice shared extension cache", f"{bad} is not readable for "
                    f"{os.environ.get('USER') or os.geteuid()}; docsync's own previews do not use it, but every "
                    "other LibreOffice of this user aborts at start",
                    "as root: chmod -R a+rX /var/spool/libreoffice")


def _check_lock(report: _Report, settings: Settings) -> None:
    from .locks import make_locks
    from .statedir import state_dir_problem

    what = f"lock backend ({settings.lock.backend})"
    if settings.lock.backend == "file" and state_dir_problem(settings.state_dir) is not None:
        report.skip(what, "the lock lives in the state directory; fix that first (above)")
        return
    locks = None
    try:
        locks = make_locks(settings.lock.backend, settings.state_dir, settings.lock.url, settings.lock.ttl_seconds)
        holder = locks.holder()
    except DocsyncError as exc:
        fix = ("start Redis or correct lock.url (DOCSYNC_LOCK__URL)" if settings.lock.backend == "redis"
               else "keep the state directory on a local disk that supports flock()")
        report.bad(what, str(exc), fix)
        return
    finally:
        if locks is not None:
            with contextlib.suppress(DocsyncError):
                locks.close()
    report.good(what, "reachable; " + (f"run lock held by {holder}" if holder else "no run in progress"))

