"""Preview benchmark: warm PreviewService against the naive baselines, measured in the same run.

Run on demand (not in CI):

    .venv/bin/python bench/bench_preview.py [--quick] [--no-readme]

Cases (each N timed runs after 2 warm-up runs; wall clock seen by the caller, IPC included):
  * warm PDF first page → WebP over the corpus PDFs and a generated 200-page PDF
  * 24-megapixel JPEG (6000x4000, generated) → WebP
  * warm DOCX and ODT → WebP (LibreOffice kept warm over UNO)
Baselines:
  * pdf2image.convert_from_path(200-page PDF) with its defaults (every page, 200 dpi)
  * cold ``soffice --headless --convert-to pdf`` per DOCX (a new soffice for each file)
  * naive Pillow JPEG: open + convert + thumbnail without ``draft``
Peak memory is the peak RSS (VmHWM, reset before each case through /proc/PID/clear_refs) summed
over the processes that render: the render worker, and for office also the UNO bridge and soffice.
Baselines run in a wrapper process that reports ``ru_maxrss`` of its waited-for descendants.
The table is printed and written into bench/README.md's "Previews" section.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pypdfium2 as pdfium  # noqa: E402
from PIL import Image  # noqa: E402

from docsync_cli.preview import PreviewLimits, PreviewService  # noqa: E402
from tests.corpus import CORPUS  # noqa: E402  (the shipped demo corpus + the test-only files)

README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- previews:begin -->", "<!-- previews:end -->"
CORPUS_PDFS = ["minimal-document.pdf", "libreoffice-writer.pdf", "google-doc-document.pdf",
               "pdflatex-4-pages.pdf", "pdflatex-image.pdf", "cmyk-image.pdf", "arabic-rotated.pdf",
               "imagemagick-ccittfax.pdf"]


@dataclass
class Row:
    case: str
    runs: int
    times: list[float]
    peak_mb: float | None
    goal: str = ""
    note: str = ""

    def cells(self) -> list[str]:
        med = statistics.median(self.times) * 1000
        p95 = percentile(self.times, 95) * 1000
        peak = f"{self.peak_mb:.0f}" if self.peak_mb is not None else "n/a"
        return [self.case, str(self.runs), fmt_ms(med), fmt_ms(p95), peak, self.goal, self.note]


def fmt_ms(ms: float) -> str:
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * pct / 100
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


# ---- peak memory of the render processes ---------------------------------------------------------

def render_tree(service: PreviewService) -> list[int]:
    pids: list[int] = []
    for pid in service.child_pids():
        pids.append(pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            pids += [c.pid for c in psutil.Process(pid).children(recursive=True)]
    return pids


def reset_hwm(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")


def hwm_mb(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        if match:
            total += int(match.group(1))
    return total / 1024


def warm_case(service: PreviewService, case: str, files: list[tuple[Path, str]], runs: int,
              goal: str = "", note: str = "") -> Row:
    for path, name in files[:2]:
        service.render(path, name)  # warm-up: workers, converter, page cache
    pids = render_tree(service)
    reset_hwm(pids)
    times = []
    for i in range(runs):
        path, name = files[i % len(files)]
        start = time.perf_counter()
        service.render(path, name)
        times.append(time.perf_counter() - start)
    return Row(case, runs, times, hwm_mb(render_tree(service)), goal, note)


def cold_start(service: PreviewService, case: str, path: Path) -> Row:
    """A once-per-run cost: the first render spawns the worker, the first office file LibreOffice."""
    start = time.perf_counter()
    service.render(path, path.name)
    return Row(case, 1, [time.perf_counter() - start], hwm_mb(render_tree(service)), "", "once per run")


# ---- baselines in a measured wrapper process -----------------------------------------------------

WRAPPER = """
import json, resource, subprocess, sys, time
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    subprocess.run(sys.argv[2:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "maxrss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured(argv: list[str], runs: int) -> tuple[list[float], float]:
    done = subprocess.run([sys.executable, "-c", WRAPPER, str(runs), *argv], check=True,
                          capture_output=True, text=True)
    data = json.loads(done.stdout)
    return data["times"], data["maxrss_kb"] / 1024


PDF2IMAGE = "import sys; from pdf2image import convert_from_path; convert_from_path(sys.argv[1])"
NAIVE_JPEG = """
import sys
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
with Image.open(sys.argv[1]) as im:
    im = im.convert("RGB"); im.thumbnail((600, 800)); im.save(sys.argv[2], "WEBP", quality=85)
"""


# ---- inputs --------------------------------------------------------------------------------------

def make_inputs(tmp: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    src_a = pdfium.PdfDocument(CORPUS / "pdflatex-4-pages.pdf")
    src_b = pdfium.PdfDocument(CORPUS / "pdflatex-image.pdf")
    big = pdfium.PdfDocument.new()
    while len(big) < 200:
        big.import_pages(src_a)
        big.import_pages(src_b)
    while len(big) > 200:
        big.del_page(len(big) - 1)
    out["pdf200"] = tmp / "two-hundred-pages.pdf"
    big.save(out["pdf200"])
    for doc in (big, src_a, src_b):
        doc.close()
    with Image.open(CORPUS / "exif-Landscape_1.jpg") as photo:
        photo.convert("RGB").resize((6000, 4000), Image.Resampling.BICUBIC).save(
            tmp / "camera-24mp.jpg", quality=90)
    out["jpeg24"] = tmp / "camera-24mp.jpg"
    return out


# ---- machine and report --------------------------------------------------------------------------

def machine_info() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    soffice = shutil.which("soffice")
    lo = "absent"
    if soffice:
        lo = subprocess.run([soffice, "--version"], capture_output=True, text=True, timeout=60,
                            check=False).stdout.strip()
    mem = psutil.virtual_memory().total / 2**30
    return (f"nproc {os.cpu_count()}, CPU {cpu}, RAM {mem:.0f} GiB, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, pypdfium2 {pdfium.PYPDFIUM_INFO} (PDFium "
            f"{pdfium.PDFIUM_INFO}), Pillow {Image.__version__}, {lo}")


def table(rows: list[Row]) -> str:
    head = ["case", "runs", "median ms", "p95 ms", "peak RSS MB", "goal", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    block = f"{BEGIN}\n{section}\n{END}"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    elif "## Previews" in text:
        text = text.replace("## Previews", "## Previews\n\n" + block, 1)
    else:
        text = text.rstrip() + "\n\n## Previews\n\n" + block + "\n"
    README.write_text(text)


def load() -> str:
    one, five, _fifteen = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (smoke test of the script)")
    parser.add_argument("--no-readme", action="store_true", help="print only, leave bench/README.md alone")
    args = parser.parse_args()
    runs_fast, runs_office, runs_pdf2image, runs_cold = (10, 5, 1, 2) if args.quick else (60, 30, 2, 8)
    rows: list[Row] = []
    load_before = load()
    have_office = shutil.which("soffice") is not None
    with tempfile.TemporaryDirectory(prefix="bench-preview-") as tmp_name:
        tmp = Path(tmp_name)
        inputs = make_inputs(tmp)
        pdfs = [(CORPUS / name, name) for name in CORPUS_PDFS]
        with PreviewService(PreviewLimits(), workers=1) as service:
            rows.append(cold_start(service, "first PDF of a run (spawns the render worker)",
                                   CORPUS / "minimal-document.pdf"))
            rows.append(warm_case(service, "PDF first page, corpus (8 PDFs)", pdfs, runs_fast, "≤ 60 ms"))
            rows.append(warm_case(service, "PDF first page, 200-page PDF", [(inputs["pdf200"], "big.pdf")],
                                  runs_fast, "≤ 60 ms"))
            rows.append(warm_case(service, "JPEG 24 MP (6000x4000)", [(inputs["jpeg24"], "camera.jpg")],
                                  runs_fast, "≤ 100 ms, ≤ 50 MB", "worker process, interpreter included"))
            if have_office:  # LibreOffice starts only now: the cases above measure the render worker alone
                rows.append(cold_start(service, "first DOCX of a run (starts LibreOffice)",
                                       CORPUS / "python-docx-test.docx"))
                docx = [(CORPUS / "python-docx-test.docx", "a.docx"), (CORPUS / "having-images.docx", "b.docx")]
                rows.append(warm_case(service, "DOCX, warm LibreOffice (2 corpus files)", docx, runs_office,
                                      "≤ 500 ms", "worker + UNO bridge + soffice"))
                odt = [(CORPUS / "libreoffice-source.odt", "c.odt")]
                rows.append(warm_case(service, "ODT, warm LibreOffice", odt, runs_office, "",
                                      "worker + UNO bridge + soffice"))
        times, peak = measured([sys.executable, "-c", PDF2IMAGE, str(inputs["pdf200"])], runs_pdf2image)
        rows.append(Row("baseline: pdf2image defaults, 200-page PDF", runs_pdf2image, times, peak, "never",
                        "all pages at 200 dpi"))
        times, peak = measured([sys.executable, "-c", NAIVE_JPEG, str(inputs["jpeg24"]), str(tmp / "n.webp")],
                               runs_cold)
        rows.append(Row("baseline: Pillow without draft, 24 MP JPEG", runs_cold, times, peak, "",
                        "process start included"))
        if have_office:
            profile = tmp / "cold-profile"
            cold = ["soffice", "--headless", f"-env:UserInstallation=file://{profile}", "--convert-to", "pdf",
                    "--outdir", str(tmp / "cold"), str(CORPUS / "python-docx-test.docx")]
            subprocess.run(cold, check=True, capture_output=True, timeout=120)  # profile creation
            times, peak = measured(cold, runs_cold)
            rows.append(Row("baseline: cold soffice --convert-to pdf per DOCX", runs_cold, times, peak, "",
                            "PDF only, no image yet"))
    info = machine_info()
    text = "\n".join([
        "Measured by `.venv/bin/python bench/bench_preview.py` (from the checkout) "
        f"on {time.strftime('%Y-%m-%d')}.", "",
        f"Machine: {info}. Load average (1/5 min) before the run {load_before}, after {load()}: the "
        "machine is shared, a load above 0.5 means other work competed for the 2 cores.", "", table(rows), "",
        "Median and 95th percentile of the wall-clock time of `PreviewService.render()` as the caller sees it "
        "(sandboxed worker, pipe IPC and the WebP check included), after 2 warm-up renders. Peak RSS is the "
        "VmHWM of the processes that render, reset before each case (for office cases the sum over the "
        "render worker, the UNO bridge and soffice). Baselines run in a wrapper process and report the "
        "largest `ru_maxrss` among its descendants; their time includes process start.",
    ])
    print(text)
    if not args.no_readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
