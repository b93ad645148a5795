"""Fixtures of the engine and reconcile tests: ``world`` (a fresh ``MockWorld``) and ``run`` (one sync run
against it; the local state persists between the runs of one test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docsync_cli.config import load_settings
from docsync_cli.model import EngineSettings, RunOptions, RunSummary
from docsync_cli.state import StateStore
from docsync_cli.sync.engine import Engine
from docsync_cli.sync.services import Services, open_services
from docsync_cli.transport.http import RetryPolicy
from tests.fakes import NullLocks
from tests.mock_world import CRM, ESPO_KEY, FILES, INSTALLATION, MGMT, MGMT_KEY, XAI_KEY, MockWorld, RunFn


@pytest.fixture
def world() -> MockWorld:
    return MockWorld()


@pytest.fixture
def world_services(world: MockWorld, tmp_path: Path) -> Iterator[tuple[Services, StateStore]]:
    """The real clients (built by ``open_services``, two quick attempts) over ``world``, and a real local state."""
    settings = load_settings(None, env={
        "ESPOCRM_URL": CRM, "ESPOCRM_API_KEY": ESPO_KEY, "XAI_API_KEY": XAI_KEY, "XAI_MANAGEMENT_KEY": MGMT_KEY,
        "DOCSYNC_STATE_DIR": str(tmp_path / "state"), "XAI_API_URL": FILES, "XAI_MANAGEMENT_URL": MGMT})
    state = StateStore(tmp_path / "state", INSTALLATION)
    try:
        with open_services(settings, world.transports(),
                           retry=RetryPolicy(attempts=2, wait_initial=0, wait_max=0)) as services:
            yield services, state
    finally:
        state.close()


@pytest.fixture
def run(world_services: tuple[Services, StateStore], tmp_path: Path) -> RunFn:
    """``run(**engine_settings)`` → one sync run against ``world`` (state persists between runs of a test)."""
    services, state = world_services

    def run_once(options: RunOptions | None = None, **overrides: Any) -> RunSummary:
        # change_feeds=False: these tests pin the reconcile requests; the feeds have tests of their own
        defaults: dict[str, Any] = {"processing_wait_seconds": 0.0, "poll_interval_seconds": 0.0,
                                    "concurrency": 1, "temp_dir": tmp_path, "change_feeds": False}
        engine_settings = EngineSettings(**(defaults | overrides))
        engine = Engine(services.espo, services.xai, state, NullLocks(), engine_settings, sleep=lambda s: None)
        return engine.run(options or RunOptions())
    return run_once
