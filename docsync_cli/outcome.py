"""The one home of docsync's exit codes: which code an error, a run's summary, or a command's result gets.

Pure (no I/O, no printing): ``cli.py`` prints the advice, records the code in the run history and exits with
what this module decides; ``docsync check`` and the tests' in-process runs ask it too.
"""

from __future__ import annotations

from docsync_cli.errors import (
    AuthError,
    ConfigError,
    DocsyncError,
    ForeignInstallation,
    LockHeld,
    NotFoundError,
    RateLimited,
    RunFatal,
    ServiceUnreachable,
    SetupError,
    UsageError,
)
from docsync_cli.model import Outcome, RunSummary

EXIT_OK = 0  # all done
EXIT_PARTIAL = 1  # some documents failed, --dry-run found work, or a signal stopped the run
EXIT_USAGE = 2  # usage, configuration or setup error (two installations on one CRM included)
EXIT_REMOTE = 3  # authentication, permission, a service unreachable or rate limited for longer (run aborted)
EXIT_LOCAL = 4  # local problem (disk, state directory or store, lock backend) or an unsafe plan refused
EXIT_LOCKED = 75  # another run holds the lock (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # Ctrl-C

EXIT_CODES_HELP = """Exit codes: 0 all done · 1 some documents failed (or --dry-run found work, or a signal
stopped the run) · 2 usage or configuration error (also: two installations on one CRM) · 3 authentication,
permission, a service unreachable or rate limited for longer than the run waits (run aborted) · 4 local problem
(disk, state directory or its database, lock backend) or an unsafe plan refused · 75 another run holds the lock."""


def error_code(exc: DocsyncError) -> int:
    """The exit code of a run or command that ended with ``exc``."""
    if isinstance(exc, ConfigError | UsageError | SetupError | ForeignInstallation):
        return EXIT_USAGE
    if isinstance(exc, LockHeld):
        return EXIT_LOCKED
    if isinstance(exc, AuthError | ServiceUnreachable | RateLimited):
        return EXIT_REMOTE
    if isinstance(exc, RunFatal):  # LocalEnvironmentError, UnsafePlan
        return EXIT_LOCAL
    if isinstance(exc, NotFoundError):
        # a 404 no caller expected: the URL does not lead to the service's API, a configuration error
        return EXIT_USAGE
    return EXIT_PARTIAL


def run_code(summary: RunSummary, *, dry_run: bool = False, ids_requested: bool = False) -> int:
    """The exit code of a finished ``sync``/``prune`` run: its fatal error's, else 1 when a document failed or
    a signal stopped the run; a dry run that found work exits 1; documents asked for by ``--id`` that another
    run holds right now exit 75."""
    if summary.fatal is not None:
        return error_code(summary.fatal)
    code = EXIT_OK
    if summary.stopped or any(r.outcome == Outcome.FAILED for r in summary.results):
        code = EXIT_PARTIAL
    if dry_run and summary.plan and (summary.plan.work or summary.plan.deletions):
        code = max(code, EXIT_PARTIAL)
    busy = [r for r in summary.results if r.outcome == Outcome.SKIPPED and r.busy_holder is not None]
    if ids_requested and busy and code == EXIT_OK:
        code = EXIT_LOCKED  # an admin asked for these documents; another run has them right now
    return code
