"""``reports/explain.py`` over the emulators: the lines ``docsync explain`` writes (to a ``reports.shared.Lines``)
for a document no run has touched yet, and the usage error for one EspoCRM does not have."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.config import Settings, load_settings
from docsync_cli.errors import UsageError
from docsync_cli.reports.explain import explain_document
from docsync_sandbox.seed import Sandbox, SeededFirm, corpus_dir


class Collected:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str | None]] = []

    def line(self, text: str, style: str | None = None) -> None:
        self.lines.append((text, style))

    def texts(self) -> list[str]:
        return [text for text, _ in self.lines]


@pytest.fixture
def firm(tmp_path: Path) -> Iterator[tuple[Settings, SeededFirm]]:
    with Sandbox(processing_delay=0.0) as sandbox:
        seeded = sandbox.seed_firm(corpus_dir())
        yield load_settings(None, env=sandbox.environment(tmp_path / "state")), seeded


def test_a_new_document_is_explained_without_touching_anything(firm: tuple[Settings, SeededFirm]) -> None:
    settings, seeded = firm
    doc_id = seeded.documents["Mandatsvertrag Müller"]
    out = Collected()
    explain_document(settings, doc_id, out, probe=False)
    texts = out.texts()
    assert out.lines[0] == (f"Document {doc_id} 'Mandatsvertrag Müller'", "bold")
    assert "Required collections:" in texts
    assert f"  {seeded.collections['Müller GmbH']}  (link accounts.xaiCollectionId)" in texts
    assert "  no xAI file recorded in the CRM" in texts
    assert "Local record: none on this host (no run here has touched the document yet)" in texts
    assert out.lines[-1] == ("Next run: would sync it: new", "bold")
    assert not any(text.startswith("Findability") for text in texts)  # probe=False
    assert not settings.state_dir.exists()  # read-only: nothing created


def test_an_unknown_document_is_a_usage_error(firm: tuple[Settings, SeededFirm]) -> None:
    settings, _ = firm
    out = Collected()
    with pytest.raises(UsageError, match="EspoCRM has no Document with id 'nope'"):
        explain_document(settings, "nope", out, probe=False)
    assert out.lines == []
