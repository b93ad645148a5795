"""The docs prove their promises by naming tests (README's promises table, ARCHITECTURE.md, docs/, bench/README.md):
every test file and test function they name must exist, so a moved or renamed test cannot leave a promise citing
nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "bench" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]
# `tests/e2e/test_x.py::test_y`, `tests/unit/test_x.py`, and `::test_z` continuing the last file named on the line
CITATION = re.compile(r"`((?:tests|bench)/[\w/]+\.py)?(?:::(\w+))?`")


def citations() -> list[tuple[str, str, str | None]]:
    """(doc:line, file, test name or None) for every test the docs cite."""
    found: list[tuple[str, str, str | None]] = []
    for doc in DOCS:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), start=1):
            last: str | None = None
            for match in CITATION.finditer(line):
                path, name = match.group(1), match.group(2)
                if path is None and name is None:
                    continue
                last = path or last
                if last is None:
                    continue
                found.append((f"{doc.name}:{number}", last, name))
    return found


def test_the_docs_cite_tests_at_all() -> None:
    cited = citations()
    assert len(cited) > 20
    assert any(name is not None for _, _, name in cited)


@pytest.mark.parametrize(("where", "path", "name"), citations(), ids=lambda value: str(value))
def test_every_cited_test_exists(where: str, path: str, name: str | None) -> None:
    source = ROOT / path
    assert source.is_file(), f"{where} cites {path}, which does not exist"
    if name is not None:
        text = source.read_text(encoding="utf-8")
        assert re.search(rf"^\s*(?:async )?(?:def|class) {re.escape(name)}\b", text, re.M), \
            f"{where} cites {path}::{name}, which is not defined there"
