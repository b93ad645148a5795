"""Hostile and broken files: each fails with the right PreviewError code, quickly, and leaves no
child process behind."""

from __future__ import annotations

import io
import os
import signal
import struct
import sys
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from PIL import Image

from docsync_cli.errors import PreviewError
from docsync_cli.preview import PreviewLimits, PreviewService, child, office
from tests.corpus import Corpus
from tests.preview.preview_helpers import decode, own_children


def code_of(svc: PreviewService, path: Path, name: str | None = None) -> str:
    with pytest.raises(PreviewError) as info:
        svc.render(path, name or path.name)
    return info.value.code


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's shape)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(1000)))
            + chunk(b"IEND", b""))


def huge_page_pdf(side: float = 14400) -> bytes:
    """A one-page PDF with a 200x200 inch MediaBox, mostly filled with blue, written by hand."""
    content = f"0 0 1 rg 100 100 {side - 200:g} {side / 2:g} re f".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        f"<</Type/Page/Parent 2 0 R/MediaBox[0 0 {side:g} {side:g}]/Contents 4 0 R>>".encode(),
        b"<</Length %d>>stream\n" % len(content) + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def lone_service() -> Iterator[PreviewService]:
    """A service of its own, checked to leave no child alive or unreaped after closing."""
    before = {p.pid for p in own_children()}
    svc = PreviewService(PreviewLimits(timeout_seconds=3.0), workers=1)
    try:
        yield svc
    finally:
        svc.close()
    left = [p for p in own_children() if p.pid not in before]
    assert not left, f"children left behind: {left}"


def test_encrypted_pdf(service: PreviewService, corpus: Corpus) -> None:
    assert code_of(service, corpus / "encrypted-password.pdf") == "encrypted"


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.7, 0.95])
def test_truncated_pdf(service: PreviewService, corpus: Corpus, tmp_path: Path, fraction: float) -> None:
    data = (corpus / "pdflatex-4-pages.pdf").read_bytes()
    target = tmp_path / "cut.pdf"
    target.write_bytes(data[: int(len(data) * fraction)])
    assert code_of(service, target) == "corrupt"


def test_truncated_jpeg(service: PreviewService, corpus: Corpus, tmp_path: Path) -> None:
    data = (corpus / "exif-Landscape_1.jpg").read_bytes()
    target = tmp_path / "cut.jpg"
    target.write_bytes(data[:2000])
    assert code_of(service, target) == "corrupt"


@pytest.mark.parametrize("name", ["empty.pdf", "empty.docx", "empty.jpg", "empty.txt", "empty"])
def test_zero_byte_file(service: PreviewService, tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    assert code_of(service, tmp_path / name) == "corrupt"


@pytest.mark.parametrize("name", ["random.docx", "random.pdf", "random.png", "random.xlsx"])
def test_random_bytes_with_a_document_name(service: PreviewService, tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(os.urandom(20_000))
    assert code_of(service, tmp_path / name) == "corrupt"


def test_zip_of_garbage_named_docx(service: PreviewService, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("word/document.xml", os.urandom(3000))
        zf.writestr("junk.bin", os.urandom(3000))
    (tmp_path / "garbage.docx").write_bytes(buf.getvalue())
    assert code_of(service, tmp_path / "garbage.docx") == "corrupt"


@pytest.mark.needs_soffice
def test_ooxml_shaped_zip_of_garbage(service: PreviewService, tmp_path: Path) -> None:
    """Looks like a .docx package to the sniffer; LibreOffice must then refuse it, not "succeed"."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("[Content_Types].xml", os.urandom(500))
        zf.writestr("word/document.xml", os.urandom(3000))
    (tmp_path / "garbage.docx").write_bytes(buf.getvalue())
    assert code_of(service, tmp_path / "garbage.docx") in {"corrupt", "blank_output"}


@pytest.mark.needs_soffice
def test_office_blank_output_is_an_error(service: PreviewService, tmp_path: Path) -> None:
    (tmp_path / "empty.rtf").write_bytes(b"{\\rtf1\\ansi }")
    assert code_of(service, tmp_path / "empty.rtf") == "blank_output"


def test_blank_pdf_page_is_kept(service: PreviewService, tmp_path: Path) -> None:
    """A real PDF whose first page is white is a true picture, not an error (see package docs)."""
    pdf = huge_page_pdf(600).replace(b"0 0 1 rg", b"1 1 1 rg")
    (tmp_path / "white.pdf").write_bytes(pdf)
    img = decode(service.render(tmp_path / "white.pdf", "white.pdf"))
    assert img.size == (600, 600)


@pytest.mark.parametrize(("width", "height"), [(30000, 30000), (8000, 7000), (100_000, 100_000)])
def test_decompression_bomb_png(service: PreviewService, tmp_path: Path, width: int, height: int) -> None:
    (tmp_path / "bomb.png").write_bytes(png_claiming(width, height))
    assert code_of(service, tmp_path / "bomb.png") == "too_large"


def test_bomb_threshold_follows_the_limits(tmp_path: Path) -> None:
    Image.new("RGB", (1200, 1000), "white").save(tmp_path / "big.png")
    with PreviewService(PreviewLimits(max_pixels=1_000_000), office=False, workers=1) as svc:
        assert code_of(svc, tmp_path / "big.png") == "too_large"


def test_huge_page_pdf_renders_small(service: PreviewService, tmp_path: Path) -> None:
    (tmp_path / "huge.pdf").write_bytes(huge_page_pdf())
    img = decode(service.render(tmp_path / "huge.pdf", "huge.pdf"))
    assert img.size == (600, 600)
    r, _g, b = img.getpixel((300, 450))  # type: ignore[misc]
    assert b > 200 and r < 60  # the blue band is drawn


def test_huge_page_under_a_small_memory_cap(tmp_path: Path) -> None:
    """Rendering is scaled from the page size, so even a 256 MB address-space cap is plenty."""
    (tmp_path / "huge.pdf").write_bytes(huge_page_pdf())
    with PreviewService(PreviewLimits(memory_bytes=256 << 20), office=False, workers=1) as svc:
        assert decode(svc.render(tmp_path / "huge.pdf", "huge.pdf")).size == (600, 600)


def test_memory_cap_stops_a_greedy_render(tmp_path: Path) -> None:
    Image.new("RGB", (7000, 7000), (200, 10, 10)).save(tmp_path / "big.png")  # 49 Mpx, under the bomb cap
    with PreviewService(PreviewLimits(memory_bytes=256 << 20), office=False, workers=1) as svc:
        assert code_of(svc, tmp_path / "big.png") in {"too_large", "preview_failed"}
        # the worker survives (or is replaced) and renders the next document
        Image.new("RGB", (60, 40), "blue").save(tmp_path / "small.png")
        assert decode(svc.render(tmp_path / "small.png", "small.png")).size == (60, 40)


HANGING_WORKER = """
import json, subprocess, sys, time
from pathlib import Path
child = subprocess.Popen(["sleep", "300"])  # a grandchild in the same process group
Path(sys.argv[1]).write_text(str(child.pid))
sys.stdin.readline()  # the warm-up request: answered, so the test knows the grandchild exists
sys.stdout.write(json.dumps({"ok": False, "code": "corrupt", "reason": "warm"}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    time.sleep(300)
"""


def test_hanging_renderer_is_killed(lone_service: PreviewService, corpus: Corpus, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: a warm-up request with a generous deadline proves the worker (and its grandchild) runs
    before the short deadline is armed, and the grandchild's death is awaited instead of sampled once."""
    script = tmp_path / "hang.py"
    script.write_text(HANGING_WORKER)
    pid_file = tmp_path / "grandchild.pid"
    monkeypatch.setattr(child, "worker_argv", lambda: [sys.executable, str(script), str(pid_file)])
    short_limits = lone_service.limits
    lone_service.limits = PreviewLimits(timeout_seconds=120.0)
    assert code_of(lone_service, corpus / "minimal-document.pdf") == "corrupt"  # the warm-up answer
    grandchild = psutil.Process(int(pid_file.read_text()))
    lone_service.limits = short_limits
    start = time.monotonic()
    assert code_of(lone_service, corpus / "minimal-document.pdf") == "timeout"
    elapsed = time.monotonic() - start
    assert elapsed < short_limits.timeout_seconds + 5.0
    assert lone_service.child_pids() == []
    grandchild_gone(grandchild)
    # the next document gets a fresh, working worker
    monkeypatch.undo()
    assert decode(lone_service.render(corpus / "minimal-document.pdf", "m.pdf")).width > 16


def grandchild_gone(proc: psutil.Process) -> None:
    """SIGKILL is delivered asynchronously and an orphan is reaped by init: wait (bounded) for either."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    pytest.fail(f"grandchild {proc.pid} survived the kill")


CRASHING_WORKER = """
import os, sys
for line in sys.stdin:
    os._exit(3)
"""


def test_crashing_renderer_is_reaped_and_replaced(lone_service: PreviewService, corpus: Corpus, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "crash.py"
    script.write_text(CRASHING_WORKER)
    monkeypatch.setattr(child, "worker_argv", lambda: [sys.executable, str(script)])
    assert code_of(lone_service, corpus / "minimal-document.pdf") == "preview_failed"
    assert not [p for p in own_children() if p.status() == psutil.STATUS_ZOMBIE]
    monkeypatch.undo()
    assert decode(lone_service.render(corpus / "minimal-document.pdf", "m.pdf")).width > 16


SIGNALLED_WORKER = """
import os, signal, sys
for line in sys.stdin:
    signal.signal(int(sys.argv[1]), signal.SIG_DFL)
    os.kill(os.getpid(), int(sys.argv[1]))
"""


@pytest.mark.parametrize(("sig", "code", "reason"), [
    (signal.SIGXCPU, "timeout", "rendering used up its CPU time"),  # what RLIMIT_CPU sends
    (signal.SIGSEGV, "preview_failed", "the render process died (killed by SIGSEGV)"),
])
def test_a_renderer_ended_by_a_signal_is_judged_by_the_signal(lone_service: PreviewService, corpus: Corpus,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              sig: signal.Signals, code: str, reason: str) -> None:
    script = tmp_path / "signalled.py"
    script.write_text(SIGNALLED_WORKER)
    monkeypatch.setattr(child, "worker_argv", lambda: [sys.executable, str(script), str(int(sig))])
    with pytest.raises(PreviewError) as info:
        lone_service.render(corpus / "minimal-document.pdf", "m.pdf")
    assert (info.value.code, str(info.value)) == (code, reason)


def stub_soffice(folder: Path) -> Path:
    """A ``soffice`` that hangs for ever; it writes its pid to the returned file."""
    pid_file = folder / "soffice.pid"
    stub = folder / "soffice"
    stub.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    stub.chmod(0o755)
    return pid_file


def gone(pid: int, within: float = 10.0) -> bool:
    """Whether ``pid`` is dead (or a zombie) within ``within`` seconds: SIGKILL to a process group is delivered
    asynchronously, so a single sample right after the kill races with it."""
    deadline = time.monotonic() + within
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.mark.needs_soffice
def test_hanging_soffice_at_start(lone_service: PreviewService, corpus: Corpus, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = stub_soffice(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(office, "STARTUP_SECONDS", 0.5)
    start = time.monotonic()
    assert code_of(lone_service, corpus / "python-docx-test.docx") == "timeout"
    assert time.monotonic() - start < lone_service.limits.timeout_seconds + 2.0
    assert lone_service.child_pids() == []
    assert gone(int(pid_file.read_text()))  # the bridge's soffice died with its process group


HANGING_BRIDGE = """
import json, sys, time
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    time.sleep(300)
"""


def test_hanging_office_conversion(lone_service: PreviewService, corpus: Corpus, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    stub_soffice(tmp_path)
    bridge = tmp_path / "bridge.py"
    bridge.write_text(HANGING_BRIDGE)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(office, "BRIDGE_SCRIPT", bridge)
    monkeypatch.setattr(office, "find_uno_python", lambda: sys.executable)
    start = time.monotonic()
    assert code_of(lone_service, corpus / "python-docx-test.docx") == "timeout"
    assert time.monotonic() - start < lone_service.limits.timeout_seconds + 2.0
    assert lone_service.child_pids() == []


def test_converter_missing(lone_service: PreviewService, corpus: Corpus, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(office, "find_soffice", lambda: None)
    assert code_of(lone_service, corpus / "python-docx-test.docx") == "converter_missing"
    converter = {tool.name: tool for tool in lone_service.tools_status()}["libreoffice"]
    assert not converter.available and converter.detail.startswith("missing: install libreoffice")


def test_not_a_regular_file(service: PreviewService, tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.txt")
    assert code_of(service, tmp_path / "fifo.txt") == "unsupported"
    assert code_of(service, tmp_path / "missing.pdf") == "corrupt"


def test_service_exit_leaves_no_children(corpus: Corpus) -> None:
    before = {p.pid for p in own_children()}
    with PreviewService(workers=2) as svc:
        svc.render(corpus / "minimal-document.pdf", "a.pdf")
        svc.render(corpus / "python.bmp", "b.bmp")
        pids = svc.child_pids()
        assert pids
    assert not [p for p in own_children() if p.pid not in before]
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    with pytest.raises(PreviewError):
        svc.render(corpus / "minimal-document.pdf", "a.pdf")


@pytest.mark.needs_soffice
def test_service_exit_stops_libreoffice(corpus: Corpus) -> None:
    before = {p.pid for p in own_children()}
    with PreviewService(workers=1) as svc:
        svc.render(corpus / "python-docx-test.docx", "a.docx")
        descendants = [p.pid for p in own_children() if p.pid not in before]
        assert len(descendants) >= 3  # worker, bridge, soffice
    assert not [p for p in own_children() if p.pid not in before]
    assert all(gone(pid) for pid in descendants)


def test_encrypted_odf(service: PreviewService, corpus: Corpus, tmp_path: Path) -> None:
    manifest = ('<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
                '<manifest:file-entry manifest:full-path="content.xml"><manifest:encryption-data '
                'manifest:checksum-type="SHA1"/></manifest:file-entry></manifest:manifest>')
    with zipfile.ZipFile(tmp_path / "secret.odt", "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        zf.writestr("META-INF/manifest.xml", manifest)
        zf.writestr("content.xml", os.urandom(500))
    assert code_of(service, tmp_path / "secret.odt") == "encrypted"


def test_encrypted_ooxml(service: PreviewService, tmp_path: Path) -> None:
    """Password-protected .docx files are OLE2 containers holding an ``EncryptedPackage`` stream."""
    blob = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000) + "EncryptedPackage".encode("utf-16-le") + bytes(500)
    (tmp_path / "secret.docx").write_bytes(blob)
    assert code_of(service, tmp_path / "secret.docx") == "encrypted"
