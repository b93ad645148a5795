"""The walk of one document: how a changed document travels through docsync's modules in a plain ``sync``.

Runs ``docsync sync`` in-process against the emulators (one document linked to one account; the file replaced
after a first sync, so the second run uploads, joins, writes back and retires) and traces, in the worker thread
that handles the document, every call from one docsync module into another while ``process`` runs:

* **stops** — calls that cross into another docsync module (a call inside a module is not a stop);
* **modules** — the distinct modules those stops reach;
* **climbs** — stops into a module that is already on the call stack below (the walk goes back up);
* **planner** — calls from the per-document step module into the planner's functions (decisions between I/O).

Works on this tree and on the flat tree before issue 23 (``docsync_cli.reconcile``), so the figures can be
compared: ``python bench/bench_walk.py`` in each checkout. No timing: it counts.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PACKAGE = str(ROOT / "docsync_cli")

try:  # this tree
    seed = importlib.import_module("docsync_sandbox.seed")
    STEP, PLANNERS = "sync.step", {"sync.plan", "sync.replan", "sync.plan_feeds"}
    STEP_CLASS = importlib.import_module("docsync_cli.sync.step").DocumentReconciler
    CLI = importlib.import_module("docsync_cli.cli.app")
except ImportError:  # before issue 23
    seed = importlib.import_module("docsync_cli.sandbox.seed")
    STEP, PLANNERS = "reconcile", {"plan", "plan_changes"}
    STEP_CLASS = importlib.import_module("docsync_cli.reconcile").DocumentReconciler
    CLI = importlib.import_module("docsync_cli.cli")


def module_of(frame: FrameType) -> str | None:
    path = frame.f_code.co_filename
    if not path.startswith(PACKAGE):
        return None
    rel = Path(path).relative_to(PACKAGE).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
    if parts and parts[0] == "sandbox":
        return None  # the old tree's in-package emulators answer in their own threads: not part of the walk
    return ".".join(parts)


class Walk:
    def __init__(self) -> None:
        self.stops: list[tuple[str, str]] = []
        self.climbs = 0
        self.planner = 0
        self.active = False
        self.stack: list[str] = []

    def profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event not in ("call", "return"):
            return
        module = module_of(frame)
        if module is None:
            return
        if event == "call" and frame.f_code.co_name == "process" and module == STEP:
            self.active = True
            self.stack = [module]
            return
        if not self.active:
            return
        if event == "return":
            if frame.f_code.co_name == "process" and module == STEP and len(self.stack) == 1:
                self.active = False
            elif len(self.stack) > 1:
                self.stack.pop()
            return
        caller = self.stack[-1]
        if module != caller:
            self.stops.append((caller, module))
            if module in self.stack:
                self.climbs += 1
            if caller == STEP and module in PLANNERS and "." not in frame.f_code.co_qualname:
                self.planner += 1  # a planner function (not a method of a value it returned)
        self.stack.append(module)


def main() -> None:
    corpus = ROOT / "docsync_sandbox" / "corpus"
    if not corpus.is_dir():
        corpus = ROOT / "docsync_cli" / "sandbox" / "corpus"
    walk = Walk()
    with seed.Sandbox(processing_delay=0.0) as box, tempfile.TemporaryDirectory() as tmp:
        collection = box.xai.create_collection("Mandant")
        account = box.espo.add_account("Mandant", collection)
        doc = box.espo.add_document("Vertrag", (corpus / "minimal-document.pdf").read_bytes(), "vertrag.pdf",
                                    accounts=[account])
        os.environ.update(box.environment(Path(tmp) / "state"))

        def sync() -> None:
            with contextlib.suppress(SystemExit):
                CLI.app(["sync", "--id", doc, "--no-preview"], standalone_mode=False)

        sync()
        box.espo.replace_file(doc, (corpus / "libreoffice-writer.pdf").read_bytes(), "vertrag-v2.pdf")
        threading.setprofile(walk.profile)
        sys.setprofile(walk.profile)
        try:
            sync()
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    modules = sorted({callee for _, callee in walk.stops})
    direct = [callee for caller, callee in walk.stops if caller == STEP]
    print(f"all crossings: {len(walk.stops)} into {len(modules)} modules; climbs back up: {walk.climbs}")
    print(f"calls out of the step: {len(direct)} into {len(set(direct))} modules; "
          f"planner consulted from the step: {walk.planner}")
    print("step calls:", ", ".join(f"{name} x{direct.count(name)}" for name in sorted(set(direct))))


if __name__ == "__main__":
    main()
