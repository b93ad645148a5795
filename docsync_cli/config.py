"""Typed settings: TOML file + environment + secret files + systemd credentials.

Everything is validated before any network call and every problem is reported at once, as one
:class:`~docsync_cli.errors.ConfigError` whose ``problems`` are human sentences naming the setting and
where its value came from, e.g. ``sync.concurrency (from /etc/docsync/config.toml): must be between 1
and 32``. pydantic is an implementation detail: its errors are translated here and never shown raw
(they would echo input values, which may be secrets).

Precedence, highest first: environment → TOML file → defaults. The four keys (``espocrm.api_key``,
``espocrm.secret_key``, ``xai.api_key``, ``xai.management_key``) are looked up as
``$NAME`` → ``$NAME_FILE`` → ``$CREDENTIALS_DIRECTORY/<credential>`` → TOML. A TOML file that holds a
secret must be private to the user running docsync (netrc-style check).

Environment: ``ESPOCRM_URL``, ``XAI_API_URL``, ``XAI_MANAGEMENT_URL``, ``DOCSYNC_STATE_DIR``,
``DOCSYNC_CONFIG``, the secret names above, and ``DOCSYNC_<SECTION>__<KEY>`` (case-insensitive) for every
other setting, e.g. ``DOCSYNC_SYNC__CONCURRENCY=8`` or ``DOCSYNC_ESPOCRM__FIELDS__MD5=cMd5``. An empty
environment value counts as unset, except for the two list settings where it means "empty list".
Other ``DOCSYNC_*`` names without ``__`` are left to other modules.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
import typing
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from docsync_cli.errors import ConfigError
from docsync_cli.secrets import register, scrub, variants

__all__ = [
    "CollectionSettings",
    "EspoSettings",
    "FieldNames",
    "LinkRule",
    "LockSettings",
    "PreviewSettings",
    "Settings",
    "SyncSettings",
    "XaiSettings",
    "default_config_path",
    "default_state_dir",
    "load_settings",
    "redact",
    "secret_values",
]

DEFAULT_CONFIG_PATH = Path("/etc/docsync/config.toml")
ROOT_STATE_DIR = Path("/var/lib/docsync")
REDACTED = "***"
_MAX_SECRET_FILE_BYTES = 64 * 1024
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9]*")

Loc = tuple[str | int, ...]


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


def _mask_userinfo(url: str) -> str:
    """``url`` with any password replaced by ``***``, for showing in messages and reprs."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostport}"))


def _check_http_url(value: str, *, api_suffix: str) -> str:
    url = value.strip()
    shown = _show(_mask_userinfo(url))
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


# ---------------------------------------------------------------------------------------------- models


class FieldNames(_Model):
    """EspoCRM ``Document`` attribute names docsync reads and writes (defaults = logical names)."""

    dateiStatus: str = "dateiStatus"
    md5: str = "md5"
    sha: str = "sha"
    xaiFileId: str = "xaiFileId"
    xaiCollections: str = "xaiCollections"
    xaiSyncedHash: str = "xaiSyncedHash"
    xaiSyncStatus: str = "xaiSyncStatus"
    xaiSyncError: str = "xaiSyncError"
    preview: str = "preview"  # an image field; its id attribute is f"{preview}Id"

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


class LinkRule(_Model):
    """Documents linked (through ``link``) to a record whose attribute ``field`` names a collection."""

    link: str
    field: str

    @field_validator("link", "field")
    @classmethod
    def _identifier(cls, value: str) -> str:
        return _check_identifier(value)


class CollectionSettings(_Model):
    static: list[str] = []
    links: list[LinkRule] = [LinkRule(link="accounts", field="xaiCollectionId")]

    @field_validator("static")
    @classmethod
    def _static(cls, value: list[str]) -> list[str]:
        bad = [item for item in value if not item.strip() or any(ch.isspace() for ch in item.strip())]
        if bad:
            raise ValueError(f"collection ids must be non-empty and without spaces: {_show(bad)}")
        return list(dict.fromkeys(item.strip() for item in value))

    @field_validator("links")
    @classmethod
    def _links(cls, value: list[LinkRule]) -> list[LinkRule]:
        seen: set[tuple[str, str]] = set()
        for rule in value:
            if (rule.link, rule.field) in seen:
                raise ValueError(f"link rule {rule.link}:{rule.field} is listed twice")
            seen.add((rule.link, rule.field))
        return value


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


class PreviewSettings(_Model):
    enabled: bool = True
    timeout_seconds: Annotated[float, Field(gt=0)] = 20.0
    memory_mb: Annotated[int, Field(ge=64)] = 1024


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
            shown = _show(_mask_userinfo(value))
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
            yield name, (_mask_userinfo(value) if name == "url" and isinstance(value, str) else value)

    @property
    def password(self) -> str | None:
        """The password inside ``url``, if any (a secret: redacted like the API keys)."""
        if not self.url:
            return None
        try:
            password = urllib.parse.urlsplit(self.url).password
        except ValueError:
            return None
        return urllib.parse.unquote(password) if password else None


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


# ---------------------------------------------------------------------------------------------- defaults


def default_config_path(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_CONFIG``, else ``/etc/docsync/config.toml``."""
    named = env.get("DOCSYNC_CONFIG")
    return Path(named) if named else DEFAULT_CONFIG_PATH


def default_state_dir(env: Mapping[str, str]) -> Path:
    """``$DOCSYNC_STATE_DIR``; else systemd's ``$STATE_DIRECTORY`` (``StateDirectory=``); else
    ``/var/lib/docsync`` for root and for the user owning it (the service user of a system install); else
    ``$XDG_STATE_HOME/docsync`` or ``~/.local/state/docsync``."""
    named = env.get("DOCSYNC_STATE_DIR")
    if named:
        return _expand_home(named, env)
    systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd and Path(systemd).is_absolute():
        return Path(systemd)
    if os.geteuid() == 0 or _owned_by_me(ROOT_STATE_DIR):
        return ROOT_STATE_DIR
    xdg = env.get("XDG_STATE_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore relative values
        return Path(xdg) / "docsync"
    return _home(env) / ".local" / "state" / "docsync"


def _owned_by_me(path: Path) -> bool:
    try:
        return path.stat().st_uid == os.geteuid()
    except OSError:
        return False


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME")
    return Path(home) if home else Path.home()


def _expand_home(value: str, env: Mapping[str, str]) -> Path:
    if value == "~" or value.startswith("~/"):
        return _home(env) / value[2:]
    return Path(value)


# ---------------------------------------------------------------------------------------------- redaction


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
    return _variants(values)


def redact(text: str, settings: Settings) -> str:
    """``text`` with every secret value of ``settings`` (and every echoed key) masked: ``secrets.scrub``."""
    return scrub(text, secret_values(settings))


def _variants(values: Iterable[str]) -> list[str]:
    return variants(values)


def _scrub(text: str, secrets: list[str]) -> str:
    return scrub(text, secrets)


# ---------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _SecretSpec:
    path: tuple[str, str]
    env: str
    credential: str

    @property
    def hint(self) -> str:
        return f"set {self.env}, {self.env}_FILE or the systemd credential {self.credential}"


_SECRETS = (
    _SecretSpec(("espocrm", "api_key"), "ESPOCRM_API_KEY", "espocrm-api-key"),
    _SecretSpec(("espocrm", "secret_key"), "ESPOCRM_SECRET_KEY", "espocrm-secret-key"),
    _SecretSpec(("xai", "api_key"), "XAI_API_KEY", "xai-api-key"),
    _SecretSpec(("xai", "management_key"), "XAI_MANAGEMENT_KEY", "xai-management-key"),
)
_SECRET_PATHS = {spec.path for spec in _SECRETS}
_NAMED_ENV: dict[Loc, str] = {
    ("espocrm", "url"): "ESPOCRM_URL",
    ("xai", "api_url"): "XAI_API_URL",
    ("xai", "management_url"): "XAI_MANAGEMENT_URL",
    ("state_dir",): "DOCSYNC_STATE_DIR",
    **{spec.path: spec.env for spec in _SECRETS},
}
_ENV_PREFIX = "DOCSYNC_"
_LOADER_ONLY = {"config_path"}  # set by the loader, never by the user


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model class of a field typed ``Model``, ``Model | None`` or ``list[Model]``."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _field_at(loc: Loc) -> FieldInfo | None:
    model: type[BaseModel] | None = Settings
    info: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None:
            return None
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _model_of(info.annotation)
    return info


def _render(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "...'"


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_text(info: FieldInfo | None) -> str | None:
    if info is None:
        return None
    low = high = None
    for item in info.metadata:
        if getattr(item, "ge", None) is not None:
            low = ("ge", item.ge)
        elif getattr(item, "gt", None) is not None:
            low = ("gt", item.gt)
        elif getattr(item, "le", None) is not None:
            high = ("le", item.le)
        elif getattr(item, "lt", None) is not None:
            high = ("lt", item.lt)
    if low and high and low[0] == "ge" and high[0] == "le":
        return f"must be between {_num(low[1])} and {_num(high[1])}"
    parts = []
    if low:
        parts.append(("at least " if low[0] == "ge" else "greater than ") + _num(low[1]))
    if high:
        parts.append(("at most " if high[0] == "le" else "less than ") + _num(high[1]))
    return "must be " + " and ".join(parts) if parts else None


class _Loader:
    def __init__(self, env: Mapping[str, str], config_path: Path, explicit: str | None, require: bool):
        self.env = env
        self.path = config_path
        self.explicit = explicit  # how the path was named, or None for the default path
        self.require = require
        self.data: dict[str, Any] = {}
        self.origins: dict[Loc, str] = {}
        self.problems: list[str] = []
        self.reported: set[Loc] = set()  # locations with a problem already (don't also say "missing")
        self.seen_secrets: list[str] = []  # every secret-ish string read, to scrub from messages
        self.file_used = False
        self.file_broken = False

    # -- the TOML file -------------------------------------------------------------------------------

    def read_file(self) -> None:
        path = self.path
        try:
            with open(path, "rb") as handle:
                info = os.fstat(handle.fileno())
                raw = handle.read()
        except FileNotFoundError:
            if self.explicit or self.require:
                how = f" (named by {self.explicit})" if self.explicit else ""
                self.problems.append(f"config file {path} does not exist{how}")
                self.file_broken = True
            return
        except IsADirectoryError:
            self.problems.append(f"config file {path} is a directory, not a file")
            self.file_broken = True
            return
        except OSError as exc:
            self.problems.append(f"cannot read config file {path}: {exc.strerror or exc}")
            self.file_broken = True
            return
        self.file_used = True
        try:
            document = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            self.problems.append(f"{path}: not UTF-8 text")
            self.file_broken = True
            return
        except tomllib.TOMLDecodeError as exc:
            self.problems.append(f"{path}: invalid TOML: {exc}")
            self.file_broken = True
            return
        for key in _LOADER_ONLY & document.keys():
            self.problems.append(f"unknown setting {key!r} in {path}")
            del document[key]
        self._collect_file_secrets(document)
        self._check_permissions(path, info, document)
        self.data = document
        self._record_origins(document, ())

    def _record_origins(self, node: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                self._record_origins(value, (*prefix, key))
            else:
                self.origins[(*prefix, key)] = f"from {self.path}"

    def _file_secret_paths(self, document: dict[str, Any]) -> list[str]:
        found = []
        for section, key in sorted(_SECRET_PATHS):
            table = document.get(section)
            if isinstance(table, dict) and key in table:
                found.append(f"{section}.{key}")
        lock = document.get("lock")
        if isinstance(lock, dict) and isinstance(lock.get("url"), str) and _url_password(lock["url"]):
            found.append("lock.url (password)")
        return found

    def _collect_file_secrets(self, document: dict[str, Any]) -> None:
        for section, key in _SECRET_PATHS:
            table = document.get(section)
            if isinstance(table, dict) and key in table:
                self.seen_secrets.extend(_strings(table[key]))  # even if mistyped, e.g. a list
        self.seen_secrets.extend(_url_passwords(document))

    def _check_permissions(self, path: Path, info: os.stat_result, document: dict[str, Any]) -> None:
        if not self._file_secret_paths(document):
            return
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            self.problems.append(
                f"{path.name} holds secrets but is readable by other users (mode {mode:04o}); "
                f"run: chmod 600 {path}"
            )
        uid = os.geteuid()
        if info.st_uid != uid:
            self.problems.append(
                f"{path.name} holds secrets but is owned by another user (uid {info.st_uid}, docsync runs as "
                f"uid {uid}); run: chown {uid} {path}, or move the keys out of the file "
                "(environment, *_FILE or systemd credentials)"
            )

    # -- the environment -----------------------------------------------------------------------------

    def read_env(self) -> None:
        for name in sorted(self.env):
            if name.startswith(_ENV_PREFIX) and "__" in name:
                self._read_structured(name, self.env[name])
        for path, name in _NAMED_ENV.items():
            if path in _SECRET_PATHS:
                continue
            value = self.env.get(name)
            if value:
                if path == ("state_dir",):
                    value = str(_expand_home(value, self.env))
                self._put(path, value, f"from {name}")

    def _read_structured(self, name: str, value: str) -> None:
        parts = name[len(_ENV_PREFIX):].split("__")
        model: type[BaseModel] | None = Settings
        path: list[str] = []
        for index, part in enumerate(parts):
            fields = {} if model is None else {f.lower(): f for f in model.model_fields}
            field = fields.get(part.lower())
            if field is None or field in _LOADER_ONLY:
                shown = ".".join([*path, part.lower()])
                hint = _suggest(part.lower(), fields)
                self.problems.append(f"unknown setting {shown!r} (from {name}){hint}")
                return
            path.append(field)
            assert model is not None
            info = model.model_fields[field]
            model = _model_of(info.annotation)
            last = index == len(parts) - 1
            if model is LinkRule and not last:
                self.problems.append(
                    f"{name} is not read; set DOCSYNC_COLLECTIONS__LINKS=link:field,... instead"
                )
                return
            if last and model is not None and model is not LinkRule:
                self.problems.append(
                    f"{'.'.join(path)} (from {name}) is a group of settings; "
                    f"set {name}__<NAME> for each setting instead"
                )
                return
        key = tuple(path)
        if key in _NAMED_ENV:
            self.problems.append(f"{name} is not read; set {_NAMED_ENV[key]} instead")
            return
        if key == ("collections", "static"):
            self._put(key, [item.strip() for item in value.split(",") if item.strip()], f"from {name}")
        elif key == ("collections", "links"):
            self._put(key, self._parse_links(name, value), f"from {name}")
        elif value:
            self._put(key, value, f"from {name}")

    def _parse_links(self, name: str, value: str) -> list[dict[str, str]]:
        links = []
        for item in (part.strip() for part in value.split(",")):
            if not item:
                continue
            link, sep, field = item.partition(":")
            if not sep or ":" in field:
                self.problems.append(
                    f"collections.links (from {name}): {item!r} is not of the form link:field "
                    "(e.g. accounts:xaiCollectionId)"
                )
                self.reported.add(("collections", "links"))
                continue
            links.append({"link": link.strip(), "field": field.strip()})
        return links

    # -- secrets -------------------------------------------------------------------------------------

    def read_secrets(self) -> None:
        credentials = self.env.get("CREDENTIALS_DIRECTORY")
        for spec in _SECRETS:
            value = self.env.get(spec.env)
            if value:
                self.seen_secrets.append(value)
                self._put(spec.path, value, f"from {spec.env}")
                continue
            file_name = self.env.get(f"{spec.env}_FILE")
            if file_name:
                origin = f"from {spec.env}_FILE"
                self._read_secret_file(spec, Path(file_name), origin, must_exist=True)
                continue
            if credentials:
                origin = f"from systemd credential {spec.credential}"
                self._read_secret_file(spec, Path(credentials) / spec.credential, origin, must_exist=False)

    def _read_secret_file(self, spec: _SecretSpec, path: Path, origin: str, *, must_exist: bool) -> None:
        where = f"{_render(spec.path)} ({origin})"
        try:
            with open(path, "rb") as handle:
                mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
                if must_exist and mode & 0o007:
                    # Like a TOML file holding keys: a key file every user can read is refused. Group access is
                    # fine (the documented root:docsync 0640 setup); systemd credentials are private anyway.
                    self._secret_problem(spec, f"{where}: {path} holds a key but is readable by other users "
                                               f"(mode {mode:04o}); run: chmod o-rwx {path} (or chmod 600)")
                    return
                raw = handle.read(_MAX_SECRET_FILE_BYTES + 1)
        except FileNotFoundError:
            if must_exist:
                self._secret_problem(spec, f"{where}: file {path} does not exist")
            return
        except OSError as exc:
            self._secret_problem(spec, f"{where}: cannot read {path}: {exc.strerror or type(exc).__name__}")
            return
        if len(raw) > _MAX_SECRET_FILE_BYTES:
            self._secret_problem(spec, f"{where}: {path} is too large to hold a key")
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._secret_problem(spec, f"{where}: {path} is not UTF-8 text")
            return
        value = text.rstrip("\r\n")
        self.seen_secrets.append(value)
        if not value:
            self._secret_problem(spec, f"{where}: {path} is empty")
            return
        self._put(spec.path, value, f"{origin} ({path})")

    def _secret_problem(self, spec: _SecretSpec, text: str) -> None:
        self.problems.append(text)
        self.reported.add(spec.path)

    # -- validation ----------------------------------------------------------------------------------

    def _put(self, path: Loc, value: Any, origin: str) -> None:
        if isinstance(value, str) and _url_password(value):
            self.seen_secrets.append(str(_url_password(value)))
        node = self.data
        for part in path[:-1]:
            child = node.setdefault(str(part), {})
            if not isinstance(child, dict):
                return  # the file has a non-table here; pydantic reports that
            node = child
        node[str(path[-1])] = value
        self.origins[path] = origin

    def source(self, loc: Loc) -> str | None:
        if loc in self.origins:
            return self.origins[loc]
        below = {origin.removeprefix("from ") for path, origin in self.origins.items() if path[: len(loc)] == loc}
        if below:
            return "from " + " and ".join(sorted(below))
        for cut in range(len(loc) - 1, 0, -1):
            if loc[:cut] in self.origins:
                return self.origins[loc[:cut]]
        return None

    def validate(self) -> Settings | None:
        data = dict(self.data)
        for section in ("espocrm", "xai"):
            data.setdefault(section, {})  # so each missing key is reported, not the whole section
        if "state_dir" in data and isinstance(data["state_dir"], str):
            data["state_dir"] = str(_expand_home(data["state_dir"], self.env))
        data.setdefault("state_dir", str(default_state_dir(self.env)))
        data["config_path"] = str(self.path) if self.file_used else None
        errors: list[Any] = []
        settings: Settings | None = None
        try:
            settings = Settings.model_validate(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        for error in errors:
            text = self._translate(error)
            if text is not None:
                self.problems.append(text)
        return settings

    def _translate(self, error: Mapping[str, Any]) -> str | None:
        loc: Loc = tuple(error["loc"])
        kind: str = error["type"]
        if loc in self.reported:
            return None
        name = _render(loc)
        source = self.source(loc)
        if kind == "extra_forbidden":
            parent = _field_at(loc[:-1]) if len(loc) > 1 else None
            model = _model_of(parent.annotation) if parent else Settings
            hint = _suggest(str(loc[-1]), {f: f for f in model.model_fields} if model else {})
            where = source[len("from "):] if source and source.startswith("from ") else str(self.path)
            return f"unknown setting {name!r} in {where}{hint}"
        if kind == "missing":
            if self.file_broken:
                return None  # the unreadable file may well hold it; don't add noise
            return f"{name}: missing{self._missing_hint(loc)}"
        prefix = f"{name} ({source})" if source else name
        return f"{prefix}: {self._message(loc, kind, error)}"

    def _missing_hint(self, loc: Loc) -> str:
        for spec in _SECRETS:
            if spec.path == loc:
                return f"; {spec.hint}"
        if loc in _NAMED_ENV and len(loc) == 2:
            return f"; set {_NAMED_ENV[loc]} or {loc[1]} in [{loc[0]}] of {self.path}"
        return ""

    def _message(self, loc: Loc, kind: str, error: Mapping[str, Any]) -> str:
        secret = tuple(loc[:2]) in _SECRET_PATHS
        value = "" if secret else f", got {_show(error.get('input'))}"
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
            return _range_text(_field_at(loc)) or str(error["msg"]).lower()
        if kind in ("int_parsing", "int_type", "int_from_float"):
            return f"must be a whole number{value}"
        if kind in ("float_parsing", "float_type"):
            return f"must be a number{value}"
        if kind == "finite_number":
            return "must be a finite number"
        if kind in ("bool_parsing", "bool_type"):
            return f"must be true or false{value}"
        if kind == "string_type":
            return f"must be text (a quoted string){value}"
        if kind == "literal_error":
            return f"must be {error.get('ctx', {}).get('expected', 'one of the allowed values')}{value}"
        if kind == "list_type":
            return f"must be a list{value}"
        if kind in ("model_type", "model_attributes_type", "dict_type"):
            return f"must be a table (a [section] in TOML){value}"
        if kind in ("path_type", "path_parsing"):
            return f"must be a file system path{value}"
        if kind == "value_error":
            return str(error["msg"]).removeprefix("Value error, ")
        return str(error["msg"])


def _url_password(url: str) -> str | None:
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        return None
    return urllib.parse.unquote(password) if password else None


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict | list):
        for value in node.values() if isinstance(node, dict) else node:
            yield from _strings(value)


def _url_passwords(node: Any) -> Iterator[str]:
    """Passwords inside any URL-looking string of a TOML document (to keep them out of messages)."""
    for text in _strings(node):
        password = _url_password(text) if "@" in text else None
        if password:
            yield password


def _suggest(word: str, choices: Mapping[str, str]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f"; did you mean {choices[match[0]]!r}?" if match else ""


def _iter_problems(loader: _Loader) -> Iterator[str]:
    secrets = _variants(loader.seen_secrets)
    for problem in loader.problems:
        yield _scrub(problem, secrets)


def load_settings(
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_file: bool = False,
) -> Settings:
    """Read and validate every setting; raise :class:`ConfigError` listing all problems.

    ``config_path`` None means ``default_config_path(env)``. A missing file at the default path is fine
    (env-only configuration) unless ``require_file``; a missing file that was named explicitly (argument or
    ``$DOCSYNC_CONFIG``) is a problem. ``env`` defaults to ``os.environ``.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    explicit: str | None
    if config_path is not None:
        path, explicit = Path(config_path), "--config"
    else:
        path = default_config_path(environ)
        explicit = "DOCSYNC_CONFIG" if environ.get("DOCSYNC_CONFIG") else None
    loader = _Loader(environ, path, explicit, require_file)
    loader.read_file()
    loader.read_env()
    loader.read_secrets()
    settings = loader.validate()
    problems = list(_iter_problems(loader))
    if problems or settings is None:
        raise ConfigError(problems or ["configuration is invalid"])
    register(secret_values(settings))  # from now on every scrub() in this process masks them
    return settings
