"""Typed settings: TOML file + environment + secret files + systemd credentials.

Everything is validated before any network call and every problem is reported at once, as one
:class:`~docsync_cli.errors.ConfigError` whose ``problems`` are human sentences naming the setting and
where its value came from, e.g. ``sync.concurrency (from /etc/docsync/config.toml): must be between 1
and 32``. pydantic is an implementation detail: its errors are translated and never shown raw (they would
echo input values, which may be secrets).

The package: :mod:`~docsync_cli.config.model` (the pydantic models and the secrets they hold),
:mod:`~docsync_cli.config.sources` (TOML, environment, ``*_FILE``, systemd credentials, provenance, the loader),
:mod:`~docsync_cli.config.messages` (validation errors as sentences), :mod:`~docsync_cli.config.paths` (the
default config file and state directory). Import from here: ``from docsync_cli.config import Settings,
load_settings``. Importing the package loads pydantic and the standard library only.
"""

from docsync_cli.config.model import (
    CollectionSettings,
    EspoSettings,
    FieldNames,
    LinkRuleSetting,
    LockSettings,
    PreviewSettings,
    Settings,
    SyncSettings,
    VerifySettings,
    XaiSettings,
    redact,
    secret_values,
)
from docsync_cli.config.paths import default_config_path, default_state_dir
from docsync_cli.config.sources import load_settings

__all__ = [
    "CollectionSettings",
    "EspoSettings",
    "FieldNames",
    "LinkRuleSetting",
    "LockSettings",
    "PreviewSettings",
    "Settings",
    "SyncSettings",
    "VerifySettings",
    "XaiSettings",
    "default_config_path",
    "default_state_dir",
    "load_settings",
    "redact",
    "secret_values",
]
