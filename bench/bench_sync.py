"""Sync benchmarks (issue 7): docsync against the local emulators with a fixed latency per request.

Run on demand (never in CI):

    .venv/bin/python bench/bench_sync.py all            # every goal, then the README table
    .venv/bin/python bench/bench_sync.py initial        # goal 1 (baseline --concurrency 1 included)
    .venv/bin/python bench/bench_sync.py noop           # goals 2 and 3 (10,000 documents)
    .venv/bin/python bench/bench_sync.py memory         # goal 4
    .venv/bin/python bench/bench_sync.py startup        # goal 5
    .venv/bin/python bench/bench_sync.py limits         # goal 6
    .venv/bin/python bench/bench_sync.py report         # table from bench/results/*.json only

The emulators (``docsync_sandbox.seed.Sandbox``) run inside this process on loopback; docsync runs as a
subprocess (``python -m docsync_cli sync``) configured through the environment only, so its wall time, CPU and
peak RSS (``wait4`` rusage, which includes its reaped render children) are measured alone. Every request is
counted from the emulators' journals. Raw results go to ``bench/results/sync_<goal>.json`` (git-ignored); the
table is printed and written into the "Sync" section of ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench_sync:begin -->", "<!-- bench_sync:end -->"
SHARED_CORPUS = ROOT.parent / "shared" / "corpus"
LATENCY = 0.020
RUN_TIMEOUT = 1800.0  # seconds; a docsync run that takes longer is killed

sys.path.insert(0, str(ROOT))
from docsync_cli.config import SyncSettings  # noqa: E402
from docsync_sandbox.http import RateLimit  # noqa: E402
from docsync_sandbox.seed import Sandbox, corpus_dir  # noqa: E402

# docsync's default documents in flight (sync.concurrency): the divisor of every latency floor below.
DEFAULT_CONCURRENCY: int = SyncSettings.model_fields["concurrency"].default

# ---------------------------------------------------------------------------------------------------
# plumbing: corpus, sandbox, one docsync run


def corpus() -> list[tuple[str, bytes]]:
    folder = SHARED_CORPUS if SHARED_CORPUS.is_dir() else corpus_dir()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() != ".md")
    return [(p.name, p.read_bytes()) for p in files]


@dataclass
class Seeded:
    sandbox: Sandbox
    docs: dict[str, str]  # name -> id
    collections: list[str]
    tmp: tempfile.TemporaryDirectory[str]

    @property
    def state_dir(self) -> Path:
        return Path(self.tmp.name) / "state"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
        env |= self.sandbox.environment(self.state_dir)
        config = Path(self.tmp.name) / "config.toml"
        if not config.exists():
            config.write_text("# bench: everything comes from the environment\n")
            config.chmod(0o600)
        env["DOCSYNC_CONFIG"] = str(config)
        env["NO_COLOR"] = "1"
        env |= extra
        return env

    def set_latency(self, seconds: float) -> None:
        self.sandbox.espo.set_latency(seconds)
        self.sandbox.xai.set_latency(seconds)

    def clear_journals(self) -> None:
        self.sandbox.espo.clear_journal()
        self.sandbox.xai.clear_journal()

    def close(self) -> None:
        self.sandbox.stop()
        self.tmp.cleanup()


@contextlib.contextmanager
def seeded(n: int, *, accounts: int = 3, files: list[tuple[str, bytes]] | None = None) -> Iterator[Seeded]:
    """A fresh pair of emulators (processing_delay 0) with ``accounts`` accounts, each with its own collection,
    and ``n`` documents cycling through ``files``, each linked to one account (round robin)."""
    sandbox = Sandbox(processing_delay=0.0).start()
    seed = Seeded(sandbox, {}, [], tempfile.TemporaryDirectory(prefix="docsync-bench-"))
    try:
        account_ids = []
        for a in range(accounts):
            collection = sandbox.xai.create_collection(f"Bench client {a}")
            seed.collections.append(collection)
            account_ids.append(sandbox.espo.add_account(f"Bench client {a}", collection))
        files = files or corpus()
        for i in range(n):
            file_name, content = files[i % len(files)]
            name = f"Doc {i:05d}"
            seed.docs[name] = sandbox.espo.add_document(name, content, file_name, datei_status="Neu",
                                                        accounts=[account_ids[i % accounts]])
        yield seed
    finally:
        seed.close()


@dataclass
class Run:
    args: list[str]
    wall: float
    exit_code: int
    cpu_user: float
    cpu_sys: float
    maxrss_mb: float
    main_cpu: float = 0.0  # sampled: docsync's own process
    children_cpu: float = 0.0  # sampled: its children (preview render workers, LibreOffice)
    machine_cpu_percent: float = 0.0  # whole machine, averaged over the run (100 = every core busy)
    tail: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


def docsync(args: list[str], env: dict[str, str], *, timeout: float = RUN_TIMEOUT, every: float = 0.1) -> Run:
    """One ``python -m docsync_cli`` run, reaped with wait4 so its CPU rusage is its own (children included).

    Peak RSS is the kernel's high-water mark of docsync's own address space (``VmHWM``), read every ``every``
    seconds: ``ru_maxrss`` is no good here, because a child forked from this process inherits the benchmark's
    (emulators') RSS as its high-water mark before ``exec``."""
    with tempfile.TemporaryFile() as log:
        psutil.cpu_percent(None)
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "docsync_cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        sampled: dict[str, Any] = {"main": 0.0, "children": {}, "hwm_kb": 0}
        done = threading.Event()

        def sample() -> None:
            try:
                handle = psutil.Process(proc.pid)
                while not done.is_set():
                    times = handle.cpu_times()
                    sampled["main"] = times.user + times.system
                    sampled["hwm_kb"] = max(sampled["hwm_kb"], _vm_hwm_kb(proc.pid))
                    for child in handle.children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            ct = child.cpu_times()
                            sampled["children"][child.pid] = ct.user + ct.system
                    done.wait(every)
            except psutil.Error:
                return

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
            done.set()
        wall = time.perf_counter() - started
        machine_pct = psutil.cpu_percent(None)
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.join(timeout=2)
        log.seek(0)
        output = log.read().decode("utf-8", "replace")
        return Run(args, round(wall, 3), proc.returncode, round(usage.ru_utime, 3), round(usage.ru_stime, 3),
                   round(sampled["hwm_kb"] / 1024, 1), round(sampled["main"], 3),
                   round(sum(sampled["children"].values()), 3), machine_pct, output[-1500:])


def _vm_hwm_kb(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


SYNC = ["sync", "--no-preview"]

# ---------------------------------------------------------------------------------------------------
# journal arithmetic


@dataclass
class Traffic:
    espocrm: int = 0
    xai_files: int = 0
    xai_management: int = 0
    listing: int = 0
    writes: int = 0
    throttled: int = 0  # answered 429
    by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.espocrm + self.xai_files + self.xai_management


_ID = re.compile(r"/[0-9a-f]{17}\b|/file_[\w-]+|/collection_[\w-]+|/[A-Za-z0-9]{20,}")


def traffic(seed: Seeded) -> Traffic:
    result = Traffic()
    for emulator in (seed.sandbox.espo, seed.sandbox.xai):
        for entry in emulator.requests():
            if entry.listener == "espocrm":
                result.espocrm += 1
            elif entry.listener == "api":
                result.xai_files += 1
            else:
                result.xai_management += 1
            if entry.is_write and entry.status != 429:
                result.writes += 1
            if entry.status == 429:
                result.throttled += 1
            if entry.listener == "espocrm" and entry.method == "GET" and entry.path.endswith("/Document"):
                result.listing += 1
            kind = f"{entry.listener} {entry.method} {_ID.sub('/{id}', entry.path)}"
            result.by_kind[kind] = result.by_kind.get(kind, 0) + 1
    return result


def end_state(seed: Seeded) -> dict[str, Any]:
    """name → (dateiStatus, xaiCollections, sha, collections the xAI side lists it in) for comparison."""
    attr = seed.sandbox.espo.attr
    members: dict[str, set[str]] = {}
    for index, collection in enumerate(seed.collections):
        for doc in seed.sandbox.xai.collection_documents(collection).values():
            members.setdefault(str(doc["fields"].get("crm_document_id")), set()).add(f"c{index}")
    names = {doc_id: name for name, doc_id in seed.docs.items()}
    index_of = {c: f"c{i}" for i, c in enumerate(seed.collections)}
    state = {}
    for doc in seed.sandbox.espo.documents():
        name = names.get(doc["id"], doc["id"])
        state[name] = [doc.get(attr("dateiStatus")), sorted(index_of.get(c, c) for c in doc.get(attr("xaiCollections"))
                                                             or []),
                       doc.get(attr("sha")), sorted(members.get(doc["id"], set()))]
    return state


def status_counts(seed: Seeded) -> dict[str, int]:
    attr = seed.sandbox.espo.attr("dateiStatus")
    counts: dict[str, int] = {}
    for doc in seed.sandbox.espo.documents():
        counts[str(doc.get(attr))] = counts.get(str(doc.get(attr)), 0) + 1
    return counts


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"goal": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine(), **data}
    (RESULTS / f"sync_{name}.json").write_text(json.dumps(data, indent=2, default=_plain) + "\n")
    print(f"  -> {RESULTS / f'sync_{name}.json'}", flush=True)


def _plain(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, set):
        return sorted(obj)
    return str(obj)


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "ram_gb": round(psutil.virtual_memory().total / 2**30, 1), "kernel": platform.release(),
            "code": code_version()}


def code_version() -> str:
    """The commit of the docsync under test (``BENCH_COMMIT`` when benchmarking an exported tree)."""
    if os.environ.get("BENCH_COMMIT"):
        return os.environ["BENCH_COMMIT"]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "docsync_cli"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return head + (" + uncommitted changes in docsync_cli/" if dirty else "")


def say(text: str) -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------------------------------------
# goal 1: initial sync


def one_initial(n: int, extra: list[str], *, previews: bool = False) -> dict[str, Any]:
    with seeded(n) as seed:
        seed.set_latency(LATENCY)
        seed.clear_journals()
        own = resource.getrusage(resource.RUSAGE_SELF)
        args = (["sync"] if previews else SYNC) + extra
        run = docsync(args, seed.env())
        after = resource.getrusage(resource.RUSAGE_SELF)
        t = traffic(seed)
        statuses = status_counts(seed)
        state = end_state(seed)
    dependent = (t.total - t.listing) / max(1, n)
    return {"docs": n, "args": args, "run": run, "traffic": t, "statuses": statuses,
            "requests_per_doc": round(dependent, 2), "emulator_cpu": round(
                after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime, 2), "_state": state}


def goal_initial(n: int, preview_docs: int, sweep: list[int] | None = None) -> dict[str, Any]:
    say(f"goal 1: initial sync of {n} documents, {LATENCY * 1000:.0f} ms per request")
    default_concurrency = DEFAULT_CONCURRENCY
    say(f"  default settings (concurrency {default_concurrency}) ...")
    default = one_initial(n, [])
    say(f"    {default['run'].wall:.1f} s, exit {default['run'].exit_code}, {default['requests_per_doc']} req/doc")
    say("  baseline --concurrency 1 ...")
    baseline = one_initial(n, ["--concurrency", "1"])
    say(f"    {baseline['run'].wall:.1f} s, exit {baseline['run'].exit_code}")
    identical = default.pop("_state") == baseline.pop("_state")
    floor = n * default["requests_per_doc"] * LATENCY / default_concurrency
    data: dict[str, Any] = {
        "default": default, "baseline": baseline, "identical_end_state": identical,
        "speedup": round(baseline["run"].wall / default["run"].wall, 2),
        "floor_seconds": round(floor, 2), "floor_ratio": round(default["run"].wall / floor, 2),
        "default_concurrency": default_concurrency,
    }
    for k in sweep or []:
        say(f"  --concurrency {k} ...")
        extra = one_initial(n, ["--concurrency", str(k)])
        extra.pop("_state")
        data.setdefault("sweep", {})[str(k)] = extra
        say(f"    {extra['run'].wall:.1f} s, exit {extra['run'].exit_code}, "
            f"{baseline['run'].wall / extra['run'].wall:.2f}x over --concurrency 1")
    if preview_docs:
        say(f"  previews on, {preview_docs} documents (and the same documents with previews off) ...")
        on = one_initial(preview_docs, [], previews=True)
        on.pop("_state")
        off = one_initial(preview_docs, [])
        off.pop("_state")
        run_on: Run = on["run"]
        say(f"    on {run_on.wall:.1f} s vs off {off['run'].wall:.1f} s; render CPU {run_on.children_cpu:.1f} s")
        data["previews"] = {
            "on": on, "off": off,
            "network_floor_seconds": round(preview_docs * on["requests_per_doc"] * LATENCY / default_concurrency, 2),
            "render_cpu_seconds": run_on.children_cpu,
            "docsync_cpu_seconds": run_on.main_cpu,
            "docsync_tree_cores": round(run_on.cpu / run_on.wall, 2),
            "machine_cores": round(run_on.machine_cpu_percent / 100 * (os.cpu_count() or 1), 2),
            # docsync's tree plus the emulators (this process): the work of this run only, whatever else runs
            "own_cores": round((run_on.cpu + on["emulator_cpu"]) / run_on.wall, 2),
            "extra_wall_seconds": round(run_on.wall - off["run"].wall, 2),
        }
    save("initial", data)
    return data


# ---------------------------------------------------------------------------------------------------
# goals 2 and 3: nothing changed, a few changed


def goal_noop(n: int, changed_share: float = 0.01) -> dict[str, Any]:
    say(f"goals 2+3: {n} documents, first synced at latency 0 with --concurrency 16")
    with seeded(n) as seed:
        seed.set_latency(0.0)
        initial = docsync([*SYNC, "--concurrency", "16"], seed.env())
        statuses = status_counts(seed)
        say(f"  initial: {initial.wall:.1f} s, exit {initial.exit_code}, {statuses}")
        seed.set_latency(LATENCY)
        noops: list[dict[str, Any]] = []
        for _ in range(3):
            seed.clear_journals()
            run = docsync(SYNC, seed.env())
            noops.append({"run": run, "traffic": traffic(seed)})
            say(f"  no-op: {run.wall:.2f} s, {noops[-1]['traffic'].total} requests, "
                f"{noops[-1]['traffic'].writes} writes")
        noop = sorted(noops, key=lambda r: r["run"].wall)[1]
        files = corpus()
        ids = list(seed.docs.values())
        step = max(1, round(1 / changed_share))
        changed = ids[::step]
        for k, doc_id in enumerate(changed):  # a user uploads a different file to 1% of the documents
            file_name, content = files[(k * 7 + 3) % len(files)]
            seed.sandbox.espo.replace_file(doc_id, content + f"\n% bench change {k}\n".encode(), file_name)
        seed.clear_journals()
        run = docsync(SYNC, seed.env())
        t = traffic(seed)
        touched = set()
        for entry in seed.sandbox.espo.requests():
            match = re.search(r"/Document/([^/]+)", entry.path)
            if match:
                touched.add(match.group(1))
        statuses_after = status_counts(seed)
        say(f"  {len(changed)} changed: {run.wall:.2f} s, {t.total} requests, {t.writes} writes, {statuses_after}")
    listing_target = math.ceil(n / 200) + 5
    per_changed = (t.total - noop["traffic"].total) / max(1, len(changed))
    expected = noop["run"].wall + len(changed) * per_changed * LATENCY / DEFAULT_CONCURRENCY
    data = {
        "docs": n, "initial": {"run": initial, "statuses": statuses}, "noop_runs": noops, "noop": noop,
        "listing_target": listing_target,
        "changed": {"count": len(changed), "run": run, "traffic": t, "statuses": statuses_after,
                    "extra_requests_per_changed_doc": round(per_changed, 2),
                    "documents_touched": len(touched), "untouched_documents_touched": len(touched - set(changed)),
                    "expected_wall_seconds": round(expected, 2)},
    }
    save("noop", data)
    return data


# ---------------------------------------------------------------------------------------------------
# goal 4: memory does not grow with file size


def goal_memory() -> dict[str, Any]:
    say("goal 4: peak RSS syncing one 1 MiB file vs one 48 MiB file")
    rng = random.Random(7)
    out: dict[str, Any] = {}
    for label, size in (("1MiB", 1 << 20), ("48MiB", 48 << 20)):
        content = rng.randbytes(size)
        with seeded(1, accounts=1, files=[(f"random-{label}.bin", content)]) as seed:
            run = docsync(SYNC, seed.env(), every=0.005)
            statuses = status_counts(seed)
            stored = [f["bytes"] for f in seed.sandbox.xai.files().values()]
        del content
        say(f"  {label}: peak RSS {run.maxrss_mb} MB, {run.wall:.2f} s, exit {run.exit_code}, {statuses}")
        out[label] = {"size": size, "run": run, "statuses": statuses, "stored_bytes": stored}
    out["delta_mb"] = round(out["48MiB"]["run"].maxrss_mb - out["1MiB"]["run"].maxrss_mb, 1)
    save("memory", out)
    return out


# ---------------------------------------------------------------------------------------------------
# goal 5: start-up


def goal_startup(repeat: int = 10) -> dict[str, Any]:
    say("goal 5: start-up")
    exe = Path(sys.executable).with_name("docsync")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
    out: dict[str, Any] = {"executable": str(exe)}
    for label, args in (("help", ["--help"]), ("status_help", ["status", "--help"])):
        times = []
        for i in range(repeat + 2):
            started = time.perf_counter()
            subprocess.run([str(exe), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           check=True, timeout=30)
            if i >= 2:  # two warm-ups (page cache, .pyc)
                times.append(time.perf_counter() - started)
        imports = subprocess.run([sys.executable, "-X", "importtime", "-c", "import docsync_cli.cli.app"], env=env,
                                 capture_output=True, text=True, timeout=30).stderr
        out[label] = {"median_ms": round(statistics.median(times) * 1000, 1),
                      "max_ms": round(max(times) * 1000, 1), "runs": len(times)}
        say(f"  docsync {' '.join(args)}: median {out[label]['median_ms']} ms")
    out["top_imports"] = _top_imports(imports)
    save("startup", out)
    return out


def _top_imports(text: str, top: int = 8) -> list[str]:
    rows = []
    for line in text.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S.*)", line)
        if match and not match.group(3).startswith(" "):
            rows.append((int(match.group(2)), match.group(3).strip()))
    return [f"{name} {us / 1000:.0f} ms" for us, name in sorted(rows, reverse=True)[:top]]


# ---------------------------------------------------------------------------------------------------
# goal 6: polite under limits


def goal_limits(n: int, rate: float = 50, burst: int = 10, retry_after: float = 0.2) -> dict[str, Any]:
    say(f"goal 6: {n} documents, xAI limited to {rate:g} req/s (burst {burst}, Retry-After {retry_after:g} s) "
        f"while documents {n // 3}..{2 * n // 3} are synced")
    with seeded(n) as seed:
        seed.set_latency(LATENCY)
        seed.clear_journals()
        espo = seed.sandbox.espo
        apps = list(seed.sandbox.xai.apps.values())
        marks: dict[str, float] = {}
        stop = threading.Event()
        limits: list[RateLimit] = []

        def done_count() -> int:
            return sum(1 for e in espo.requests("PUT") if e.status == 200 and b"Gesynct" in e.body)

        def conductor() -> None:
            deadline = time.monotonic() + RUN_TIMEOUT
            while not stop.is_set() and time.monotonic() < deadline:
                done = done_count()
                if "limit_on" not in marks and done >= n // 3:
                    for app in apps:  # each xAI host gets its own bucket, as the real API would
                        app.rate_limit = RateLimit(rate=rate, burst=burst, retry_after=retry_after)
                        limits.append(app.rate_limit)
                    marks["limit_on"] = time.time()
                if "limit_on" in marks and "limit_off" not in marks and done >= 2 * n // 3:
                    for app in apps:
                        app.rate_limit = None
                    marks["limit_off"] = time.time()
                stop.wait(0.02)

        thread = threading.Thread(target=conductor, daemon=True)
        marks["start"] = time.time()
        thread.start()
        run = docsync(SYNC, seed.env())
        marks["end"] = time.time()
        stop.set()
        thread.join(timeout=5)
        completions = sorted(e.started for e in espo.requests("PUT") if e.status == 200 and b"Gesynct" in e.body)
        xai_entries = seed.sandbox.xai.requests()
        statuses = status_counts(seed)
        t = traffic(seed)
    on, off = marks.get("limit_on", marks["end"]), marks.get("limit_off", marks["end"])

    def phase(a: float, b: float) -> dict[str, Any]:
        docs = sum(1 for c in completions if a <= c < b)
        reqs = [e for e in xai_entries if a <= e.started < b]
        ok = sum(1 for e in reqs if e.status != 429)
        span = max(1e-6, b - a)
        per_host = {app: round(sum(1 for e in reqs if e.listener == app and e.status != 429) / span, 1)
                    for app in sorted({e.listener for e in xai_entries})}
        return {"seconds": round(span, 2), "docs": docs, "docs_per_s": round(docs / span, 1),
                "xai_req_per_s": round(len(reqs) / span, 1), "xai_accepted_per_s": round(ok / span, 1),
                "xai_accepted_per_s_by_host": per_host, "xai_429": len(reqs) - ok}

    # Phases run from the first to the last completed document, so docsync's start-up and listing (before)
    # and nothing past the last completion (after) dilute the rates.
    first, last = (completions[0], completions[-1]) if completions else (marks["start"], marks["end"])
    phases = {"before": phase(first, on), "during": phase(on, off), "after": phase(off, last + 1e-6)}
    # How long after the limit was lifted until docsync was back near its unlimited speed: the first moment
    # the last second's completions reach 80 % of the before rate.
    recovery: float | None = None
    target = 0.8 * phases["before"]["docs_per_s"]
    for c in completions:
        if c >= off + 1.0 and sum(1 for x in completions if c - 1.0 < x <= c) >= target:
            recovery = round(c - off, 2)
            break
    # Share of the allowed rate that docsync used while limited: on each host, what it needs per document
    # (its requests ÷ documents over the whole run) caps the documents/s the limit allows; the tightest host wins.
    during = phases["during"]
    need = {app: sum(1 for e in xai_entries if e.listener == app and e.status != 429) / max(1, n)
            for app in during["xai_accepted_per_s_by_host"]}
    allowed_docs_per_s = min(rate / k for k in need.values() if k > 0) if need else 0.0
    data = {"docs": n, "rate": rate, "burst": burst, "retry_after": retry_after, "run": run, "statuses": statuses,
            "failed": statuses.get("Fehler", 0), "throttled": sum(limit.throttled for limit in limits),
            "traffic": t, "phases": phases, "recovery_seconds": recovery,
            "requests_per_doc_by_host": {k: round(v, 2) for k, v in need.items()},
            "allowed_docs_per_s": round(allowed_docs_per_s, 1),
            "limited_utilisation": round(during["docs_per_s"] / allowed_docs_per_s, 2) if allowed_docs_per_s else 0,
            "throttled_at": [round(e.started - first, 3) for e in xai_entries if e.status == 429]}
    say(f"  {run.wall:.1f} s, exit {run.exit_code}, {statuses}, 429s {data['throttled']}; {phases}")
    save(f"limits_r{rate:g}", data)
    return data


# ---------------------------------------------------------------------------------------------------
# report


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"sync_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def yes(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def report() -> str:
    rows: list[tuple[str, str, str, str]] = []
    notes: list[str] = []
    info = machine()
    initial, noop, memory, startup = (load(n) for n in ("initial", "noop", "memory", "startup"))
    limit_runs = sorted((load(p.stem[len("sync_"):]) for p in RESULTS.glob("sync_limits_r*.json")),
                        key=lambda d: -float(d["rate"]) if d else 0)
    if initial:
        d, b = initial["default"], initial["baseline"]
        n = d["docs"]
        rows.append((f"1. initial sync, {n} docs: default vs `--concurrency 1`", "≥ 8x faster",
                     f"{d['run']['wall']:.1f} s vs {b['run']['wall']:.1f} s = {initial['speedup']}x",
                     yes(initial["speedup"] >= 8)))
        rows.append(("1. identical end state", "same statuses and memberships",
                     f"default {d['statuses']}, baseline {b['statuses']}; "
                     f"{'identical' if initial['identical_end_state'] else 'DIFFERENT'}",
                     yes(initial["identical_end_state"] and d["run"]["exit_code"] == 0)))
        rows.append(("1. within 1.5x of the latency floor",
                     f"≤ 1.5 × floor ({n} × {d['requests_per_doc']} req × 20 ms ÷ "
                     f"{initial['default_concurrency']} = {initial['floor_seconds']} s)",
                     f"{d['run']['wall']:.1f} s = {initial['floor_ratio']}x floor",
                     yes(initial["floor_ratio"] <= 1.5)))
        if "previews" in initial:
            p = initial["previews"]
            on, off = p["on"], p["off"]
            rows.append((f"1. previews on, {on['docs']} docs: where the time goes",
                         "report network vs rendering; both cores busy",
                         f"{on['run']['wall']:.1f} s (previews off: {off['run']['wall']:.1f} s; network floor "
                         f"{p['network_floor_seconds']} s); render CPU {p['render_cpu_seconds']:.1f} s, docsync "
                         f"CPU {p['docsync_cpu_seconds']:.1f} s; docsync's tree uses {p['docsync_tree_cores']} "
                         f"cores, docsync + emulators {p['own_cores']} of {info['nproc']} (whole machine "
                         f"{p['machine_cores']})",
                         yes(p["own_cores"] >= 0.8 * (info["nproc"] or 1))))
    if noop:
        t = noop["noop"]["traffic"]
        run = noop["noop"]["run"]
        ok = t["listing"] <= noop["listing_target"] and t["writes"] == 0 and run["wall"] < 3
        rows.append((f"2. nothing changed, {noop['docs']} docs Gesynct",
                     f"≤ {noop['listing_target']} listing requests, 0 writes, < 3 s",
                     f"{t['listing']} listing of {t['espocrm'] + t['xai_files'] + t['xai_management']} requests, "
                     f"{t['writes']} writes, {run['wall']:.2f} s (median of 3)", yes(ok)))
        c = noop["changed"]
        ct = c["traffic"]
        ok = (c["untouched_documents_touched"] == 0 and c["run"]["wall"] <= 1.5 * c["expected_wall_seconds"]
              and c["statuses"].get("Gesynct") == noop["docs"])
        rows.append((f"3. {c['count']} of {noop['docs']} changed (new file)",
                     "no-op run + work of those docs only",
                     f"{c['run']['wall']:.2f} s (no-op {run['wall']:.2f} s + {c['count']} × "
                     f"{c['extra_requests_per_changed_doc']} req ≈ {c['expected_wall_seconds']} s); "
                     f"{ct['writes']} writes; other docs touched: {c['untouched_documents_touched']}", yes(ok)))
    if memory:
        small, big = memory["1MiB"]["run"], memory["48MiB"]["run"]
        ok = memory["delta_mb"] < 20 and small["exit_code"] == 0 and big["exit_code"] == 0
        rows.append(("4. memory vs file size", "peak RSS(48 MiB) − peak RSS(1 MiB) < 20 MB",
                     f"{big['maxrss_mb']} − {small['maxrss_mb']} = {memory['delta_mb']} MB", yes(ok)))
    if startup:
        for label, cmd in (("help", "docsync --help"), ("status_help", "docsync status --help")):
            ms = startup[label]["median_ms"]
            rows.append((f"5. `{cmd}`", "< 300 ms (median of 10)", f"{ms:.0f} ms", yes(ms < 300)))
    for limits in limit_runs:
        if not limits:
            continue
        ph = limits["phases"]
        ok = (limits["failed"] == 0 and limits["run"]["exit_code"] == 0 and limits["throttled"] > 0
              and ph["after"]["docs_per_s"] >= 0.8 * ph["before"]["docs_per_s"])
        recovery = limits.get("recovery_seconds")
        rows.append((f"6. polite under limits ({limits['docs']} docs, xAI {limits['rate']:g} req/s per host, "
                     f"burst {limits['burst']}, Retry-After {limits['retry_after']:g} s)",
                     "slows down to fit, 0 failed, speeds up again (after ≥ 0.8 × before)",
                     f"{limits['throttled']} × 429, {limits['failed']} failed, exit {limits['run']['exit_code']}; "
                     f"docs/s before {ph['before']['docs_per_s']} → during {ph['during']['docs_per_s']} "
                     f"(limit allows {limits.get('allowed_docs_per_s', '?')}; xAI accepted "
                     f"{ph['during']['xai_accepted_per_s']} req/s) → after {ph['after']['docs_per_s']}; back at "
                     f"≥ 80 % of before {f'{recovery} s' if recovery is not None else 'never'} after the limit "
                     "was lifted",
                     yes(ok) if limits["throttled"] else "n/a: docsync never reached the limit"))
    notes += [
        "",
        "How it is measured:",
        "",
        "- Requests, listing requests and writes are counted from the emulators' journals (writes = POST, PUT, "
        "PATCH, DELETE that were not answered 429). \"Dependent requests per document\" = (all requests − the "
        "listing) ÷ documents; every one of them waits for the previous one, so the floor is documents × that × "
        "20 ms ÷ concurrency.",
        "- Peak RSS is docsync's own `VmHWM`, sampled every 5 ms. `ru_maxrss` from `wait4` is unusable here: a "
        "child forked from the benchmark process starts with the benchmark's (the emulators') RSS as its "
        "high-water mark, which made a first attempt report 48 → 137 MB for a growth that does not exist "
        "(tracemalloc inside docsync: Python heap peak 21 MB for both sizes).",
        "- The emulators disable Nagle themselves (`docsync_sandbox/http.py`); with it on, loopback "
        "delayed ACKs added ~40 ms to every answer, so the fixed latency under test would really be ~64 ms.",
        "- CPU: `wait4` rusage of the docsync process (includes its reaped preview children); render CPU is "
        "the preview children's CPU sampled with psutil; \"docsync + emulators\" adds the benchmark process's own "
        "CPU (the emulators) over the same run, so it does not count other work on the machine (other "
        "sessions ran tests in parallel; \"whole machine\" does count it).",
        "- Goal 6: the limit (a token bucket per xAI host) is switched on once a third of the documents are "
        "synced and off at two thirds. Phases run from the first to the last completed document; \"limit "
        "allows\" = rate ÷ accepted requests per document on the tightest host (the Management API: add to "
        "collection + status poll).",
    ]
    lines = ["| goal | target | measured | met? |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    head = (f"Machine: {info['nproc']} × {info['cpu']}, {info['ram_gb']} GB RAM, Python {info['python']}, "
            f"Linux {info['kernel']}. Emulators in the benchmark process (loopback), docsync as a subprocess "
            f"(`python -m docsync_cli sync --no-preview` unless noted), {LATENCY * 1000:.0f} ms fixed latency "
            "per request on every emulator listener, xAI processing delay 0. Documents cycle through the 20 "
            "corpus files, each linked to one of 3 accounts (one collection each). Code under test: "
            f"{_codes()}.")
    return "\n".join([head, "", *lines, *notes])


def _codes() -> str:
    codes = sorted({str((load(p.stem[len("sync_"):]) or {}).get("machine", {}).get("code", "?"))
                    for p in RESULTS.glob("sync_*.json")})
    return ", ".join(f"`{c}`" for c in codes) or "?"


def write_readme(section: str) -> None:
    block = f"{BEGIN}\n{section}\n{END}"
    intro = ("# Benchmarks\n\nRun on demand on a developer machine, never in CI. Raw results go to "
             "`bench/results/` (git-ignored).\n\n## Previews\n")
    text = README.read_text() if README.exists() else intro
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    elif re.search(r"^## Sync\s*$", text, re.M):
        text = re.sub(r"^## Sync\s*$", lambda m: "## Sync\n\n" + block, text, count=1, flags=re.M)
    else:
        text = text.rstrip() + "\n\n## Sync\n\n" + block + "\n"
    README.write_text(text)


DIAGNOSIS = """How the goals were reached (every row above is met; measured 2026-11-25):

- **Code under test.** Goals 1 and 6 were measured on `48c0e95` (goal 6 with the throttle change committed
  right after it, `docsync_cli/transport.py`), goals 2–5 on `442e6cd`; what changed in between (the default
  concurrency and the throttle) does not touch the no-op listing, memory or start-up paths.
- **1. 8x over `--concurrency 1`.** With 8 documents in flight the ceiling is 8x, and a request costs a little
  more with 8 in flight than with 1 (GIL hand-offs): 7.6x at concurrency 8. `--concurrency 10` gave 9.3x,
  12 gave 10.7x, so the default is now 12: 11.6x, still 1.18x of its latency floor.
- **1. previews, both cores.** Rendering starts right after the download and overlaps the upload and the
  indexing wait; with 12 documents in flight enough renders are queued to keep both cores busy (1.65 of 2;
  at 8 in flight it was 1.39).
- **2. no-op.** 3.6 s at first: the EspoCRM emulator scanned and sorted all 10,000 records for each page.
  It now serves `orderBy=id` keyset pages from the id order like a database index would: 2.3 s, of which
  1.0 s is the network floor (50 pages in sequence × 20 ms).
- **6. polite under limits.** Three fixes in `docsync_cli/transport.py`'s `Throttle`: a 429 no longer uses up
  one of the `max_attempts` (it is waited out within the time budget), a `Retry-After` pauses every thread
  talking to that host, and the rate/in-flight cut happens once per overload (not once per 429 of requests
  that were already under way, which had throttled to 1/32 of the sent rate); the cap then grows 10 % per
  success and doubles after each quiet second, so it speeds up within about a second after the limit is
  lifted. Before these: 7 of 300 documents failed at 8 req/s, and recovery took 9 s.
"""


COMMANDS = """Commands (from the checkout):

```
.venv/bin/python bench/bench_sync.py all --sweep 10 12   # ≈ 14 min: every goal, then this table
.venv/bin/python bench/bench_sync.py initial [--sweep 10 12]  # goal 1 (default, --concurrency 1, sweep, previews)
.venv/bin/python bench/bench_sync.py noop       # goals 2 and 3 (seeds and syncs 10,000 documents first)
.venv/bin/python bench/bench_sync.py memory     # goal 4
.venv/bin/python bench/bench_sync.py startup    # goal 5
.venv/bin/python bench/bench_sync.py limits     # goal 6 at 50 and at 8 req/s per host (--rate R [R ...])
.venv/bin/python bench/bench_sync.py report     # rebuild this table from bench/results/sync_*.json
```

Goals 2–5 were measured on an exported tree of `442e6cd` (`mkdir -p "$SRC" && git archive 442e6cd | tar -x -C "$SRC"`,
then `BENCH_COMMIT=442e6cd PYTHONPATH=$PWD <checkout>/.venv/bin/python bench/bench_sync.py all --no-readme`
there); goal 1 with `bench_sync.py initial`, goal 6 with `bench_sync.py limits --limit-docs 900` (longer phases
than the default 300, so that "before", "during" and "after" each last several seconds)."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("goal", choices=["all", "initial", "noop", "memory", "startup", "limits", "report"])
    parser.add_argument("--docs", type=int, default=1000, help="goal 1 documents (default 1000)")
    parser.add_argument("--preview-docs", type=int, default=200, help="goal 1 previews-on documents (0 = skip)")
    parser.add_argument("--big", type=int, default=10_000, help="goals 2/3 documents (default 10000)")
    parser.add_argument("--limit-docs", type=int, default=300, help="goal 6 documents (default 300)")
    parser.add_argument("--rate", type=float, nargs="+", default=[50, 8],
                        help="goal 6 xAI requests/s per host, one run per rate (default 50 8)")
    parser.add_argument("--sweep", type=int, nargs="*", default=[],
                        help="goal 1: extra 1000-doc runs with these --concurrency values (diagnosis)")
    parser.add_argument("--no-readme", action="store_true", help="print only, leave bench/README.md alone")
    args = parser.parse_args()
    goals = ["startup", "memory", "limits", "initial", "noop"] if args.goal == "all" else [args.goal]
    for goal in goals:
        if goal == "initial":
            goal_initial(args.docs, args.preview_docs, args.sweep)
        elif goal == "noop":
            goal_noop(args.big)
        elif goal == "memory":
            goal_memory()
        elif goal == "startup":
            goal_startup()
        elif goal == "limits":
            for rate in args.rate:
                goal_limits(args.limit_docs, rate=rate)
    section = report() + "\n\n" + DIAGNOSIS + "\n" + COMMANDS
    print("\n" + section)
    if not args.no_readme:
        write_readme(section)
        say(f"\nwritten into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
