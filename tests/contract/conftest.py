"""The EspoCRM contract suite runs every test against each backend: the emulator always, a real EspoCRM when the
environment names one (``ESPOCRM_URL``, ``ESPOCRM_API_KEY``, ``ESPOCRM_ADMIN_USER``, ``ESPOCRM_ADMIN_PASSWORD``, as
``env.sh`` of ``../shared/real-espocrm`` exports them). Without them the real parametrisation is not generated and
``test_backends.py::test_the_real_backend_is_configured`` skips once, saying why."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docsync_sandbox.espocrm import EspoEmulator
from tests.contract.backends import API_KEY, Backend, EmulatorBackend, RealBackend, real_missing


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        names = ["emulator"] if real_missing() else ["emulator", "real"]
        metafunc.parametrize("backend", names, indirect=True)


@pytest.fixture(scope="session")
def emulator_backend() -> Iterator[EmulatorBackend]:
    # the fixture role's settings: GlobalStream on, Document.status read-only (../shared/real-espocrm/configure.py)
    with EspoEmulator(api_key=API_KEY, global_stream=True, read_only_fields={"status"}) as emulator:
        backend = EmulatorBackend(emulator)
        yield backend
        backend.close()


@pytest.fixture(scope="session")
def real_backend() -> Iterator[RealBackend]:
    backend = RealBackend()
    yield backend
    backend.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "real":
        real: RealBackend = request.getfixturevalue("real_backend")
        return real
    emulated: EmulatorBackend = request.getfixturevalue("emulator_backend")
    emulated.reset()
    return emulated
