"""ARCHITECTURE.md's module tree is a contract, not a picture: every module of the package has its line, every
line names a module that exists, and each module imports only the docsync modules its line allows (``model`` and
``errors`` are open to all). A new import across the layers has to be written into the architecture first."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import docsync_cli

from .test_import_layers import imports_in

PACKAGE = Path(docsync_cli.__file__).parent
DOC = PACKAGE.parent / "ARCHITECTURE.md"
OPEN_TO_ALL = {"model", "errors"}
OWN_WORLDS = ("sandbox", "preview")  # their lines describe the whole folder; see test_the_worlds_of_their_own
ENTRY = re.compile(r"^(?P<indent> {2}| {4})(?P<name>[a-z_]+(?:\.py|/))\s+(?P<text>.*)$")


def documented() -> dict[str, str | None]:
    """module (dotted, relative to the package) → what its line allows it to import (None: no list given)."""
    block = DOC.read_text(encoding="utf-8").split("```\ndocsync_cli/\n", 1)[1].split("```", 1)[0]
    entries: dict[str, str] = {}
    folder = ""
    current: str | None = None
    for line in block.splitlines():
        match = ENTRY.match(line)
        if match:
            name = match["name"]
            if len(match["indent"]) == 2:
                folder = name[:-1] if name.endswith("/") else ""
                current = name[:-1] if name.endswith("/") else name.removesuffix(".py")
            else:
                stem = name.removesuffix(".py")
                current = folder if stem == "__init__" else f"{folder}.{stem}"
            entries[current] = match["text"]
        elif current is not None and line.strip():
            entries[current] += " " + line.strip()
    return {module: text.split(" · ", 1)[1] if " · " in text else None for module, text in entries.items()}


def allowed(text: str) -> set[str]:
    text = re.sub(r"\([^)]*\)", "", text)
    if text.strip() == "nothing":
        return set()
    return {part.strip() for part in text.split(",") if part.strip()}


def actual_modules() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in OWN_WORLDS or parts[0] == "__pycache__" or parts in (("__init__",), ("__main__",)):
            continue
        found.append(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return found


def imports_of(module: str) -> set[str]:
    """The docsync modules ``module`` imports (top level or inside functions), as dotted names without the package."""
    path = PACKAGE.joinpath(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return {name.removeprefix("docsync_cli.") for name in imports_in(path)
            if name.startswith("docsync_cli.") and name != "docsync_cli.__version__"}


def covered(name: str, allowance: set[str], module: str) -> bool:
    if name.split(".")[0] in OPEN_TO_ALL or name == module or name.startswith(module + "."):
        return True
    for allowed_name in allowance:
        prefix = allowed_name.removesuffix(".*")
        if name == prefix or name.startswith(prefix + "."):
            return True
    return False


def test_every_module_has_its_line_and_every_line_its_module() -> None:
    lines = documented()
    modules = set(actual_modules())
    assert sorted(modules - set(lines)) == [], "modules ARCHITECTURE.md does not describe"
    assert sorted(set(lines) - modules - set(OWN_WORLDS)) == [], "lines for modules that do not exist"


@pytest.mark.parametrize("module", actual_modules())
def test_each_module_imports_only_what_its_line_allows(module: str) -> None:
    text = documented().get(module)
    if text is None:
        assert PACKAGE.joinpath(*module.split(".")).is_dir(), f"{module}'s line names no imports (· ...)"
        return
    allowance = allowed(text)
    beyond = sorted(name for name in imports_of(module) if not covered(name, allowance, module))
    assert beyond == [], f"{module} imports {beyond}; ARCHITECTURE.md allows {sorted(allowance)}"


def test_the_worlds_of_their_own() -> None:
    # preview/ imports nothing of docsync outside itself (it runs in killable children); sandbox/ (the emulators)
    # stands apart from the clients it emulates, and may only borrow the field definitions and the corpus
    for path in sorted((PACKAGE / "preview").rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        outside = {name for name in imports_of(module) if not name.startswith("preview")}
        assert {name.split(".")[0] for name in outside} <= OPEN_TO_ALL, (module, outside)
    for path in sorted((PACKAGE / "sandbox").rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        outside = {name for name in imports_of(module) if not name.startswith("sandbox")}
        assert not {name.split(".")[0] for name in outside} & {"engine", "reconcile", "upload", "plan", "xai",
                                                                 "transport", "services"}, (module, outside)


def test_the_check_reads_the_doc_and_can_fail() -> None:
    lines = documented()
    assert lines["plan"] is not None and allowed(lines["plan"]) <= {"model"}
    assert "httpx" not in str(imports_of("plan")) and "crm.client" in imports_of("engine")
    assert not covered("engine", allowed(lines["reports.status"] or ""), "reports.status")


MAX_LINES = 420  # issue 14: "no module outside sandbox/ over ~400 lines"; past this, split it by job first


def test_no_module_outside_the_emulators_outgrows_one_job() -> None:
    sizes = {path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py") if "sandbox" not in path.relative_to(PACKAGE).parts}
    assert len(sizes) > 50
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}
