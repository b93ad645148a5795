"""The one error tree of docsync. Only ``cli.py`` turns these into advice; ``outcome.py`` maps them to exit codes.

::

    DocsyncError
    ├── ConfigError                 the configuration is wrong; ``problems`` lists every issue
    ├── UsageError                  the command line is wrong
    ├── LockHeld                    another run holds the lock
    ├── RunFatal                    stop the whole run, leave untouched documents alone
    │   ├── SetupError              the CRM's setup cannot take docsync's writes (a field, an option)
    │   ├── AuthError               a wrong key or missing permission (classified by meaning)
    │   ├── ServiceUnreachable      connection refused, DNS, repeated outage (circuit open)
    │   ├── LocalEnvironmentError   disk full, state dir unwritable, lock backend lost
    │   │   └── LocalStateError     the state store failed (disk full, read-only, corrupt database)
    │   ├── RateLimited             a service asked to wait longer than the run can (``Retry-After``)
    │   ├── ForeignInstallation     another installation's files sit beside this one's (a configuration error)
    │   └── UnsafePlan              the plan would delete too much: ``--force-delete`` overrides
    ├── DocumentError               (per document: mark "Fehler", go on)
    │   ├── PermanentDocumentError        cannot heal by itself (missing file, too large, rejected)
    │   └── TransientDocumentError        may heal on the next run (timeouts, 5xx after retries)
    ├── TransientHttpError          retried by the retry policy (5xx, 429, timeouts on idempotent calls)
    ├── AmbiguousWriteError         a write may or may not have happened: look it up before retrying
    ├── ConflictError               the CRM record changed under us (409 / re-read mismatch)
    ├── NotFoundError               404 from a service (callers decide whether that means "already done")
    └── PreviewError                a preview could not be made (never fails the sync)
"""

from __future__ import annotations


class DocsyncError(Exception):
    """Base of every error docsync raises on purpose. ``str(err)`` is safe to show (no secrets)."""


class ConfigError(DocsyncError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class UsageError(DocsyncError):
    pass


class LockHeld(DocsyncError):
    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(f"another docsync run holds the lock ({holder})")


class RunFatal(DocsyncError):
    pass


class SetupError(RunFatal):
    """The services' setup does not fit docsync (a missing field or option, a write EspoCRM's validation refuses):
    nothing a retry can fix and no document's fault. ``advice`` says what to change."""

    def __init__(self, message: str, advice: str = "", problems: list[str] | None = None) -> None:
        self.advice = advice
        self.problems = list(problems or [])
        super().__init__(message)


class AuthError(RunFatal):
    def __init__(self, service: str, status: int, detail: str = "") -> None:
        self.service = service
        self.status = status
        self.detail = detail
        what = "rejected the credentials" if status in (400, 401) else "refused permission"
        super().__init__(f"{service} {what} (HTTP {status}){': ' + detail if detail else ''}")


class ServiceUnreachable(RunFatal):
    """Nothing answered (or only a redirect). ``service`` names the service when one is known, so the advice can
    name its URL setting."""

    def __init__(self, message: str, service: str = "") -> None:
        self.service = service
        super().__init__(message)


class LocalEnvironmentError(RunFatal):
    pass


class LocalStateError(LocalEnvironmentError):
    """The local state store (``state.sqlite3``, the run history) failed: ``fault`` is one of
    :data:`STATE_FAULTS` (``disk_full``, ``read_only``, ``corrupt``, ``other``), ``directory`` the state directory,
    ``action`` what docsync was doing. No document's fault: the run stops, the documents in hand keep their status."""

    def __init__(self, directory: str, action: str, fault: str, detail: str) -> None:
        self.directory = directory
        self.action = action
        self.fault = fault
        self.detail = detail
        super().__init__(f"the local state in {directory} failed while it tried to {action}: {detail}")


STATE_FAULTS = ("disk_full", "read_only", "corrupt", "other")


class RateLimited(RunFatal):
    """A service answered 429 with a ``Retry-After`` longer than the run may wait: the run stops, no document is
    blamed. ``until`` is the UTC time (ISO 8601) from which the service accepts requests again."""

    def __init__(self, service: str, retry_after: float, until: str) -> None:
        self.service = service
        self.retry_after = retry_after
        self.until = until
        super().__init__(f"{service} rate limited until {until} (Retry-After: {retry_after:.0f} s)")


class ForeignInstallation(RunFatal):
    """Files of another docsync installation (another ``installation id`` in the ownership fields) sit in the
    collections for documents this one syncs: two installations on one CRM. ``documents`` are some of them."""

    def __init__(self, others: list[str], documents: list[str]) -> None:
        self.others = sorted(set(others))
        self.documents = list(documents)
        super().__init__(f"another docsync installation ({', '.join(self.others)}) syncs the same documents "
                         f"(e.g. {', '.join(self.documents[:3])}); docsync added no copies")


class UnsafePlan(RunFatal):
    pass


class DocumentError(DocsyncError):
    """A failure that concerns one document only. ``code`` is a short machine-readable reason."""

    transient = False

    def __init__(self, message: str, code: str = "error") -> None:
        self.code = code
        super().__init__(message)


class PermanentDocumentError(DocumentError):
    transient = False


class TransientDocumentError(DocumentError):
    transient = True


class HttpError(DocsyncError):
    """A classified HTTP failure from one of the services (secret-free message)."""

    def __init__(self, service: str, method: str, path: str, status: int | None, detail: str = "") -> None:
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.detail = detail
        where = f"{service} {method} {path}"
        code = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{where}: {code}{': ' + detail if detail else ''}")


class TransientHttpError(HttpError):
    def __init__(self, service: str, method: str, path: str, status: int | None, detail: str = "",
                 retry_after: float | None = None) -> None:
        super().__init__(service, method, path, status, detail)
        self.retry_after = retry_after


class AmbiguousWriteError(HttpError):
    pass


class NotFoundError(HttpError):
    pass


class ConflictError(HttpError):
    pass


class RejectedError(HttpError):
    """4xx other than 401/403/404/409/429: the request itself was refused (bad input)."""


class PreviewError(DocsyncError):
    def __init__(self, reason: str, code: str = "preview_failed") -> None:
        self.code = code
        super().__init__(reason)
