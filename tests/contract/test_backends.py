"""The backends themselves: the real one is configured (else this is the suite's one skip line)."""

from __future__ import annotations

import pytest

from tests.contract.backends import REAL_ENV, Backend, RealBackend, real_missing


def test_the_real_backend_is_configured() -> None:
    missing = real_missing()
    if missing:
        pytest.skip(f"real EspoCRM backend not configured ({', '.join(missing)} unset): the contract suite ran "
                    f"against the emulator only; to add it, export {', '.join(REAL_ENV)} "
                    "(`. DIR/env.sh` after ../shared/real-espocrm/setup.sh DIR)")
    real = RealBackend()
    try:
        me = real.client().get("App/user")
        assert me.status_code == 200 and me.json()["user"]["type"] == "api"
        assert me.json()["settings"]["version"].startswith("9.")
    finally:
        real.close()


def test_each_backend_serves_the_api_user(backend: Backend) -> None:
    me = backend.client().get("App/user")
    assert me.status_code == 200
    assert me.json()["user"]["type"] == "api"
    assert me.json()["user"]["id"] == backend.api_user_id()
