"""ARCHITECTURE.md's module list is a contract, not a picture: every module of the package has its line, and every
line names a module that exists. The import rules themselves are in ``test_import_layers.py``."""

from __future__ import annotations

import re
from pathlib import Path

import docsync_cli

PACKAGE = Path(docsync_cli.__file__).parent
DOC = PACKAGE.parent / "ARCHITECTURE.md"
OWN_WORLDS = ("preview",)  # its line describes the whole folder
ENTRY = re.compile(r"^(?P<indent> {2}| {4})(?P<name>[a-z_]+(?:\.py|/))(?:\s+(?P<text>.*))?$")


def documented(text: str) -> set[str]:
    """The modules (dotted, relative to the package) the module list of ``text`` has a line for."""
    block = text.split("## Modules", 1)[1].split("```\ndocsync_cli/\n", 1)[1].split("```", 1)[0]
    found: set[str] = set()
    folder = ""
    for line in block.splitlines():
        match = ENTRY.match(line)
        if not match:
            continue
        name = match["name"]
        if len(match["indent"]) == 2:
            folder = name[:-1] if name.endswith("/") else ""
            found.add(name[:-1] if name.endswith("/") else name.removesuffix(".py"))
        else:
            stem = name.removesuffix(".py")
            found.add(folder if stem == "__init__" else f"{folder}.{stem}")
    return found


def actual_modules() -> set[str]:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] in OWN_WORLDS or "__pycache__" in parts or parts in (("__init__",), ("__main__",)):
            continue
        if parts[-1] == "__init__" and path.stat().st_size == 0:
            continue  # an empty package marker; its folder's modules have their lines
        found.add(".".join(parts[:-1]) if parts[-1] == "__init__" else ".".join(parts))
    return found


def test_every_module_has_its_line_and_every_line_its_module() -> None:
    lines = documented(DOC.read_text(encoding="utf-8"))
    modules = actual_modules()
    assert sorted(modules - lines) == [], "modules ARCHITECTURE.md does not describe"
    folders = {module.split(".")[0] for module in modules} | set(OWN_WORLDS)
    assert sorted(lines - modules - folders) == [], "lines for modules that do not exist"


def test_the_check_reads_the_doc_and_can_fail() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert {"sync.plan", "crm.queries", "cli.app", "errors"} <= documented(text)
    assert "sync.plan" not in documented(text.replace("    plan.py ", "    gone.py "))


def test_every_folder_is_in_the_layer_table() -> None:
    table = DOC.read_text(encoding="utf-8").split("## Folders and layers", 1)[1].split("## Modules", 1)[0]
    folders = {path.relative_to(PACKAGE).parts[0] for path in PACKAGE.rglob("*.py")
               if len(path.relative_to(PACKAGE).parts) > 1 and "__pycache__" not in path.parts}
    assert {folder for folder in folders if f"  {folder}/ " not in table} == set()
