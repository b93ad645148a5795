"""``docsync check``: is this installation ready to sync? Every check writes one ✓/✗ line, and its fix.

Only read requests go to the services: ``GET App/user`` and ``GET Metadata`` (EspoCRM), ``GET /v1/files?limit=1``
(xAI Files), ``GET /v1/collections/{id}`` or ``GET /v1/collections?limit=1`` (xAI Management). The preview tools
are looked up, not started (no LibreOffice launch). Collections named by linked records (one per client) are not
checked: there may be thousands; ``docsync explain --id`` shows them for one document.

Nothing written contains a secret: every line goes through :func:`~..config.redact` once the settings are known,
and configuration problems are already secret-free.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from docsync_cli.config import Settings, redact
from docsync_cli.errors import ConfigError, DocsyncError, LocalEnvironmentError, LocalStateError
from docsync_cli.outcome import EXIT_OK, EXIT_REMOTE, EXIT_USAGE
from docsync_cli.reports.check_services import (
    check_change_feeds,
    check_document_fields,
    check_espocrm,
    check_link_fields,
    check_xai_files,
    check_xai_management,
)
from docsync_cli.reports.shared import Lines, report_services
from docsync_cli.state.guard import state_fix
from docsync_cli.users import group_name, user_name

if TYPE_CHECKING:  # imported where used (the preview package loads Pillow and PDFium, which may be broken)
    from docsync_cli.preview import ToolStatus
    from docsync_cli.state.directory import StateDirProblem

OK, FAIL, WARN, SKIP = "✓", "✗", "!", "–"


class CheckReport:
    """Writes check lines to ``out`` and remembers whether any failed."""

    def __init__(self, out: Lines) -> None:
        self.out = out
        self.ok = True
        self.unreachable = False  # a service that could not be reached or refused the key: exit 3, like sync
        self.settings: Settings | None = None

    def _print(self, text: str, style: str | None = None) -> None:
        if self.settings is not None:
            text = redact(text, self.settings)
        self.out.line(text, style)

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


def run_checks(load_settings: Callable[[], Settings], out: Lines) -> int:
    """Run every check, print one ✓/✗ line each (with the fix for each ✗), and return the exit code: 0 when all
    passed, 3 when a service was unreachable or refused a key (as ``sync`` would exit), else 2.

    Order: configuration (including the config file's permissions) → EspoCRM (key, API user's rights, Document
    fields, link fields) → xAI Files key → xAI Management key and each ``collections.static`` collection →
    preview tools → state directory → lock backend. A configuration that does not load stops the service
    checks (they need it); the preview tools are still checked. Never raises for a failed check.

    ``load_settings`` is the command's own loader (``cli.Context.settings``, which also installs the log
    redaction, as for every other command).
    """
    report = CheckReport(out)
    try:
        settings = load_settings()
    except ConfigError as exc:
        report.bad("configuration", f"{len(exc.problems)} problem(s)",
                   "correct the settings named above (see `docsync --help` and the README's Configure "
                   "section); then run `docsync check` again", exc.problems)
        _check_preview_tools(report, None)
        return EXIT_USAGE
    report.settings = settings
    where = f"from {settings.config_path}" if settings.config_path else "from the environment (no config file)"
    report.good("configuration", f"loaded {where}")

    try:
        with report_services(settings) as services:
            if check_espocrm(report, settings, services):
                check_document_fields(report, settings, services)
                check_link_fields(report, settings, services)
                check_change_feeds(report, services, settings)
            check_xai_files(report, services)
            check_xai_management(report, settings, services)
    except LocalEnvironmentError as exc:  # e.g. TLS CA certificates this user may not read: the message says what
        report.bad("services", str(exc), "fix this host as the line says, then run `docsync check` again")
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



# ---------------------------------------------------------------------------------------------- local


def _check_preview_tools(report: CheckReport, settings: Settings | None) -> None:
    if settings is not None and not settings.preview.enabled:
        report.skip("preview tools", "previews are off (preview.enabled = false)")
        return
    try:
        from docsync_cli.preview import PreviewService

        with PreviewService(workers=1) as service:
            status = service.tools_status()
    except Exception as exc:  # noqa: BLE001 - a broken install shows as any import or library error
        report.bad("preview tools", f"cannot load the preview libraries ({type(exc).__name__}: {exc})",
                   "reinstall docsync with its dependencies (Pillow, pypdfium2), or set preview.enabled = false")
        return
    missing, working, fonts = judge_preview_tools(status)
    if missing:
        report.bad("preview tools", missing, "install what is named above (office previews need LibreOffice and "
                   "python3-uno), or set preview.enabled = false")
    else:
        report.good("preview tools", working)
    if fonts is not None:
        report.warn("preview fonts", fonts)


def judge_preview_tools(status: Sequence[ToolStatus]) -> tuple[str, str, str | None]:
    """(what is missing, "" when nothing; the working tools with their versions; the fonts problem or None) from
    ``PreviewService.tools_status()``, decided by each tool's ``available`` and ``required``: a missing tool
    that is not required (the fonts) only warns."""
    missing = "; ".join(f"{tool.name}: {tool.detail}" for tool in status if tool.required and not tool.available)
    working = ", ".join(f"{tool.name} {tool.detail}".strip() for tool in status if tool.available)
    fallbacks = "; ".join(tool.detail for tool in status if not tool.required and not tool.available)
    return missing, working, fallbacks or None


def _check_state_dir(report: CheckReport, settings: Settings) -> bool:
    """True when the state directory is usable (exists and writable, or can be created)."""
    from docsync_cli.state.directory import state_dir_problem

    state_dir = settings.state_dir
    what = f"state directory {state_dir}"
    problem = state_dir_problem(state_dir)
    if problem is not None:
        report.bad(what, *state_dir_line(problem))
        return False
    if not state_dir.exists():
        report.good(what, "does not exist yet; the first run creates it")
        return True
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".docsync-check-"):
            pass
    except OSError as exc:
        report.bad(what, f"not writable ({exc.strerror or exc})",
                   f"as root: chown -R {user_name(os.geteuid())}:{group_name(os.getegid())} {state_dir} && chmod 0700 "
                   f"{state_dir}")
        return False
    owner = state_dir.stat().st_uid
    if owner != os.geteuid():
        report.warn(what, f"writable, but owned by {user_name(owner)}: files this run creates would be "
                    f"{user_name(os.geteuid())}'s and could lock the owner out",
                    f"run docsync as {user_name(owner)} (e.g. runuser -u {user_name(owner)} -- docsync check)")
        return True
    report.good(what, "writable")
    from docsync_cli.state import peek_installation_id

    ident = peek_installation_id(state_dir, settings.sync.installation_id)
    report.good("installation id", ident or "not made yet; the first sync stores one in the state directory")
    _check_hidden(report, settings)
    return True


def hidden_fix(count: int) -> tuple[str, str]:
    """The check line of documents hidden from the API user (``GET`` 403), and the role setting that fixes it."""
    return (f"{count} document(s) exist in EspoCRM but the API user may not read them (403 No 'read' access.): "
            "docsync keeps their files in xAI but cannot sync them (`docsync status` lists them)",
            "Administration > Roles > the API user's role: set Document read (and edit) to 'all', or add the API "
            "user to the documents' teams; the next listing pass takes them up again")


def _check_hidden(report: CheckReport, settings: Settings) -> None:
    from docsync_cli.state import ReadOnlyState

    state = ReadOnlyState(settings.state_dir)
    try:
        hidden = state.hidden() if state.exists() else {}
    except LocalStateError as exc:  # e.g. a damaged state.sqlite3: a failed line, as `sync` would stop (exit 4)
        report.bad("state file", str(exc), state_fix(exc))
        return
    if hidden:
        report.warn("documents hidden from docsync", *hidden_fix(len(hidden)))


def _check_libreoffice_shared_cache(report: CheckReport) -> None:
    """A shared LibreOffice extension cache the current user cannot read (left by a root LibreOffice started
    under a private umask, e.g. by an older docsync) breaks every other LibreOffice of this user."""
    from docsync_cli.preview.office import unreadable_shared_cache

    bad = unreadable_shared_cache()
    if bad is not None:
        report.warn("LibreOffice shared extension cache", f"{bad} is not readable for "
                    f"{user_name(os.geteuid())}; docsync's own previews do not use it, but every "
                    "other LibreOffice of this user aborts at start",
                    "as root: chmod -R a+rX /var/spool/libreoffice")


def state_dir_line(problem: StateDirProblem) -> tuple[str, str]:
    """(the detail, the fix) of the state directory's check line: the line already names the directory."""
    detail = problem.problem if problem.entry is None else f"{problem.subject} {problem.problem}"
    return detail, f"as root: {problem.fix}" if problem.fix is not None else "see above"


def _check_lock(report: CheckReport, settings: Settings) -> None:
    from docsync_cli.locks import make_locks
    from docsync_cli.state.directory import state_dir_problem

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

