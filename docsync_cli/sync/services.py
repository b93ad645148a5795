"""Builds the service clients and the engine from validated settings (the composition root).

Tests pass ``transports`` (e.g. ``httpx.MockTransport``) to stub at the transport; everything else is real.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from docsync_cli.config import Settings
from docsync_cli.crm.auth import build_http_client
from docsync_cli.crm.client import EspoClient
from docsync_cli.crm.reasons import espo_detail
from docsync_cli.model import DeleteLimits, EngineSettings
from docsync_cli.transport.http import RetryPolicy, ServiceClient
from docsync_cli.transport.throttle import Throttle
from docsync_cli.xai import client as xai


@dataclass
class Services:
    espo: EspoClient
    xai: xai.XaiClient
    http_clients: list[httpx.Client]


@contextlib.contextmanager
def open_services(settings: Settings, transports: dict[str, httpx.BaseTransport] | None = None,
                  retry: RetryPolicy | None = None, concurrency: int | None = None) -> Iterator[Services]:
    """The clients of one run. ``concurrency`` is the run's (``--concurrency``), else the configured one: each
    host's throttle starts at :func:`throttle_limit` of it."""
    transports = transports or {}
    policy = retry or RetryPolicy(attempts=settings.sync.max_attempts)
    limit = throttle_limit(concurrency or settings.sync.concurrency)
    secret = settings.espocrm.secret_key.get_secret_value() if settings.espocrm.secret_key else None
    espo_http = build_http_client(settings.espocrm.url, settings.espocrm.api_key.get_secret_value(), secret,
                                          settings.espocrm.timeout_seconds, transports.get("espocrm"))
    files_http = xai.build_http_client(settings.xai.api_url, settings.xai.api_key.get_secret_value(),
                                       settings.xai.timeout_seconds, transports.get("xai_files"))
    mgmt_http = xai.build_http_client(settings.xai.management_url, settings.xai.management_key.get_secret_value(),
                                      settings.xai.timeout_seconds, transports.get("xai_management"))
    deadline = settings.sync.request_deadline_seconds
    espo_service = ServiceClient("espocrm", espo_http, deadline_seconds=deadline, retry=policy,
                                 detail=espo_detail, throttle=Throttle(limit=limit))
    # One throttle per host: the Files API and the Management API have separate limits.
    files = ServiceClient("xai", files_http, deadline_seconds=deadline, retry=policy, detail=xai.xai_detail,
                          throttle=Throttle(limit=limit))
    management = ServiceClient("xai-management", mgmt_http, deadline_seconds=deadline, retry=policy,
                               detail=xai.xai_detail, throttle=Throttle(limit=limit))
    services = Services(EspoClient(espo_service, settings.espocrm.fields.model_dump()),
                        xai.XaiClient(files, management), [espo_http, files_http, mgmt_http])
    try:
        yield services
    finally:
        for client in services.http_clients:
            client.close()


def throttle_limit(concurrency: int) -> int:
    """Requests in flight allowed per host at first: two per worker (a download beside a write-back), at least 4."""
    return max(4, concurrency * 2)


def engine_settings(settings: Settings, concurrency: int | None = None, temp_dir: Path | None = None
                    ) -> EngineSettings:
    return EngineSettings(
        static_collections=tuple(settings.collections.static),
        links=settings.collections.rules,
        max_file_bytes=settings.xai.max_file_bytes,
        processing_wait_seconds=settings.sync.processing_wait_seconds,
        poll_interval_seconds=settings.sync.poll_interval_seconds,
        concurrency=concurrency or settings.sync.concurrency,
        delete_limits=DeleteLimits(settings.sync.max_delete, settings.sync.max_delete_percent),
        temp_dir=temp_dir or Path(tempfile.gettempdir()),
        change_feeds=settings.sync.change_feeds,
        listing_interval_seconds=settings.sync.listing_interval_seconds,
        partial_listing_interval_seconds=settings.sync.partial_listing_interval_seconds,
    )
