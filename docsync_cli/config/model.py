"""The typed settings: frozen pydantic models, each field's bounds and checks, and the secrets they hold.

A :class:`Settings` is complete and valid or it does not exist: :func:`docsync_cli.config.load_settings` builds it
from its sources (:mod:`docsync_cli.config.sources`) and translates validation errors into sentences
(:mod:`docsync_cli.config.messages`). Validator messages never contain a secret value.

Imports: the standard library, pydantic, ``model`` (the engine's value types), ``secrets`` (the one scrubber) and
``config.messages``.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from docsync_cli.config.messages import show as _show
from docsync_cli.model import EngineSettings, LinkRule
from docsync_cli.model import Field as DocumentField
from docsync_cli.secrets import mask_url, scrub, variants

if TYPE_CHECKING:
    from docsync_cli.preview.limits import PreviewLimits

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_DEFAULT_RULES = EngineSettings().links  # the engine's default link rules are the configured default


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, hide_input_in_errors=True)


# ---------------------------------------------------------------------------------------------- validators


def _check_identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{_show(value)} is not a valid attribute name (letters and digits only, starting with a letter)"
        )
    return value


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    # Never put the value into the message.
    if value is None:
        return None
    raw = value.get_secret_value()
    if not raw:
        raise ValueError("is empty")
    if any(ch.isspace() or not ch.isprintable() for ch in raw):
        raise ValueError("contains whitespace or control characters (check for a stray space or line break)")
    return value


def _check_http_url(value: str, *, api_suffix: str) -> str:
    url = value.strip()
    shown = _show(mask_url(url))
    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        raise ValueError(f"not an http(s) URL: {shown}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {shown}")
    if not port_ok:
        raise ValueError(f"bad port in URL: {shown}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not contain a user name or password; configure the keys separately")
    if parts.query or parts.fragment:
        raise ValueError(f"must not contain a query or fragment: {shown}")
    path = parts.path.rstrip("/")
    if api_suffix and path.lower().endswith(api_suffix):
        path = path[: -len(api_suffix)].rstrip("/")
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def url_password(url: str) -> str | None:
    """The (percent-decoded) password inside ``url``, if any."""
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return None
    return urllib.parse.unquote(password) if password else None


# ---------------------------------------------------------------------------------------------- models


class FieldNames(_Model):
    """EspoCRM ``Document`` attribute names docsync reads and writes (defaults = logical names)."""

    dateiStatus: str = DocumentField.DATEI_STATUS
    md5: str = DocumentField.MD5
    sha: str = DocumentField.SHA
    xaiFileId: str = DocumentField.XAI_FILE_ID
    xaiCollections: str = DocumentField.XAI_COLLECTIONS
    xaiSyncedHash: str = DocumentField.XAI_SYNCED_HASH
    xaiSyncStatus: str = DocumentField.XAI_SYNC_STATUS
    xaiSyncError: str = DocumentField.XAI_SYNC_ERROR
    preview: str = DocumentField.PREVIEW  # an image field; its id attribute is f"{preview}Id"

    @field_validator("*")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier(value)

    @model_validator(mode="after")
    def _distinct(self) -> FieldNames:
        used: dict[str, str] = {}
        clashes: list[str] = []
        names = [(logical, getattr(self, logical)) for logical in type(self).model_fields]
        names.append(("preview (id attribute)", f"{self.preview}Id"))
        for logical, attribute in names:
            if attribute in used:
                clashes.append(f"{_show(attribute)} is used for both {used[attribute]} and {logical}")
            else:
                used[attribute] = logical
        if clashes:
            raise ValueError("field names must be distinct: " + "; ".join(clashes))
        return self


class EspoSettings(_Model):
    url: str
    api_key: SecretStr
    secret_key: SecretStr | None = None
    fields: FieldNames = FieldNames()
    timeout_seconds: Annotated[float, Field(gt=0)] = 30.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, api_suffix="/api/v1")

    @field_validator("api_key", "secret_key")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)


class XaiSettings(_Model):
    api_url: str = "https://api.x.ai"
    management_url: str = "https://management-api.x.ai"
    api_key: SecretStr
    management_key: SecretStr
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    max_file_bytes: Annotated[int, Field(ge=1)] = 50_000_000  # xAI: "50 MB" (xAI contract §15)

    @field_validator("api_url", "management_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, api_suffix="/v1")

    @field_validator("api_key", "management_key")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)


class LinkRuleSetting(_Model):
    """One ``[[collections.links]]`` entry as configured: checked here, used as the engine's
    :class:`docsync_cli.model.LinkRule` (which says what a rule means) through :attr:`CollectionSettings.rules`."""

    link: str
    field: str

    @field_validator("link", "field")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier(value)


class CollectionSettings(_Model):
    static: list[str] = []
    links: list[LinkRuleSetting] = [LinkRuleSetting(link=rule.link, field=rule.field) for rule in _DEFAULT_RULES]

    @field_validator("static")
    @classmethod
    def _static(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if not item.strip() or any(ch.isspace() for ch in item.strip())]
        if bad:
            raise ValueError(f"collection ids must be non-empty and without spaces: {_show(bad)}")
        return list(dict.fromkeys(item.strip() for item in value))

    @field_validator("links")
    @classmethod
    def _links(cls, value: list[LinkRuleSetting]) -> list[LinkRuleSetting]:
        seen: set[tuple[str, str]] = set()
        for rule in value:
            if (rule.link, rule.field) in seen:
                raise ValueError(f"link rule {rule.link}:{rule.field} is listed twice")
            seen.add((rule.link, rule.field))
        return value

    @property
    def rules(self) -> tuple[LinkRule, ...]:
        """The configured link rules in the engine's form (the one conversion)."""
        return tuple(LinkRule(setting.link, setting.field) for setting in self.links)


class SyncSettings(_Model):
    concurrency: Annotated[int, Field(ge=1, le=32)] = 12
    processing_wait_seconds: Annotated[float, Field(ge=0)] = 60.0
    poll_interval_seconds: Annotated[float, Field(gt=0)] = 2.0
    max_delete: Annotated[int, Field(ge=0)] = 50
    max_delete_percent: Annotated[float, Field(ge=0, le=100)] = 50.0
    request_deadline_seconds: Annotated[float, Field(gt=0)] = 300.0
    max_attempts: Annotated[int, Field(ge=1)] = 5
    # Who owns the files docsync uploads; None = generated once into the state dir. Set the same value on every
    # host of one installation (they share one CRM); never on two installations (staging and production).
    installation_id: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{3,63}$")] = None
    change_feeds: bool = True  # plain runs ask what changed (false: list every document every run)
    listing_interval_seconds: Annotated[float, Field(ge=60)] = 3600.0  # how often a plain run lists everything
    # ... while the stream feed is partial (role, early end, relate-note de-duplication)
    partial_listing_interval_seconds: Annotated[float, Field(ge=60)] = 900.0


class PreviewSettings(_Model):
    enabled: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 20.0
    memory_mb: Annotated[int, Field(ge=64)] = 1024

    def limits(self) -> PreviewLimits:
        """The limits of one preview from these settings (the one place they are built; the rest are
        ``PreviewLimits``' own defaults). Imports the ``preview`` package only when called."""
        from docsync_cli.preview.limits import PreviewLimits

        return PreviewLimits(timeout_seconds=self.timeout_seconds, memory_bytes=self.memory_mb * 1024 * 1024)


class VerifySettings(_Model):
    """``docsync verify``: how many documents to probe, what counts as found, and when to exit 1."""

    sample: Annotated[int, Field(ge=1, le=1000)] = 20
    top: Annotated[int, Field(ge=1, le=20)] = 5
    min_found_percent: Annotated[float, Field(ge=0, le=100)] = 90.0


class LockSettings(_Model):
    backend: Literal["file", "redis"] = "file"
    url: str | None = Field(default=None, validate_default=True)
    ttl_seconds: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            value = value.strip()
            shown = _show(mask_url(value))
            try:
                parts = urllib.parse.urlsplit(value)
                ok = (parts.scheme == "unix" and bool(parts.path)) or (
                    parts.scheme in ("redis", "rediss") and bool(parts.hostname) and parts.port != 0
                )
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"not a redis://, rediss:// or unix:// URL: {shown}")
        elif info.data.get("backend") == "redis":
            raise ValueError(
                "required when lock.backend is 'redis'; set DOCSYNC_LOCK__URL or url in [lock]"
            )
        return value

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "url" and isinstance(value, str) else value)

    @property
    def password(self) -> str | None:
        """The password inside ``url``, if any (a secret: redacted like the API keys)."""
        return url_password(self.url) if self.url else None


class Settings(_Model):
    espocrm: EspoSettings
    xai: XaiSettings
    collections: CollectionSettings = CollectionSettings()
    sync: SyncSettings = SyncSettings()
    preview: PreviewSettings = PreviewSettings()
    verify: VerifySettings = VerifySettings()
    lock: LockSettings = LockSettings()
    state_dir: Path
    config_path: Path | None = None

    @field_validator("state_dir")
    @classmethod
    def _state_dir(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"must be an absolute path, got {_show(str(value))}")
        return value


# ---------------------------------------------------------------------------------------------- secrets


def secret_values(settings: Settings) -> list[str]:
    """Every secret in ``settings`` (the four keys and a Redis password), longest first, no duplicates."""
    candidates = [
        settings.espocrm.api_key,
        settings.espocrm.secret_key,
        settings.xai.api_key,
        settings.xai.management_key,
    ]
    values = [secret.get_secret_value() for secret in candidates if secret is not None]
    if settings.lock.password:
        values.append(settings.lock.password)
    return variants(values)


def redact(text: str, settings: Settings) -> str:
    """``text`` with every secret value of ``settings`` (and every echoed key) masked: ``secrets.scrub``."""
    return scrub(text, secret_values(settings))
