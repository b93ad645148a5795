"""Fixtures of the preview tests: the corpus, one warm service for the session, image helpers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from docsync_cli.preview import PreviewService
from docsync_cli.preview.office import find_soffice, find_uno_python
from tests.corpus import CORPUS, Corpus


def office_available() -> bool:
    return find_soffice() is not None and find_uno_python() is not None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_soffice") and not office_available():
        pytest.skip("LibreOffice (soffice) with python3-uno is not installed")


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return CORPUS


@pytest.fixture(scope="session")
def service() -> Iterator[PreviewService]:
    with PreviewService() as svc:
        yield svc
