"""A tiny LibreOffice converter kept warm: run by the Python that has ``uno`` (Debian's python3-uno).

Standalone on purpose (it imports nothing from docsync: Debian's /usr/bin/python3 runs it)::

    /usr/bin/python3 uno_bridge.py SOFFICE PROFILE_DIR MEMORY_BYTES

It starts one headless ``soffice`` listening on a private pipe, connects to it through UNO, prints
``{"ready": true}`` and then converts on request, one JSON line each way::

    in:  {"src": "/tmp/x/in.docx", "dst": "/tmp/x/out.pdf"}
    out: {"ok": true} | {"ok": false, "code": "corrupt", "reason": "...", "fatal": false}

Only the first page is exported (``PageRange=1``), macros never run, links are never updated. On a
fatal error (soffice gone) it answers ``fatal`` and exits; the parent starts a new bridge. The parent
kills the whole process group (bridge and soffice) on a timeout.
"""
# mypy: ignore-errors

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
import uuid

import uno  # type: ignore[import-not-found]
from com.sun.star.beans import PropertyValue  # type: ignore[import-not-found]
from com.sun.star.connection import NoConnectException  # type: ignore[import-not-found]

_NEVER_EXECUTE = 0  # com.sun.star.document.MacroExecMode.NEVER_EXECUTE
_NO_UPDATE = 0  # com.sun.star.document.UpdateDocMode.NO_UPDATE
_FILTERS = (
    ("com.sun.star.text.GenericTextDocument", "writer_pdf_Export"),
    ("com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export"),
    ("com.sun.star.presentation.PresentationDocument", "impress_pdf_Export"),
    ("com.sun.star.drawing.DrawingDocument", "draw_pdf_Export"),
)


def props(**kwargs):
    out = []
    for key, value in kwargs.items():
        prop = PropertyValue()
        prop.Name = key
        prop.Value = value
        out.append(prop)
    return tuple(out)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def office_argv(soffice, profile, pipe):
    """soffice's command line: everything it writes lives under our private directory (``profile``'s parent).

    ``UserInstallation`` is the private profile. ``UNO_SHARED_PACKAGES_CACHE`` moves the one *shared* directory
    LibreOffice writes on its first start (``share/uno_packages/cache``, on Debian a symlink into
    ``/var/spool/libreoffice``) into the same private place: created there under our umask 077, a shared cache
    would be unreadable for every other user's LibreOffice (it aborts with a DeploymentException).
    """
    private = os.path.dirname(os.path.abspath(profile))
    shared_cache = os.path.join(private, "uno_shared_packages_cache")
    return [soffice, "--headless", "--invisible", "--nologo", "--norestore", "--nodefault",
            "--nolockcheck", "--nofirststartwizard", "-env:UserInstallation=" + uno.systemPathToFileUrl(profile),
            "-env:UNO_SHARED_PACKAGES_CACHE=" + uno.systemPathToFileUrl(shared_cache),
            f"--accept=pipe,name={pipe};urp;StarOffice.ComponentContext"]


def start_office(soffice, profile, memory):
    pipe = "docsync-" + uuid.uuid4().hex

    def limit():
        if memory > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    proc = subprocess.Popen(
        office_argv(soffice, profile, pipe),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=limit,
    )
    local = uno.getComponentContext()
    resolver = local.ServiceManager.createInstanceWithContext("com.sun.star.bridge.UnoUrlResolver", local)
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"soffice exited with status {proc.returncode} at start")
        try:
            ctx = resolver.resolve(f"uno:pipe,name={pipe};urp;StarOffice.ComponentContext")
            break
        except NoConnectException:
            time.sleep(0.05)
    desktop = ctx.ServiceManager.createInstanceWithContext("com.sun.star.frame.Desktop", ctx)
    return proc, desktop


def convert(desktop, src, dst):
    doc = desktop.loadComponentFromURL(
        uno.systemPathToFileUrl(src), "_blank", 0,
        props(Hidden=True, ReadOnly=True, MacroExecutionMode=_NEVER_EXECUTE, UpdateDocMode=_NO_UPDATE,
              Silent=True),
    )
    if doc is None:
        return {"ok": False, "code": "corrupt", "reason": "LibreOffice cannot open the document"}
    try:
        filt = None
        for service, name in _FILTERS:
            if doc.supportsService(service):
                filt = name
                break
        if filt is None:
            return {"ok": False, "code": "unsupported", "reason": "LibreOffice opened it as no known document"}
        data = uno.Any("[]com.sun.star.beans.PropertyValue", props(PageRange="1"))
        doc.storeToURL(uno.systemPathToFileUrl(dst), props(FilterName=filt, FilterData=data))
    finally:
        try:
            doc.close(True)
        except Exception:  # noqa: BLE001
            doc.dispose()
    return {"ok": True}


def main():
    soffice, profile, memory = sys.argv[1], sys.argv[2], int(sys.argv[3])
    proc, desktop = start_office(soffice, profile, memory)
    try:
        serve(proc, desktop)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return 0


def serve(proc, desktop):
    emit({"ready": True, "soffice_pid": proc.pid})
    for line in sys.stdin:
        req = json.loads(line)
        try:
            emit(convert(desktop, req["src"], req["dst"]))
        except Exception as err:  # noqa: BLE001
            fatal = proc.poll() is not None or type(err).__name__ in ("DisposedException", "RuntimeException")
            code = "preview_failed" if fatal else "corrupt"
            emit({"ok": False, "code": code, "reason": f"{type(err).__name__}: {err}", "fatal": fatal})
            if fatal:
                break
    with contextlib.suppress(Exception):
        desktop.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
