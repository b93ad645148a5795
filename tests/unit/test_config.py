"""Settings loading: sources, precedence, validation messages, secrets and permissions.

Every test passes an explicit ``env`` dict and points the default config path into ``tmp_path``, so the
real environment and a real /etc/docsync/config.toml never matter.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from docsync_cli.config import (
    CollectionSettings,
    EspoSettings,
    FieldNames,
    LinkRuleSetting,
    LockSettings,
    Settings,
    XaiSettings,
    default_config_path,
    default_state_dir,
    load_settings,
    redact,
    secret_values,
)
from docsync_cli.config import paths as config_paths
from docsync_cli.errors import ConfigError
from docsync_cli.users import group_name, user_name

REPO = Path(__file__).resolve().parents[2]
UNPATCHED_DEFAULT_CONFIG_PATH = config_paths.DEFAULT_CONFIG_PATH

CANARY = {
    "ESPOCRM_API_KEY": "sk-CANARY-espo-api-0001",
    "ESPOCRM_SECRET_KEY": "sk-CANARY-espo-secret-0002",
    "XAI_API_KEY": "sk-CANARY-xai-api-0003",
    "XAI_MANAGEMENT_KEY": "sk-CANARY-xai-mgmt-0004",
}
CREDENTIAL = {
    "ESPOCRM_API_KEY": "espocrm-api-key",
    "ESPOCRM_SECRET_KEY": "espocrm-secret-key",
    "XAI_API_KEY": "xai-api-key",
    "XAI_MANAGEMENT_KEY": "xai-management-key",
}
SECRET_PATH = {
    "ESPOCRM_API_KEY": ("espocrm", "api_key"),
    "ESPOCRM_SECRET_KEY": ("espocrm", "secret_key"),
    "XAI_API_KEY": ("xai", "api_key"),
    "XAI_MANAGEMENT_KEY": ("xai", "management_key"),
}


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default path must never hit a real /etc/docsync/config.toml; run as a non-root user by default.
    monkeypatch.setattr(config_paths, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "config.toml")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "HOME": str(tmp_path / "home"),
        "ESPOCRM_URL": "https://crm.example.com",
        "ESPOCRM_API_KEY": CANARY["ESPOCRM_API_KEY"],
        "XAI_API_KEY": CANARY["XAI_API_KEY"],
        "XAI_MANAGEMENT_KEY": CANARY["XAI_MANAGEMENT_KEY"],
    }
    env.update(extra)
    return env


def write_toml(tmp_path: Path, text: str, mode: int = 0o600, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def secret_value(settings: Settings, name: str) -> str | None:
    section, key = SECRET_PATH[name]
    value = getattr(getattr(settings, section), key)
    assert value is None or isinstance(value, SecretStr)
    return None if value is None else value.get_secret_value()


def problems_of(excinfo: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return excinfo.value.problems


def own_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``path`` look owned by the (pretend) current user."""
    monkeypatch.setattr(os, "geteuid", lambda: path.stat().st_uid)


# --------------------------------------------------------------------------------------------- sources


def test_env_only_config_uses_defaults_for_everything_else(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path))

    assert settings.config_path is None
    assert settings.espocrm.url == "https://crm.example.com"
    assert settings.espocrm.secret_key is None
    assert settings.espocrm.fields == FieldNames()
    assert settings.espocrm.timeout_seconds == 30.0
    assert settings.xai.api_url == "https://api.x.ai"
    assert settings.xai.management_url == "https://management-api.x.ai"
    assert settings.xai.max_file_bytes == 50_000_000
    assert settings.collections.static == []
    assert settings.collections.links == [LinkRuleSetting(link="accounts", field="xaiCollectionId")]
    assert settings.sync.concurrency == 12
    assert settings.sync.max_delete_percent == 50.0
    assert settings.preview.enabled is True
    assert settings.lock.backend == "file"
    assert settings.lock.url is None
    assert settings.state_dir == tmp_path / "home" / ".local" / "state" / "docsync"


def test_toml_only_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(
        tmp_path,
        f"""
state_dir = "{tmp_path / 'state'}"
[espocrm]
url = "https://crm.example.com/"
api_key = "{CANARY['ESPOCRM_API_KEY']}"
secret_key = "{CANARY['ESPOCRM_SECRET_KEY']}"
timeout_seconds = 12
[espocrm.fields]
dateiStatus = "cDateiStatus"
[xai]
api_key = "{CANARY['XAI_API_KEY']}"
management_key = "{CANARY['XAI_MANAGEMENT_KEY']}"
max_file_bytes = 1000
[collections]
static = ["collection_a", "collection_b"]
[sync]
concurrency = 8
max_delete_percent = 10
[preview]
enabled = false
memory_mb = 512
[lock]
backend = "redis"
url = "redis://localhost:6379/0"
ttl_seconds = 30
""",
    )
    own_file(path, monkeypatch)

    settings = load_settings(path, env={"HOME": str(tmp_path)})

    assert settings.config_path == path
    assert settings.state_dir == tmp_path / "state"
    assert settings.espocrm.url == "https://crm.example.com"
    assert secret_value(settings, "ESPOCRM_API_KEY") == CANARY["ESPOCRM_API_KEY"]
    assert secret_value(settings, "ESPOCRM_SECRET_KEY") == CANARY["ESPOCRM_SECRET_KEY"]
    assert secret_value(settings, "XAI_API_KEY") == CANARY["XAI_API_KEY"]
    assert secret_value(settings, "XAI_MANAGEMENT_KEY") == CANARY["XAI_MANAGEMENT_KEY"]
    assert settings.espocrm.timeout_seconds == 12.0
    assert settings.espocrm.fields.dateiStatus == "cDateiStatus"
    assert settings.espocrm.fields.md5 == "md5"
    assert settings.xai.max_file_bytes == 1000
    assert settings.collections.static == ["collection_a", "collection_b"]
    assert settings.sync.concurrency == 8
    assert settings.sync.max_delete_percent == 10.0
    assert settings.preview.enabled is False
    assert settings.preview.memory_mb == 512
    assert settings.lock == LockSettings(backend="redis", url="redis://localhost:6379/0", ttl_seconds=30)


def test_config_path_from_env_is_used(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sync]\nconcurrency = 3\n", mode=0o644)
    settings = load_settings(env=base_env(tmp_path, DOCSYNC_CONFIG=str(path)))
    assert settings.sync.concurrency == 3
    assert settings.config_path == path


def test_environment_overrides_toml(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
state_dir = "/srv/from-toml"
[espocrm]
url = "https://toml.example.com"
[espocrm.fields]
md5 = "cMd5"
sha = "cSha"
[xai]
api_url = "https://toml-api.example.com"
[collections]
static = ["from_toml"]
[[collections.links]]
link = "contacts"
field = "cCollection"
[sync]
concurrency = 2
[preview]
enabled = true
[lock]
backend = "file"
""",
    )
    env = base_env(
        tmp_path,
        ESPOCRM_URL="https://env.example.com",
        XAI_API_URL="https://env-api.example.com",
        DOCSYNC_STATE_DIR="/srv/from-env",
        DOCSYNC_SYNC__CONCURRENCY="8",
        DOCSYNC_COLLECTIONS__STATIC="collection_a, collection_b,",
        DOCSYNC_COLLECTIONS__LINKS="accounts:xaiCollectionId",
        DOCSYNC_ESPOCRM__FIELDS__MD5="envMd5",
        DOCSYNC_PREVIEW__ENABLED="false",
        DOCSYNC_LOCK__BACKEND="redis",
        DOCSYNC_LOCK__URL="rediss://redis.example.com:6380/1",
    )

    settings = load_settings(path, env=env)

    assert settings.espocrm.url == "https://env.example.com"
    assert settings.xai.api_url == "https://env-api.example.com"
    assert settings.state_dir == Path("/srv/from-env")
    assert settings.sync.concurrency == 8
    assert settings.collections.static == ["collection_a", "collection_b"]
    assert settings.collections.links == [LinkRuleSetting(link="accounts", field="xaiCollectionId")]
    assert settings.espocrm.fields.md5 == "envMd5"
    assert settings.espocrm.fields.sha == "cSha"  # untouched TOML value survives
    assert settings.preview.enabled is False
    assert settings.lock.backend == "redis"
    assert settings.lock.url == "rediss://redis.example.com:6380/1"


def test_empty_environment_values_count_as_unset(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[espocrm]\nurl = "https://toml.example.com"\n[sync]\nconcurrency = 2\n')
    env = base_env(tmp_path, ESPOCRM_URL="", DOCSYNC_SYNC__CONCURRENCY="")
    settings = load_settings(path, env=env)
    assert settings.espocrm.url == "https://toml.example.com"
    assert settings.sync.concurrency == 2


def test_empty_links_variable_disables_link_rules(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path, DOCSYNC_COLLECTIONS__LINKS=""))
    assert settings.collections.links == []


# --------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("name", sorted(CANARY))
@pytest.mark.parametrize("source", ["env", "file", "credentials", "toml"])
def test_each_secret_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> None:
    env = base_env(tmp_path)
    env.pop(name, None)
    value = f"sk-from-{source}-{name.lower()}"
    path = tmp_path / "absent.toml"
    if source == "env":
        env[name] = value
    elif source == "file":
        secret_file = tmp_path / "secret"
        secret_file.write_text(value + "\n")
        secret_file.chmod(0o600)
        env[f"{name}_FILE"] = str(secret_file)
    elif source == "credentials":
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / CREDENTIAL[name]).write_text(value)
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    else:
        section, key = SECRET_PATH[name]
        path = write_toml(tmp_path, f'[{section}]\n{key} = "{value}"\n')
        own_file(path, monkeypatch)

    settings = load_settings(path if source == "toml" else None, env=env)

    assert secret_value(settings, name) == value


@pytest.mark.parametrize("name", sorted(CANARY))
def test_secret_source_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    section, key = SECRET_PATH[name]
    path = write_toml(tmp_path, f'[{section}]\n{key} = "sk-toml"\n')
    own_file(path, monkeypatch)
    secret_file = tmp_path / "secret"
    secret_file.write_text("sk-file\n")
    secret_file.chmod(0o600)
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / CREDENTIAL[name]).write_text("sk-credential\n")
    env = base_env(tmp_path, CREDENTIALS_DIRECTORY=str(creds))
    env.update({name: "sk-env", f"{name}_FILE": str(secret_file)})

    assert secret_value(load_settings(path, env=env), name) == "sk-env"
    del env[name]
    assert secret_value(load_settings(path, env=env), name) == "sk-file"
    del env[f"{name}_FILE"]
    assert secret_value(load_settings(path, env=env), name) == "sk-credential"
    (creds / CREDENTIAL[name]).unlink()
    assert secret_value(load_settings(path, env=env), name) == "sk-toml"


def test_secret_file_keeps_inner_content_and_strips_only_trailing_newlines(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(b"sk-abc\r\n\n")
    secret_file.chmod(0o600)
    env = base_env(tmp_path, XAI_API_KEY_FILE=str(secret_file))
    del env["XAI_API_KEY"]
    assert secret_value(load_settings(env=env), "XAI_API_KEY") == "sk-abc"


def test_empty_secret_file_is_a_problem_naming_the_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "empty"
    secret_file.write_text("\n")
    secret_file.chmod(0o600)
    env = base_env(tmp_path, XAI_API_KEY_FILE=str(secret_file))
    del env["XAI_API_KEY"]

    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)

    assert problems_of(excinfo) == [f"xai.api_key (from XAI_API_KEY_FILE): {secret_file} is empty"]


def test_unreadable_or_missing_secret_files_are_problems(tmp_path: Path) -> None:
    a_directory = tmp_path / "adir"
    a_directory.mkdir()
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "xai-management-key").write_text("")
    env = base_env(
        tmp_path,
        ESPOCRM_API_KEY_FILE=str(a_directory),
        XAI_API_KEY_FILE=str(tmp_path / "nope"),
        CREDENTIALS_DIRECTORY=str(creds),
    )
    for name in ("ESPOCRM_API_KEY", "XAI_API_KEY", "XAI_MANAGEMENT_KEY"):
        del env[name]

    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)

    problems = problems_of(excinfo)
    assert len(problems) == 3, problems  # and no extra "missing" for the same keys
    assert problems[0].startswith(f"espocrm.api_key (from ESPOCRM_API_KEY_FILE): cannot read {a_directory}")
    assert problems[1] == f"xai.api_key (from XAI_API_KEY_FILE): file {tmp_path / 'nope'} does not exist"
    assert problems[2] == (
        "xai.management_key (from systemd credential xai-management-key): "
        f"{creds / 'xai-management-key'} is empty"
    )


def test_secret_with_whitespace_is_rejected_without_echoing_it(tmp_path: Path) -> None:
    env = base_env(tmp_path, XAI_API_KEY="sk-CANARY-spacey ")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)
    [problem] = problems_of(excinfo)
    assert problem.startswith("xai.api_key (from XAI_API_KEY): contains whitespace")
    assert "CANARY" not in problem


# --------------------------------------------------------------------------------------------- problems


def test_missing_required_settings_are_reported_all_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env={"HOME": str(tmp_path)})

    assert problems_of(excinfo) == [
        f"espocrm.url: missing; set ESPOCRM_URL or url in [espocrm] of {config_paths.DEFAULT_CONFIG_PATH}",
        "espocrm.api_key: missing; set ESPOCRM_API_KEY, ESPOCRM_API_KEY_FILE or the systemd credential "
        "espocrm-api-key",
        "xai.api_key: missing; set XAI_API_KEY, XAI_API_KEY_FILE or the systemd credential xai-api-key",
        "xai.management_key: missing; set XAI_MANAGEMENT_KEY, XAI_MANAGEMENT_KEY_FILE or the systemd "
        "credential xai-management-key",
    ]
    assert str(excinfo.value) == "; ".join(problems_of(excinfo))


def test_unknown_keys_in_toml_are_problems(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[espocrm]\nuri = "https://x.example"\n[sync]\nconcurency = 2\n[synk]\na = 1\n'
        "[[collections.links]]\nlink = \"accounts\"\nfield = \"f\"\nextra = 1\n",
    )
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))

    problems = problems_of(excinfo)
    assert f"unknown setting 'espocrm.uri' in {path}; did you mean 'url'?" in problems
    assert f"unknown setting 'sync.concurency' in {path}; did you mean 'concurrency'?" in problems
    assert f"unknown setting 'synk' in {path}; did you mean 'sync'?" in problems
    assert f"unknown setting 'collections.links[0].extra' in {path}" in problems
    assert len(problems) == 4, problems


def test_unknown_docsync_environment_settings_are_problems(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        DOCSYNC_SYNC__CONCURENCY="2",
        DOCSYNC_NOPE__X="1",
        DOCSYNC_ESPOCRM__FIELDS="x",
        DOCSYNC_ESPOCRM__URL="https://other.example",
        DOCSYNC_XAI__API_KEY="sk-CANARY-wrong-place",
        DOCSYNC_COLLECTIONS__LINKS__LINK="accounts",
        DOCSYNC_LOG_LEVEL="debug",  # no "__": belongs to another module, ignored here
    )
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)

    assert problems_of(excinfo) == [
        "DOCSYNC_COLLECTIONS__LINKS__LINK is not read; set DOCSYNC_COLLECTIONS__LINKS=link:field,... instead",
        "espocrm.fields (from DOCSYNC_ESPOCRM__FIELDS) is a group of settings; "
        "set DOCSYNC_ESPOCRM__FIELDS__<NAME> for each setting instead",
        "DOCSYNC_ESPOCRM__URL is not read; set ESPOCRM_URL instead",
        "unknown setting 'nope' (from DOCSYNC_NOPE__X)",
        "unknown setting 'sync.concurency' (from DOCSYNC_SYNC__CONCURENCY); did you mean 'concurrency'?",
        "DOCSYNC_XAI__API_KEY is not read; set XAI_API_KEY instead",
    ]


def test_bad_types_name_the_setting_and_its_source(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
[espocrm]
timeout_seconds = "soon"
[xai]
max_file_bytes = 1.5
[sync]
concurrency = "many"
max_delete_percent = 150
processing_wait_seconds = -1
[preview]
enabled = "maybe"
[lock]
backend = "zookeeper"
[collections]
static = "collection_a"
""",
    )
    env = base_env(tmp_path, DOCSYNC_SYNC__MAX_ATTEMPTS="0", DOCSYNC_XAI__TIMEOUT_SECONDS="nan")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=env)

    src = f"(from {path})"
    assert problems_of(excinfo) == [
        f"espocrm.timeout_seconds {src}: must be a number, got 'soon'",
        "xai.timeout_seconds (from DOCSYNC_XAI__TIMEOUT_SECONDS): must be a finite number",
        f"xai.max_file_bytes {src}: must be a whole number, got 1.5",
        f"collections.static {src}: must be a list, got 'collection_a'",
        f"sync.concurrency {src}: must be a whole number, got 'many'",
        f"sync.processing_wait_seconds {src}: must be at least 0",
        f"sync.max_delete_percent {src}: must be between 0 and 100",
        "sync.max_attempts (from DOCSYNC_SYNC__MAX_ATTEMPTS): must be at least 1",
        f"preview.enabled {src}: must be true or false, got 'maybe'",
        f"lock.backend {src}: must be 'file' or 'redis', got 'zookeeper'",
    ]


def test_concurrency_range_message(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sync]\nconcurrency = 33\n")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [f"sync.concurrency (from {path}): must be between 1 and 32"]


def test_section_of_wrong_type(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'sync = 5\nstate_dir = "relative/dir"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [
        f"sync (from {path}): must be a table (a [section] in TOML), got 5",
        f"state_dir (from {path}): must be an absolute path, got 'relative/dir'",
    ]


def test_toml_syntax_error_has_line_number_and_suppresses_missing_noise(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[espocrm]\nurl = "https://x.example"\napi_key = = 3\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={"HOME": str(tmp_path), "DOCSYNC_SYNC__CONCURRENCY": "0"})
    problems = problems_of(excinfo)
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{path}: invalid TOML: ")
    assert "line 3" in problems[0]
    assert problems[1] == "sync.concurrency (from DOCSYNC_SYNC__CONCURRENCY): must be between 1 and 32"


def test_config_path_setting_cannot_be_set_in_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'config_path = "/elsewhere.toml"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [f"unknown setting 'config_path' in {path}"]


# --------------------------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://crm.example.com", "https://crm.example.com"),
        ("https://crm.example.com/", "https://crm.example.com"),
        ("https://crm.example.com/api/v1", "https://crm.example.com"),
        ("https://crm.example.com/api/v1/", "https://crm.example.com"),
        ("HTTPS://crm.example.com/espo/api/v1//", "https://crm.example.com/espo"),
        ("http://10.0.0.5:8080/crm", "http://10.0.0.5:8080/crm"),
        ("  https://crm.example.com  ", "https://crm.example.com"),
    ],
)
def test_espocrm_url_normalised(tmp_path: Path, given: str, expected: str) -> None:
    assert load_settings(env=base_env(tmp_path, ESPOCRM_URL=given)).espocrm.url == expected


def test_xai_urls_normalised(tmp_path: Path) -> None:
    env = base_env(tmp_path, XAI_API_URL="https://api.x.ai/v1/", XAI_MANAGEMENT_URL="http://localhost:9000/")
    settings = load_settings(env=env)
    assert settings.xai.api_url == "https://api.x.ai"
    assert settings.xai.management_url == "http://localhost:9000"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("ftp://x", "not an http(s) URL: 'ftp://x'"),
        ("crm.example.com", "not an http(s) URL: 'crm.example.com'"),
        ("https://", "not an http(s) URL: 'https://'"),
        ("https://crm.example.com:99999", "not an http(s) URL: 'https://crm.example.com:99999'"),
        ("https://crm.example.com/?a=1", "must not contain a query or fragment: 'https://crm.example.com/?a=1'"),
        ("https://admin:sk-CANARY-pw@crm.example.com", "must not contain a user name or password"),
    ],
)
def test_bad_urls(tmp_path: Path, given: str, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=base_env(tmp_path, ESPOCRM_URL=given))
    [problem] = problems_of(excinfo)
    assert problem.startswith(f"espocrm.url (from ESPOCRM_URL): {message}")
    assert "CANARY" not in problem


# --------------------------------------------------------------------------------------------- lock


def test_redis_backend_needs_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=base_env(tmp_path, DOCSYNC_LOCK__BACKEND="redis"))
    assert problems_of(excinfo) == [
        "lock.url: required when lock.backend is 'redis'; set DOCSYNC_LOCK__URL or url in [lock]"
    ]


@pytest.mark.parametrize(
    "url", ["redis://localhost:6379/0", "rediss://:pw@redis.example.com", "unix:///run/redis/redis.sock"]
)
def test_redis_urls_accepted(tmp_path: Path, url: str) -> None:
    settings = load_settings(env=base_env(tmp_path, DOCSYNC_LOCK__BACKEND="redis", DOCSYNC_LOCK__URL=url))
    assert settings.lock.url == url


def test_bad_redis_url_masks_its_password(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_LOCK__BACKEND="redis", DOCSYNC_LOCK__URL="http://:sk-CANARY-redis@h")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)
    assert problems_of(excinfo) == [
        "lock.url (from DOCSYNC_LOCK__URL): not a redis://, rediss:// or unix:// URL: 'http://:***@h'"
    ]


def test_redis_password_is_a_secret(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_LOCK__BACKEND="redis", DOCSYNC_LOCK__URL="redis://u:sk-CANARY-redis@h:6379")
    settings = load_settings(env=env)
    assert "sk-CANARY-redis" in secret_values(settings)
    assert "sk-CANARY-redis" not in repr(settings)
    assert "redis://u:***@h:6379" in repr(settings)
    assert redact("auth sk-CANARY-redis failed", settings) == "auth *** failed"


# --------------------------------------------------------------------------------------------- fields & links


def test_field_name_override_from_env_is_case_insensitive(tmp_path: Path) -> None:
    env = base_env(
        tmp_path, DOCSYNC_ESPOCRM__FIELDS__DATEISTATUS="cDateiStatus", DOCSYNC_espocrm__Fields__PREVIEW="cPrev"
    )
    fields = load_settings(env=env).espocrm.fields
    assert fields.dateiStatus == "cDateiStatus"
    assert fields.preview == "cPrev"


def test_duplicate_field_names_are_a_problem(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[espocrm.fields]\nmd5 = "hash"\n')
    env = base_env(tmp_path, DOCSYNC_ESPOCRM__FIELDS__SHA="hash")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=env)
    assert problems_of(excinfo) == [
        f"espocrm.fields (from {path} and DOCSYNC_ESPOCRM__FIELDS__SHA): field names must be distinct: "
        "'hash' is used for both md5 and sha"
    ]


def test_preview_id_attribute_may_not_clash(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_ESPOCRM__FIELDS__XAIFILEID="previewId")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)
    [problem] = problems_of(excinfo)
    assert "'previewId' is used for both xaiFileId and preview (id attribute)" in problem


@pytest.mark.parametrize("bad", ["1abc", "c_status", "with space", "", "ümlaut"])
def test_bad_field_identifiers(tmp_path: Path, bad: str) -> None:
    path = write_toml(tmp_path, f'[espocrm.fields]\nsha = "{bad}"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [
        f"espocrm.fields.sha (from {path}): {bad!r} is not a valid attribute name "
        "(letters and digits only, starting with a letter)"
    ]


def test_links_from_toml(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        '[[collections.links]]\nlink = "accounts"\nfield = "xaiCollectionId"\n'
        '[[collections.links]]\nlink = "contacts"\nfield = "cCollection"\n',
    )
    settings = load_settings(path, env=base_env(tmp_path))
    assert settings.collections.links == [
        LinkRuleSetting(link="accounts", field="xaiCollectionId"),
        LinkRuleSetting(link="contacts", field="cCollection"),
    ]


def test_links_from_env(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_COLLECTIONS__LINKS="accounts:xaiCollectionId, contacts:xaiCollectionId")
    assert load_settings(env=env).collections.links == [
        LinkRuleSetting(link="accounts", field="xaiCollectionId"),
        LinkRuleSetting(link="contacts", field="xaiCollectionId"),
    ]


def test_preview_settings_build_the_preview_limits(tmp_path: Path) -> None:
    from docsync_cli.preview.limits import PreviewLimits

    env = base_env(tmp_path, DOCSYNC_PREVIEW__TIMEOUT_SECONDS="7.5", DOCSYNC_PREVIEW__MEMORY_MB="256")
    limits = load_settings(env=env).preview.limits()
    assert limits == PreviewLimits(timeout_seconds=7.5, memory_bytes=256 * 1024 * 1024)
    assert load_settings(env=base_env(tmp_path)).preview.limits() == PreviewLimits()  # the same defaults


def test_importing_config_loads_no_preview_or_engine_code() -> None:
    import subprocess
    import sys

    code = ("import sys, docsync_cli.config; "
            "print(sorted(m for m in sys.modules if m.startswith(('docsync_cli.preview', 'docsync_cli.sync.engine', "
            "'docsync_cli.sync.step', 'PIL', 'pypdfium2', 'httpx'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_link_settings_become_the_engines_rules(tmp_path: Path) -> None:
    from docsync_cli.model import EngineSettings, LinkRule

    assert CollectionSettings().rules == EngineSettings().links  # one default
    env = base_env(tmp_path, DOCSYNC_COLLECTIONS__LINKS="accounts:xaiCollectionId, contacts:cCollection")
    assert load_settings(env=env).collections.rules == (LinkRule("accounts", "xaiCollectionId"),
                                                         LinkRule("contacts", "cCollection"))
    assert CollectionSettings(links=[]).rules == ()


def test_bad_links(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_COLLECTIONS__LINKS="accounts,contacts:x:y")
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=env)
    assert problems_of(excinfo) == [
        "collections.links (from DOCSYNC_COLLECTIONS__LINKS): 'accounts' is not of the form link:field "
        "(e.g. accounts:xaiCollectionId)",
        "collections.links (from DOCSYNC_COLLECTIONS__LINKS): 'contacts:x:y' is not of the form link:field "
        "(e.g. accounts:xaiCollectionId)",
    ]

    path = write_toml(
        tmp_path, '[[collections.links]]\nlink = "accounts"\n[[collections.links]]\nlink = "9"\nfield = "f"\n'
    )
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [
        "collections.links[0].field: missing",
        f"collections.links[1].link (from {path}): '9' is not a valid attribute name "
        "(letters and digits only, starting with a letter)",
    ]


def test_static_collections_are_deduplicated_and_checked(tmp_path: Path) -> None:
    env = base_env(tmp_path, DOCSYNC_COLLECTIONS__STATIC="a,b,a")
    assert load_settings(env=env).collections.static == ["a", "b"]
    path = write_toml(tmp_path, 'collections = { static = ["ok", "has space"] }\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [
        f"collections.static (from {path}): collection ids must be non-empty and without spaces: ['has space']"
    ]


# --------------------------------------------------------------------------------------------- permissions


SECRET_TOML = f'[xai]\napi_key = "{CANARY["XAI_API_KEY"]}"\n'


def test_world_readable_file_with_secrets_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, SECRET_TOML, mode=0o644)
    own_file(path, monkeypatch)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    [problem] = problems_of(excinfo)
    assert problem.startswith("config.toml holds secrets but is readable or writable by other users (mode 0644); "
                              "run (as root): chown root:")
    assert f"{path} && chmod 0640 {path}, or better move the keys out of the file" in problem


def test_group_writable_file_with_secrets_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, SECRET_TOML, mode=0o660)
    own_file(path, monkeypatch)
    with pytest.raises(ConfigError, match=r"mode 0660"):
        load_settings(path, env=base_env(tmp_path))


def test_group_readable_file_with_secrets_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """root:docsync 0640, like the key files: root (status, check) and the service user (its group) both read it."""
    path = write_toml(tmp_path, SECRET_TOML, mode=0o640)
    own_file(path, monkeypatch)
    env = base_env(tmp_path)
    del env["XAI_API_KEY"]
    assert secret_value(load_settings(path, env=env), "XAI_API_KEY") == CANARY["XAI_API_KEY"]


def test_private_file_with_secrets_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, SECRET_TOML, mode=0o600)
    own_file(path, monkeypatch)
    env = base_env(tmp_path)
    del env["XAI_API_KEY"]
    assert secret_value(load_settings(path, env=env), "XAI_API_KEY") == CANARY["XAI_API_KEY"]


def test_readable_file_without_secrets_is_fine(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[sync]\nconcurrency = 2\n", mode=0o644)
    # Owned by "someone else" too (geteuid is patched to 1000): no secrets, so no check.
    assert load_settings(path, env=base_env(tmp_path)).sync.concurrency == 2


def test_file_with_secrets_owned_by_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A docsync-owned 0600 config read by root (status, check): the fix is root:docsync 0640, which both can read
    (never `chown 0`, which would lock the service out), and it names users, not uids."""
    path = write_toml(tmp_path, SECRET_TOML, mode=0o600)
    owner = path.stat().st_uid
    if owner == 0:  # as root: make it another user's, as the service user's file would be
        owner = 4242
        os.chown(path, owner, owner)
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=base_env(tmp_path))
    [problem] = problems_of(excinfo)
    assert problem.startswith(
        f"config.toml holds secrets but is owned by {user_name(owner)}, and docsync runs as {user_name(owner + 1)}; "
        f"run (as root): chown root:"
    ), problem
    assert f"&& chmod 0640 {path} (root and the group " in problem
    assert CANARY["XAI_API_KEY"] not in problem


def test_root_running_on_the_service_users_config_is_told_the_shared_owner(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, SECRET_TOML, mode=0o600)
    fake = os.stat_result((0o100600, 0, 0, 1, 990, 990, 0, 0, 0, 0))  # the service user's file: uid/gid 990
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: fake)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        with pytest.raises(ConfigError) as excinfo:
            load_settings(path, env=base_env(tmp_path))
    finally:
        monkeypatch.setattr(os, "fstat", real_fstat)
    [problem] = problems_of(excinfo)
    assert f"run (as root): chown root:{group_name(990)} {path} && chmod 0640 {path}" in problem, problem


def test_root_reading_a_root_owned_file_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, SECRET_TOML, mode=0o600)
    fake = os.stat_result((0o100600, 0, 0, 1, 0, 0, 0, 0, 0, 0))  # mode, ino, dev, nlink, uid=0, gid=0, ...
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: fake)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    try:
        settings = load_settings(path, env=base_env(tmp_path))
    finally:
        monkeypatch.setattr(os, "fstat", real_fstat)
    assert settings.config_path == path


def test_redis_password_in_file_counts_as_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_toml(tmp_path, '[lock]\nbackend = "redis"\nurl = "redis://:pw-CANARY@h"\n', mode=0o644)
    own_file(path, monkeypatch)
    with pytest.raises(ConfigError, match=r"holds secrets but is readable or writable by other users") as excinfo:
        load_settings(path, env=base_env(tmp_path))
    assert all("pw-CANARY" not in problem for problem in problems_of(excinfo))


# --------------------------------------------------------------------------------------------- file location


def test_missing_file_at_default_path_is_fine(tmp_path: Path) -> None:
    assert not config_paths.DEFAULT_CONFIG_PATH.exists()
    assert load_settings(env=base_env(tmp_path)).config_path is None


def test_missing_file_at_default_path_with_require_file_is_a_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=base_env(tmp_path), require_file=True)
    assert problems_of(excinfo) == [f"config file {config_paths.DEFAULT_CONFIG_PATH} does not exist"]


def test_explicit_missing_file_is_a_problem(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_settings(missing, env={"HOME": str(tmp_path)})
    # only this problem: the absent file may well have held the "missing" settings
    assert problems_of(excinfo) == [f"config file {missing} does not exist (named by --config)"]

    with pytest.raises(ConfigError) as excinfo:
        load_settings(env=base_env(tmp_path, DOCSYNC_CONFIG=str(missing)))
    assert problems_of(excinfo) == [f"config file {missing} does not exist (named by DOCSYNC_CONFIG)"]


def test_config_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(tmp_path, env=base_env(tmp_path))
    assert problems_of(excinfo) == [f"config file {tmp_path} is a directory, not a file"]


def test_default_config_path() -> None:
    assert Path("/etc/docsync/config.toml") == UNPATCHED_DEFAULT_CONFIG_PATH
    assert default_config_path({}) == config_paths.DEFAULT_CONFIG_PATH
    assert default_config_path({"DOCSYNC_CONFIG": "/srv/docsync.toml"}) == Path("/srv/docsync.toml")
    assert default_config_path({"DOCSYNC_CONFIG": ""}) == config_paths.DEFAULT_CONFIG_PATH


# --------------------------------------------------------------------------------------------- state dir


def test_state_dir_for_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_dir({"HOME": "/root", "XDG_STATE_HOME": "/root/.state"}) == Path("/var/lib/docsync")


def test_state_dir_for_users(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(config_paths, "ROOT_STATE_DIR", tmp_path / "no-system-install")
    assert default_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/docsync")
    assert default_state_dir({"HOME": "/home/u", "XDG_STATE_HOME": "/x/state"}) == Path("/x/state/docsync")
    # relative XDG values are ignored, as the XDG spec says
    assert default_state_dir({"HOME": "/home/u", "XDG_STATE_HOME": "rel"}) == Path("/home/u/.local/state/docsync")


def test_state_dir_from_env_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_state_dir({"DOCSYNC_STATE_DIR": "/srv/state"}) == Path("/srv/state")
    assert default_state_dir({"DOCSYNC_STATE_DIR": "~/s", "HOME": "/home/u"}) == Path("/home/u/s")
    # systemd StateDirectory= beats the uid-based default
    assert default_state_dir({"STATE_DIRECTORY": "/var/lib/docsync2:/var/lib/other"}) == Path("/var/lib/docsync2")


def test_state_dir_loaded_default_and_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = base_env(tmp_path, XDG_STATE_HOME=str(tmp_path / "xdg"))
    assert load_settings(env=env).state_dir == tmp_path / "xdg" / "docsync"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert load_settings(env=env).state_dir == Path("/var/lib/docsync")
    path = write_toml(tmp_path, 'state_dir = "~/docsync-state"\n')
    assert load_settings(path, env=env).state_dir == tmp_path / "home" / "docsync-state"


# --------------------------------------------------------------------------------------------- secrecy


def full_secret_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return base_env(tmp_path, ESPOCRM_SECRET_KEY=CANARY["ESPOCRM_SECRET_KEY"], **extra)


def test_redact_replaces_every_secret(tmp_path: Path) -> None:
    settings = load_settings(env=full_secret_env(tmp_path))
    text = " | ".join(CANARY.values()) + " and X-Api-Key: " + CANARY["ESPOCRM_API_KEY"]
    assert redact(text, settings) == "*** | *** | *** | *** and X-Api-Key: ***"
    assert sorted(v for v in secret_values(settings) if "CANARY" in v) == sorted(CANARY.values())
    assert redact("nothing secret here", settings) == "nothing secret here"


def test_redact_handles_url_encoded_secrets(tmp_path: Path) -> None:
    settings = load_settings(env=base_env(tmp_path, XAI_API_KEY="sk-CANARY/with+plus=="))
    assert redact("?key=sk-CANARY%2Fwith%2Bplus%3D%3D&x=1", settings) == "?key=***&x=1"


def test_no_canary_in_repr_or_str(tmp_path: Path) -> None:
    settings = load_settings(env=full_secret_env(tmp_path))
    for text in (repr(settings), str(settings), repr(settings.espocrm), repr(settings.xai)):
        for canary in CANARY.values():
            assert canary not in text


def test_no_canary_in_any_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file full of mistakes that also holds every canary, in right and wrong places, world-readable.
    path = write_toml(
        tmp_path,
        f"""
[espocrm]
url = "https://user:{CANARY['ESPOCRM_SECRET_KEY']}@crm.example.com"
api_key = "{CANARY['ESPOCRM_API_KEY']} "
secret_key = 12
api_kee = "{CANARY['ESPOCRM_API_KEY']}"
[xai]
api_key = "{CANARY['XAI_API_KEY']}\\n"
management_key = ["{CANARY['XAI_MANAGEMENT_KEY']}"]
[sync]
concurrency = "{CANARY['XAI_MANAGEMENT_KEY']}"
""",
        mode=0o644,
    )
    own_file(path, monkeypatch)
    env = {
        "HOME": str(tmp_path),
        "XAI_API_KEY": CANARY["XAI_API_KEY"] + "\t",
        "DOCSYNC_PREVIEW__ENABLED": CANARY["ESPOCRM_SECRET_KEY"],
        "DOCSYNC_LOCK__URL": f"redis://:{CANARY['XAI_API_KEY']}@h:0",
    }
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env=env)

    problems = problems_of(excinfo)
    assert len(problems) >= 8, problems
    everything = "\n".join([*problems, str(excinfo.value), repr(excinfo.value)])
    for canary in CANARY.values():
        assert canary not in everything
    # the pydantic error (which holds the raw input) is not chained to the ConfigError
    assert excinfo.value.__cause__ is None
    assert excinfo.value.__context__ is None


def test_problems_are_plain_sentences_without_pydantic_jargon(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[sync]\nconcurrency = "x"\nmax_delete = -1\n[preview]\nenabled = 3\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={"HOME": str(tmp_path)})
    for problem in problems_of(excinfo):
        assert not re.search(r"Input should|Value error|pydantic|type=", problem), problem


# --------------------------------------------------------------------------------------------- models


def test_models_are_frozen_and_forbid_extras() -> None:
    with pytest.raises(ValidationError):
        FieldNames(md5="x", bogus="y")  # type: ignore[call-arg]
    fields = FieldNames()
    with pytest.raises(ValidationError):
        fields.md5 = "other"
    for model in (FieldNames, EspoSettings, XaiSettings, LinkRuleSetting, CollectionSettings, LockSettings, Settings):
        assert issubclass(model, BaseModel)
        assert model.model_config.get("frozen") is True
        assert model.model_config.get("extra") == "forbid"


def test_settings_can_be_built_directly_for_other_modules_tests(tmp_path: Path) -> None:
    settings = Settings(
        espocrm=EspoSettings(url="http://localhost:8080/api/v1", api_key=SecretStr("k1")),
        xai=XaiSettings(api_key=SecretStr("k2"), management_key=SecretStr("k3")),
        state_dir=tmp_path,
    )
    assert settings.espocrm.url == "http://localhost:8080"
    assert settings.sync.concurrency == 12
    assert settings.config_path is None
    assert secret_values(settings) == ["k1", "k2", "k3"]


# --------------------------------------------------------------------------------------------- example file


def test_example_config_is_valid_and_documents_every_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = (REPO / "config.example.toml").read_text(encoding="utf-8")
    document = tomllib.loads(example)
    for section in ("espocrm", "xai"):
        for key in ("api_key", "secret_key", "management_key"):
            assert key not in document.get(section, {}), "secrets only as commented-out placeholders"

    path = write_toml(tmp_path, example, mode=0o644)
    settings = load_settings(path, env=base_env(tmp_path))
    assert settings.config_path == path

    # uncommenting every commented "key = value" line still gives a valid config (with the secrets in it)
    uncommented = re.sub(r"^# (\w+ = .*)$", r"\1", example, flags=re.MULTILINE)
    uncommented = uncommented.replace('backend = "file"', 'backend = "redis"')
    path = write_toml(tmp_path, uncommented, mode=0o600, name="full.toml")
    own_file(path, monkeypatch)
    settings = load_settings(path, env={"HOME": str(tmp_path)})
    assert settings.state_dir == Path("/var/lib/docsync")
    assert settings.lock.url == "redis://localhost:6379/0"

    def names(model: type[BaseModel], prefix: str) -> list[str]:
        out = []
        for name, info in model.model_fields.items():
            sub = info.annotation
            if isinstance(sub, type) and issubclass(sub, BaseModel) and sub is not LinkRuleSetting:
                out += names(sub, f"{prefix}{name}.")
            elif name != "config_path":
                out.append(name)
        return out

    for name in names(Settings, ""):
        pattern = r"^\[\[collections\.links\]\]$" if name == "links" else rf"^#? ?{name} = "
        assert re.search(pattern, example, flags=re.MULTILINE), f"{name} not in config.example.toml"


def test_state_dir_of_the_service_user_is_the_system_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Once /var/lib/docsync exists, every user gets it by default, so an admin's `runuser -u docsync -- docsync
    status` reads the same state as the timer's runs, and a user who may not use it is told so (owner, fix, exit
    4) instead of silently starting a second installation in ~/.local/state."""
    system = tmp_path / "var-lib-docsync"
    system.mkdir()
    monkeypatch.setattr(config_paths, "ROOT_STATE_DIR", system)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert default_state_dir({"HOME": "/home/u"}) == system
    monkeypatch.setattr(os, "geteuid", lambda: 4343)  # someone else: still the real one, never a private copy
    assert default_state_dir({"HOME": "/home/u"}) == system


def test_the_service_users_home_is_its_state_dir_before_it_exists(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    """The README's `useradd --home-dir /var/lib/docsync`: before the directory exists the service user is pointed
    at it (and told to create it), not at ~/.local/state inside a home it does not have."""
    system = tmp_path / "var-lib-docsync"
    monkeypatch.setattr(config_paths, "ROOT_STATE_DIR", system)
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    monkeypatch.setattr(config_paths, "home_of", lambda uid: system if uid == 4242 else None)
    assert default_state_dir({"HOME": str(system)}) == system
    monkeypatch.setattr(os, "geteuid", lambda: 4343)
    assert default_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/docsync")


def test_example_config_sets_every_value_to_its_default(tmp_path: Path) -> None:
    """A copied config.example.toml changes nothing but the URL: every value it sets is docsync's default
    (it once said max_file_bytes = 52428800, above xAI's 50,000,000-byte limit the default follows)."""
    example = (REPO / "config.example.toml").read_text(encoding="utf-8")
    path = write_toml(tmp_path, example, mode=0o644)
    from_example = load_settings(path, env=base_env(tmp_path))
    defaults = load_settings(env=base_env(tmp_path))
    for section in ("espocrm", "xai", "collections", "sync", "preview", "verify", "lock"):
        got = getattr(from_example, section).model_dump()
        want = getattr(defaults, section).model_dump()
        for key, value in want.items():
            if key not in ("url", "api_key", "secret_key", "management_key"):
                assert got[key] == value, f"config.example.toml [{section}] {key} = {got[key]!r}, default {value!r}"
