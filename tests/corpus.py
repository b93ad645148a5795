"""The test corpus: the demo corpus shipped in the package (``docsync_sandbox/corpus``, one copy for the demo,
the sandbox and the tests) plus the few files only tests need (``tests/data/corpus``)."""

from __future__ import annotations

from pathlib import Path

from docsync_sandbox.seed import corpus_dir

SHIPPED = corpus_dir()
TEST_ONLY = Path(__file__).resolve().parent / "data" / "corpus"


class Corpus:
    """``corpus / name`` is the corpus file ``name``, wherever it lives; a name in neither folder is an error."""

    def __truediv__(self, name: str) -> Path:
        for folder in (SHIPPED, TEST_ONLY):
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(f"no corpus file {name!r} in {SHIPPED} or {TEST_ONLY}")


CORPUS = Corpus()
