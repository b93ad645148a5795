"""services.py, the composition root: which clients, timeouts, auth, retries and throttles it builds from
the settings (and a run's ``--concurrency``), and the engine's settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import tempfile
from pathlib import Path

import httpx
import pytest

from docsync_cli.config import Settings, load_settings
from docsync_cli.crm import reasons
from docsync_cli.model import DeleteLimits, EngineSettings, LinkRule
from docsync_cli.sync.services import engine_settings, open_services, throttle_limit
from docsync_cli.transport.http import RetryPolicy
from docsync_cli.xai import client as xai

CRM = "http://crm.test"
ENV = {"ESPOCRM_URL": CRM, "ESPOCRM_API_KEY": "espo-key-1234", "XAI_API_KEY": "xai-key-1234",
       "XAI_MANAGEMENT_KEY": "mgmt-key-1234", "XAI_API_URL": "http://files.test",
       "XAI_MANAGEMENT_URL": "http://mgmt.test"}


def settings(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, env=ENV | {"DOCSYNC_STATE_DIR": str(tmp_path / "state")} | env)


def test_the_throttles_follow_the_runs_concurrency_not_only_the_configured_one(tmp_path: Path) -> None:
    with open_services(settings(tmp_path, DOCSYNC_SYNC__CONCURRENCY="3"), concurrency=10) as services:
        limits = [services.espo.service.throttle.limit, services.xai.files.throttle.limit,
                  services.xai.management.throttle.limit]
    assert limits == [20, 20, 20]  # two requests in flight per worker


def test_without_an_override_the_throttles_follow_the_configured_concurrency(tmp_path: Path) -> None:
    with open_services(settings(tmp_path, DOCSYNC_SYNC__CONCURRENCY="6")) as services:
        throttles = [services.espo.service.throttle, services.xai.files.throttle, services.xai.management.throttle]
    assert [throttle.limit for throttle in throttles] == [12, 12, 12]
    assert len({id(throttle) for throttle in throttles}) == 3  # one per host: their limits are separate


def test_the_throttle_limit_is_two_requests_per_worker_and_at_least_four() -> None:
    assert [throttle_limit(n) for n in (1, 2, 3, 12, 32)] == [4, 4, 6, 24, 64]


def test_each_service_gets_its_name_deadline_retry_policy_and_error_reading(tmp_path: Path) -> None:
    configured = settings(tmp_path, DOCSYNC_SYNC__MAX_ATTEMPTS="3", DOCSYNC_SYNC__REQUEST_DEADLINE_SECONDS="45")
    with open_services(configured) as services:
        clients = [services.espo.service, services.xai.files, services.xai.management]
    assert [client.name for client in clients] == ["espocrm", "xai", "xai-management"]
    assert {client.deadline_seconds for client in clients} == {45.0}
    assert {client.retry.attempts for client in clients} == {3}
    assert [client.is_auth_failure for client in clients] == [reasons.is_auth_failure, xai.is_auth_failure,
                                                               xai.is_auth_failure]
    assert clients[0]._detail is reasons.espo_detail
    assert clients[1]._detail is xai.xai_detail and clients[2]._detail is xai.xai_detail


def test_a_given_retry_policy_is_used_by_every_service(tmp_path: Path) -> None:
    policy = RetryPolicy(attempts=1, wait_initial=0)
    with open_services(settings(tmp_path), retry=policy) as services:
        assert services.espo.service.retry is policy
        assert services.xai.files.retry is policy and services.xai.management.retry is policy


def test_http_clients_have_the_configured_urls_and_timeouts_and_never_follow_redirects(tmp_path: Path) -> None:
    configured = settings(tmp_path, DOCSYNC_ESPOCRM__TIMEOUT_SECONDS="7", DOCSYNC_XAI__TIMEOUT_SECONDS="9")
    with open_services(configured) as services:
        espo_http, files_http, mgmt_http = services.http_clients
        assert services.espo.service.http is espo_http
        assert services.xai.files.http is files_http and services.xai.management.http is mgmt_http
        assert str(espo_http.base_url) == f"{CRM}/api/v1/"
        assert str(files_http.base_url) == "http://files.test" and str(mgmt_http.base_url) == "http://mgmt.test"
        assert espo_http.timeout == httpx.Timeout(7.0, connect=10.0)
        assert files_http.timeout == mgmt_http.timeout == httpx.Timeout(9.0, connect=10.0)
        assert not any(client.follow_redirects for client in services.http_clients)
    assert all(client.is_closed for client in services.http_clients)


def test_the_http_clients_are_closed_when_the_block_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), open_services(settings(tmp_path)) as services:
        raise RuntimeError("the run failed")
    assert all(client.is_closed for client in services.http_clients)


def recorded(transports: dict[str, list[httpx.Request]]) -> dict[str, httpx.BaseTransport]:
    def handler(name: str) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            transports[name].append(request)
            return httpx.Response(200, json={"list": [], "data": []})
        return httpx.MockTransport(answer)
    return {name: handler(name) for name in transports}


def send_one_each(configured: Settings) -> dict[str, httpx.Request]:
    seen: dict[str, list[httpx.Request]] = {"espocrm": [], "xai_files": [], "xai_management": []}
    with open_services(configured, recorded(seen)) as services:
        services.espo.service.call("GET", "App/user")
        services.xai.files.call("GET", "/v1/files")
        services.xai.management.call("GET", "/v1/collections")
    assert [len(requests) for requests in seen.values()] == [1, 1, 1]  # each service through its own transport
    return {name: requests[0] for name, requests in seen.items()}


def test_each_service_authenticates_with_its_own_key(tmp_path: Path) -> None:
    sent = send_one_each(settings(tmp_path))
    assert sent["espocrm"].headers["X-Api-Key"] == "espo-key-1234"
    assert "X-Hmac-Authorization" not in sent["espocrm"].headers
    assert str(sent["espocrm"].url) == f"{CRM}/api/v1/App/user"
    assert sent["xai_files"].headers["Authorization"] == "Bearer xai-key-1234"
    assert sent["xai_management"].headers["Authorization"] == "Bearer mgmt-key-1234"
    assert "Authorization" not in sent["espocrm"].headers and "X-Api-Key" not in sent["xai_files"].headers


def test_a_configured_secret_key_makes_espocrm_auth_hmac(tmp_path: Path) -> None:
    sent = send_one_each(settings(tmp_path, ESPOCRM_SECRET_KEY="espo-secret-1234"))["espocrm"]
    digest = hmac.new(b"espo-secret-1234", b"GET /App/user", hashlib.sha256).hexdigest()
    assert sent.headers["X-Hmac-Authorization"] == base64.b64encode(f"espo-key-1234:{digest}".encode()).decode()
    assert "X-Api-Key" not in sent.headers


def test_the_crm_client_starts_from_the_configured_field_names(tmp_path: Path) -> None:
    configured = settings(tmp_path, DOCSYNC_ESPOCRM__FIELDS__DATEISTATUS="cDateiStatus",
                          DOCSYNC_ESPOCRM__FIELDS__PREVIEW="cPreview")
    with open_services(configured) as services:
        espo = services.espo
    assert espo.attributes == configured.espocrm.fields.model_dump()
    assert espo.attributes["dateiStatus"] == "cDateiStatus" and espo.preview_attr == "cPreviewId"


def test_engine_settings_come_from_the_sync_settings(tmp_path: Path) -> None:
    configured = settings(tmp_path, DOCSYNC_SYNC__CONCURRENCY="5", DOCSYNC_SYNC__MAX_DELETE="7",
                          DOCSYNC_SYNC__MAX_DELETE_PERCENT="12.5", DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS="30",
                          DOCSYNC_SYNC__POLL_INTERVAL_SECONDS="0.5", DOCSYNC_SYNC__CHANGE_FEEDS="false",
                          DOCSYNC_SYNC__LISTING_INTERVAL_SECONDS="600", DOCSYNC_XAI__MAX_FILE_BYTES="1000",
                          DOCSYNC_COLLECTIONS__STATIC="c1,c2", DOCSYNC_COLLECTIONS__LINKS="accounts:cCollection")
    assert engine_settings(configured) == EngineSettings(
        static_collections=("c1", "c2"), links=(LinkRule("accounts", "cCollection"),), max_file_bytes=1000,
        processing_wait_seconds=30.0, poll_interval_seconds=0.5, concurrency=5,
        delete_limits=DeleteLimits(7, 12.5), temp_dir=Path(tempfile.gettempdir()), change_feeds=False,
        listing_interval_seconds=600.0)


def test_engine_settings_take_the_runs_concurrency_and_temp_dir(tmp_path: Path) -> None:
    chosen = engine_settings(settings(tmp_path, DOCSYNC_SYNC__CONCURRENCY="5"), concurrency=2, temp_dir=tmp_path)
    assert chosen.concurrency == 2 and chosen.temp_dir == tmp_path
    assert engine_settings(settings(tmp_path)).concurrency == 12  # the default
