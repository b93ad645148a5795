"""``docsync check``'s service checks: EspoCRM (key, the API user's rights, Document fields, link fields, change
feeds), the xAI Files key, the xAI Management key with each ``collections.static`` collection. Read requests only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docsync_cli.config import Settings
from docsync_cli.crm.answers import FieldDefinition
from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.fields import ACCOUNT, check_fields
from docsync_cli.crm.role import stream_gaps
from docsync_cli.crm.schema import ApiUser
from docsync_cli.errors import AuthError, DocsyncError, NotFoundError, ServiceUnreachable
from docsync_cli.sync.services import Services

if TYPE_CHECKING:
    from docsync_cli.reports.check import CheckReport


# ---------------------------------------------------------------------------------------------- EspoCRM


def check_espocrm(report: CheckReport, settings: Settings, services: Services) -> bool:
    what = f"EspoCRM at {settings.espocrm.url}"
    try:
        user = services.espo.app_user()
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
    report.good(what, f"reachable, key accepted (API user {user.label})")
    _check_acl(report, user)
    return True


ACL_NEEDS = (("Document", "read"), ("Document", "edit"), ("Attachment", "create"))


def acl_missing(user: ApiUser) -> list[str] | None:
    """The rights of :data:`ACL_NEEDS` that the API user's ACL table denies (e.g. ``Document edit``); None when
    ``App/user`` carried no table to judge (then nothing is said)."""
    if not user.acl_known:
        return None
    return [f"{scope} {action}" for scope, action in ACL_NEEDS if user.denies(scope, action)]


def _check_acl(report: CheckReport, user: ApiUser) -> None:
    """Best effort: the API user's role must let it read and edit Documents and create Attachments."""
    missing = acl_missing(user)
    if missing is None:
        return
    if missing:
        report.bad("EspoCRM API user rights", "the role does not allow " + ", ".join(missing),
                   "Administration > Roles: give the API user's role Document read+edit (all) and Attachment "
                   "create")
    else:
        report.good("EspoCRM API user rights", "Document read/edit and Attachment create allowed")
    if user.denies_field("Document", "file", "edit"):
        report.warn("EspoCRM API user rights", "the role may not edit the Document field 'file': EspoCRM then "
                    "silently drops the fileId docsync sends with each write-back, so a file replaced during a sync "
                    "is noticed only after the write (the document is taken up again by the next run)",
                    "Administration > Roles > the API user's role > Field Level: Document file edit")
    level = user.limit("Document", "read")
    if level is not None:
        report.warn("EspoCRM API user rights", f"the role reads only '{level}' Documents: docsync never sees, "
                    "and never syncs, the others",
                    "Administration > Roles: set Document read to 'all' unless that is what you want")


def check_document_fields(report: CheckReport, settings: Settings, services: Services) -> None:
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


def check_link_fields(report: CheckReport, settings: Settings, services: Services) -> None:
    for rule in settings.collections.links:
        what = f"link {rule.link}:{rule.field}"
        try:
            entity = services.espo.link_entity(rule.link)
            if entity is None:
                report.bad(what, f"Document has no link {rule.link!r}",
                           "correct collections.links (DOCSYNC_COLLECTIONS__LINKS=link:field,...) to name a link "
                           "of Document, e.g. accounts:xaiCollectionId")
                continue
            fields = services.espo.entity_fields(entity)
        except DocsyncError as exc:
            report.warn(what, f"cannot read the metadata ({exc}); not checked")
            continue
        definition = fields.get(rule.field)
        prefixed = "c" + rule.field[:1].upper() + rule.field[1:]
        if definition is None and prefixed in fields:
            report.bad(what, f"{entity} has no field {rule.field!r}, but has {prefixed!r} (the Entity Manager "
                       "prefixes custom fields with 'c')",
                       f"set collections.links to {rule.link}:{prefixed} "
                       f"(DOCSYNC_COLLECTIONS__LINKS={rule.link}:{prefixed})")
            continue
        if definition is None:
            report.bad(what, f"{entity} has no field {rule.field!r}",
                       f"add a varchar field {rule.field} to {entity} (Administration > Entity Manager > {entity} > "
                       f"Fields) holding the xAI collection id (the Entity Manager names it {prefixed}: then set "
                       f"collections.links to {rule.link}:{prefixed}), or correct collections.links")
            continue
        problems = link_field_problems(entity, rule.field, definition)
        user = services.espo.api_user
        level = user.limit(entity, "read") if user is not None else None
        if level is not None:
            report.bad(what, f"the API user's role has {entity} read '{level}': EspoCRM hides the other "
                       f"{entity} records and their links from it, so their documents would leave those "
                       "collections",
                       f"Administration > Roles: set {entity} read to 'all' for the API user's role")
        elif problems:
            report.bad(what, "; ".join(problems), "correct the field or collections.links")
        else:
            report.good(what, f"{entity}.{rule.field} exists")


def link_field_problems(entity: str, field: str, definition: FieldDefinition) -> list[str]:
    """What is wrong with the field a ``collections.links`` rule reads the collection id from: on Account the
    design document's definition (``crm.fields.check_fields``), elsewhere any text-like type."""
    if entity == ACCOUNT:
        return check_fields({field: definition.definition}, {"xaiCollectionId": field}, ACCOUNT)
    if definition.type not in ("varchar", "text", "enum", "url"):
        return [f"{entity} field {field} has type {definition.type!r}; a collection id needs a text field "
                "(varchar)"]
    return []


def check_change_feeds(report: CheckReport, services: Services, settings: Settings | None = None) -> None:
    """Which change feeds plain runs can use (contract §10.6, §10.7, §11.2); neither is required."""
    espo = services.espo
    try:
        espo.stream_page(None, (), ())
        gaps = stream_gaps(espo.api_user, _linked_entities(espo, settings))
        for gap in gaps:
            report.warn("Stream notes (GlobalStream)", f"partial: {gap.what}; those link changes wait for the "
                        "listing pass (sync.partial_listing_interval_seconds)", gap.fix)
        if not gaps:
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
        override = espo.accounts_override()
    except DocsyncError as exc:
        report.warn("accountsIds override", f"cannot read the metadata ({exc}); not checked")
        return
    if override:
        report.good("accountsIds override", "active (noLoad: false): listing passes read links from the listing")
    else:
        report.warn("accountsIds override", "not set: each listing pass lists the documents of every account "
                    "with a collection (one or more requests per account)",
                    "optional: add the accounts override shown by `docsync espocrm-fields`, then Rebuild")


def _linked_entities(espo: EspoClient, settings: Settings | None) -> list[str]:
    """The entities the configured link rules lead to (the parents of the stream's Relate notes)."""
    entities = set()
    for rule in settings.collections.rules if settings is not None else ():
        try:
            entities.add(espo.link_entity(rule.link) or rule.link[:1].upper() + rule.link[1:].removesuffix("s"))
        except DocsyncError:
            continue
    return sorted(entities) or ["Account"]


# ---------------------------------------------------------------------------------------------- xAI


def check_xai_files(report: CheckReport, services: Services) -> None:
    what = "xAI Files API key"
    try:
        services.xai.probe_files()
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


def check_xai_management(report: CheckReport, settings: Settings, services: Services) -> None:
    what = "xAI Management API key"
    static = settings.collections.static
    try:
        if not static:
            listing = services.xai.collections(limit=1)
            report.good(what, "accepted (no collections.static to check)")
            if listing:
                _check_document_permissions(report, services, listing[0].id)
            report.skip("collections of linked records", "one per client; `docsync explain --id` shows them")
            return
        missing: list[str] = []
        for collection_id in static:
            try:
                collection = services.xai.get_collection(collection_id)
            except NotFoundError:
                missing.append(collection_id)
                continue
            name = collection.name
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


def _check_document_permissions(report: CheckReport, services: Services, collection_id: str) -> None:
    """The management key's read permissions docsync uses (list and batch-get documents, xAI contract §15).
    Add, remove and update collection cannot be tested without writing; a key without them fails at the first
    document with exit 3."""
    what = f"management key permissions on {collection_id}"
    denied: list[str] = []
    for name, probe in (
        ("list documents", lambda: services.xai.probe_documents(collection_id)),
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


