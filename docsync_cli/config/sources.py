"""Where settings come from: TOML file + environment + secret files + systemd credentials, with provenance.

:func:`load_settings` reads every source, remembers where each value came from (for the sentences of
:mod:`docsync_cli.config.messages`) and validates once (:mod:`docsync_cli.config.model`), before any network call.

Precedence, highest first: environment → TOML file → defaults. The four keys (``espocrm.api_key``,
``espocrm.secret_key``, ``xai.api_key``, ``xai.management_key``) are looked up as
``$NAME`` → ``$NAME_FILE`` → ``$CREDENTIALS_DIRECTORY/<credential>`` → TOML. A TOML file that holds a
secret must be private to the user running docsync (netrc-style check).

Environment: ``ESPOCRM_URL``, ``XAI_API_URL``, ``XAI_MANAGEMENT_URL``, ``DOCSYNC_STATE_DIR``,
``DOCSYNC_CONFIG``, the secret names above, and ``DOCSYNC_<SECTION>__<KEY>`` (case-insensitive) for every
other setting, e.g. ``DOCSYNC_SYNC__CONCURRENCY=8`` or ``DOCSYNC_ESPOCRM__FIELDS__MD5=cMd5``. An empty
environment value counts as unset, except for the two list settings where it means "empty list".
Other ``DOCSYNC_*`` names without ``__`` are left to other modules.

Every string read that may be a secret is remembered, and every problem passes the one scrubber
(``secrets.scrub``) with them before it is reported. Imports: the standard library, pydantic (its
``ValidationError``), ``errors``, ``secrets`` and the other ``config`` modules.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from docsync_cli.config.messages import Loc, model_of, render, sentence, suggest
from docsync_cli.config.model import LinkRuleSetting, Settings, secret_values, url_password
from docsync_cli.config.paths import default_config_path, default_state_dir, expand_home
from docsync_cli.config.secret_files import (
    SECRETS,
    SecretSpec,
    config_file_problems,
    read_secret_file,
    unreadable,
)
from docsync_cli.errors import ConfigError
from docsync_cli.secrets import register, scrub, variants

# ---------------------------------------------------------------------------------------------- sources


_SECRET_PATHS = {spec.path for spec in SECRETS}
_NAMED_ENV: dict[Loc, str] = {
    ("espocrm", "url"): "ESPOCRM_URL",
    ("xai", "api_url"): "XAI_API_URL",
    ("xai", "management_url"): "XAI_MANAGEMENT_URL",
    ("state_dir",): "DOCSYNC_STATE_DIR",
    **{spec.path: spec.env for spec in SECRETS},
}
_ENV_PREFIX = "DOCSYNC_"
_LOADER_ONLY = {"config_path"}  # set by the loader, never by the user


class _Loader:
    def __init__(self, env: Mapping[str, str], config_path: Path, explicit: str | None, require: bool):
        self.env = env
        self.path = config_path
        self.explicit = explicit  # how the path was named, or None for the default path
        self.require = require
        self.data: dict[str, Any] = {}
        self.origins: dict[Loc, str] = {}  # where each value came from: a file, a variable, a credential
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
        except PermissionError:
            self.problems.append(unreadable(path))
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
                self.origins[(*prefix, key)] = str(self.path)

    def _file_secret_paths(self, document: dict[str, Any]) -> list[str]:
        found = []
        for section, key in sorted(_SECRET_PATHS):
            table = document.get(section)
            if isinstance(table, dict) and key in table:
                found.append(f"{section}.{key}")
        lock = document.get("lock")
        if isinstance(lock, dict) and isinstance(lock.get("url"), str) and url_password(lock["url"]):
            found.append("lock.url (password)")
        return found

    def _collect_file_secrets(self, document: dict[str, Any]) -> None:
        for section, key in _SECRET_PATHS:
            table = document.get(section)
            if isinstance(table, dict) and key in table:
                self.seen_secrets.extend(_strings(table[key]))  # even if mistyped, e.g. a list
        self.seen_secrets.extend(_url_passwords(document))

    def _check_permissions(self, path: Path, info: os.stat_result, document: dict[str, Any]) -> None:
        if self._file_secret_paths(document):
            self.problems.extend(config_file_problems(path, info))

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
                    value = str(expand_home(value, self.env))
                self._put(path, value, name)

    def _read_structured(self, name: str, value: str) -> None:
        parts = name[len(_ENV_PREFIX):].split("__")
        model: type[BaseModel] | None = Settings
        path: list[str] = []
        for index, part in enumerate(parts):
            fields = {} if model is None else {f.lower(): f for f in model.model_fields}
            field = fields.get(part.lower())
            if field is None or field in _LOADER_ONLY:
                shown = ".".join([*path, part.lower()])
                hint = suggest(part.lower(), fields)
                self.problems.append(f"unknown setting {shown!r} (from {name}){hint}")
                return
            path.append(field)
            assert model is not None
            info = model.model_fields[field]
            model = model_of(info.annotation)
            last = index == len(parts) - 1
            if model is LinkRuleSetting and not last:
                self.problems.append(
                    f"{name} is not read; set DOCSYNC_COLLECTIONS__LINKS=link:field,... instead"
                )
                return
            if last and model is not None and model is not LinkRuleSetting:
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
            self._put(key, [item.strip() for item in value.split(",") if item.strip()], name)
        elif key == ("collections", "links"):
            self._put(key, self._parse_links(name, value), name)
        elif value:
            self._put(key, value, name)

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
        for spec in SECRETS:
            value = self.env.get(spec.env)
            if value:
                self.seen_secrets.append(value)
                self._put(spec.path, value, spec.env)
                continue
            file_name = self.env.get(f"{spec.env}_FILE")
            if file_name:
                origin = f"{spec.env}_FILE"
                self._read_secret_file(spec, Path(file_name), origin, must_exist=True)
                continue
            if credentials:
                origin = f"systemd credential {spec.credential}"
                self._read_secret_file(spec, Path(credentials) / spec.credential, origin, must_exist=False)

    def _read_secret_file(self, spec: SecretSpec, path: Path, origin: str, *, must_exist: bool) -> None:
        value, problem = read_secret_file(path, f"{render(spec.path)} (from {origin})", must_exist=must_exist)
        if value is not None:
            self.seen_secrets.append(value)
        if problem is not None:
            self._secret_problem(spec, problem)
        elif value is not None:
            self._put(spec.path, value, f"{origin} ({path})")

    def _secret_problem(self, spec: SecretSpec, text: str) -> None:
        self.problems.append(text)
        self.reported.add(spec.path)

    # -- validation ----------------------------------------------------------------------------------

    def _put(self, path: Loc, value: Any, origin: str) -> None:
        if isinstance(value, str) and url_password(value):
            self.seen_secrets.append(str(url_password(value)))
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
        below = {origin for path, origin in self.origins.items() if path[: len(loc)] == loc}
        if below:
            return " and ".join(sorted(below))
        for cut in range(len(loc) - 1, 0, -1):
            if loc[:cut] in self.origins:
                return self.origins[loc[:cut]]
        return None

    def validate(self) -> Settings | None:
        data = dict(self.data)
        for section in ("espocrm", "xai"):
            data.setdefault(section, {})  # so each missing key is reported, not the whole section
        if "state_dir" in data and isinstance(data["state_dir"], str):
            data["state_dir"] = str(expand_home(data["state_dir"], self.env))
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
        if loc in self.reported:
            return None
        if error["type"] == "missing" and self.file_broken:
            return None  # the unreadable file may well hold it; don't add noise
        return sentence(error, Settings, source=self.source(loc), file=str(self.path),
                        missing_hint=self._missing_hint(loc), secret=tuple(loc[:2]) in _SECRET_PATHS)

    def _missing_hint(self, loc: Loc) -> str:
        for spec in SECRETS:
            if spec.path == loc:
                return f"; {spec.hint}"
        if loc in _NAMED_ENV and len(loc) == 2:
            return f"; set {_NAMED_ENV[loc]} or {loc[1]} in [{loc[0]}] of {self.path}"
        return ""


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict | list):
        for value in node.values() if isinstance(node, dict) else node:
            yield from _strings(value)


def _url_passwords(node: Any) -> Iterator[str]:
    """Passwords inside any URL-looking string of a TOML document (to keep them out of messages)."""
    for text in _strings(node):
        password = url_password(text) if "@" in text else None
        if password:
            yield password


def _iter_problems(loader: _Loader) -> Iterator[str]:
    secrets = variants(loader.seen_secrets)
    for problem in loader.problems:
        yield scrub(problem, secrets)


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
