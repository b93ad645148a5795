"""The render child: ``python -m docsync_cli.preview.worker``, one long-lived process per pool slot.

It caps its own address space (``RLIMIT_AS``) once, and before each job its CPU time
(``RLIMIT_CPU``: the time it has used plus the job's timeout), then serves requests from its
parent over stdin/stdout until stdin closes::

    parent -> child   one JSON line: {"kind": "pdf", "path": "...", "ext": "pdf", "office": false,
                                      "limits": {...}}
    child -> parent   one JSON line: {"ok": true, "size": N} followed by N bytes of WebP
                      or             {"ok": false, "code": "corrupt", "reason": "..."}
    with "op": "text" the N bytes are the UTF-8 text at the start of the document (:mod:`.textual`)

Stray output of C libraries goes to stderr: the protocol has a private copy of fd 1.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any, BinaryIO

from docsync_cli.errors import PreviewError
from docsync_cli.preview.icon import render_icon
from docsync_cli.preview.image import render_image
from docsync_cli.preview.limits import PreviewLimits
from docsync_cli.preview.output import check_webp, encode_webp, is_blank
from docsync_cli.preview.pdf import render_pdf
from docsync_cli.preview.text import render_text
from docsync_cli.preview.textual import first_text


def render_request(req: dict[str, Any]) -> bytes:
    """Render one request in this process (the child calls it; tests may too)."""
    limits = PreviewLimits.from_dict(req["limits"])
    kind = req["kind"]
    path = Path(req["path"])
    if req.get("op") == "text":  # the findability probe's text, not a picture (UTF-8 bytes)
        return first_text(kind, path).encode("utf-8")
    if kind == "pdf":
        image = render_pdf(path, limits)
        if req.get("office") and is_blank(image):
            # LibreOffice "succeeds" with an empty page when it did not understand the file.
            raise PreviewError("the converted document's first page is blank", "blank_output")
    elif kind == "image":
        image = render_image(path, limits)
    elif kind == "text":
        image = render_text(path, limits)
    elif kind == "icon":
        image = render_icon(str(req.get("ext", "")), limits)
    else:
        raise PreviewError(f"no renderer for kind {kind!r}", "unsupported")
    data = encode_webp(image, limits)
    check_webp(data, limits)
    return data


def _set_limits(limits: PreviewLimits) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = limits.memory_bytes if hard == resource.RLIM_INFINITY else min(limits.memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def _cpu_budget(timeout: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(used + timeout) + 2
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _reply(out: BinaryIO, header: dict[str, Any], payload: bytes = b"") -> None:
    out.write(json.dumps(header).encode() + b"\n" + payload)
    out.flush()


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    limited = False
    for line in inp:
        req = json.loads(line)
        limits = PreviewLimits.from_dict(req["limits"])
        if not limited:
            _set_limits(limits)
            limited = True
        _cpu_budget(limits.timeout_seconds)
        try:
            data = render_request(req)
        except PreviewError as err:
            _reply(out, {"ok": False, "code": err.code, "reason": str(err)})
        except MemoryError:
            _reply(out, {"ok": False, "code": "too_large", "reason": "out of memory while rendering"})
        except Exception as err:  # noqa: BLE001 - any renderer bug is one failed preview, not a dead child
            _reply(out, {"ok": False, "code": "preview_failed", "reason": f"{type(err).__name__}: {err}"})
        else:
            _reply(out, {"ok": True, "size": len(data)}, data)


def main() -> int:
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed by libraries lands on stderr, not in the protocol
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, proto_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
