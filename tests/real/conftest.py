"""The real-EspoCRM suite: docsync end to end against a running EspoCRM (xAI stays the emulator).

Runs when the variables in :data:`tests.real.realcrm.NEEDED` name a CRM (``scripts/test.sh`` sets them from the
fixture in ``../shared/real-espocrm``); otherwise the whole folder is skipped with one line saying why."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_sandbox.xai import XaiEmulator
from tests.real.proxy import CountingProxy
from tests.real.realcrm import (
    SKIP_REASON,
    TAG,
    Admin,
    Docsync,
    RealCrm,
    counting_proxy,
    delete_foreign_documents,
    foreign_documents,
    sweep_leftovers,
    xai_emulator,
)

_CRM = RealCrm.from_environ(os.environ)
_HERE = Path(__file__).parent
_SKIPPED = pytest.StashKey[int]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without a CRM the folder's tests are left out, and :func:`pytest_terminal_summary` says why in one line."""
    if _CRM is not None:
        return
    mine = [item for item in items if _HERE in item.path.parents]
    if mine:
        items[:] = [item for item in items if _HERE not in item.path.parents]
        config.hook.pytest_deselected(items=mine)
        config.stash[_SKIPPED] = len(mine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED, 0)
    if skipped:
        terminalreporter.write_line(f"SKIPPED tests/real ({skipped} tests): {SKIP_REASON}", yellow=True)


@pytest.fixture(scope="session")
def real() -> Iterator[RealCrm]:
    """The CRM, after deleting what an earlier session left; refuses a CRM holding documents it did not make (on the
    instance ``scripts/test.sh`` started for this run, ``REAL_ESPOCRM_DIR``, it deletes them: tests/contract's)."""
    assert _CRM is not None
    admin = Admin(_CRM)
    try:
        sweep_leftovers(admin)
        if _CRM.instance_dir is not None:  # the throwaway instance scripts/test.sh started: other suites' documents go
            delete_foreign_documents(admin)
        others = foreign_documents(admin)
    finally:
        admin.close()
    if others:
        pytest.fail(f"{_CRM.url} holds {others} Documents the real suite did not make: its syncs would write "
                    f"docsync's fields on them. Point the suite at a CRM without documents (README: 'Test against "
                    f"your own EspoCRM before going live'); its own records are named '{TAG} …'.", pytrace=False)
    yield _CRM


@pytest.fixture
def admin(real: RealCrm) -> Iterator[Admin]:
    """An admin making this test's records; everything it made is deleted after the test."""
    person = Admin(real)
    try:
        yield person
    finally:
        person.learn_fields()
        person.cleanup()
        person.close()


@pytest.fixture
def xai() -> Iterator[XaiEmulator]:
    with xai_emulator() as emulator:
        yield emulator


@pytest.fixture
def proxy(real: RealCrm) -> Iterator[CountingProxy]:
    with counting_proxy(real) as forwarding:
        yield forwarding


@pytest.fixture
def docsync(real: RealCrm, admin: Admin, xai: XaiEmulator, proxy: CountingProxy, tmp_path: Path) -> Docsync:
    """docsync as the API-key user, with its own state directory, through the counting proxy."""
    return Docsync(real, xai, tmp_path / "state", proxy, extra=admin.settings())
