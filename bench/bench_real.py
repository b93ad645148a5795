"""Benchmarks against a real EspoCRM 9.2.7 (issue 24): the incremental-run figures of ``bench_changes.py``, measured
on the real server at 10,000 documents and, side by side, on the emulator at the same size.

Run on demand (never in CI), from the checkout, with an instance of the fixture of your own (a throwaway DIR: the
benchmark writes 10,000 documents into its database and deletes them again at the end):

    ESPOCRM_PORT=8765 ESPOCRM_DB_PORT=33061 bash ../shared/real-espocrm/setup.sh /tmp/espo-bench
    .venv/bin/python bench/bench_real.py all --instance /tmp/espo-bench     # ≈ 10 min: both sides, then the table
    bash ../shared/real-espocrm/stop.sh /tmp/espo-bench
    .venv/bin/python bench/bench_real.py report                              # the table from bench/results/

How the 10,000 documents are made: by SQL, in bulk (``INSERT`` of 1,000 rows at a time through the fixture's
MariaDB socket): the ``attachment`` rows with their files in ``data/upload/``, the ``document`` rows already synced
(Gesynct, hashes, xAI file id and collection) and the ``account_document`` links, spread over 10 accounts made
through the REST API (one account and one xAI collection per 1,000 documents). Through the API the same would
take about 20,000 requests. The xAI emulator gets the matching files in the collections, and docsync's state dir
the matching records (a host that synced them all: watermark an hour ago, listing pass just done), as
``bench_changes.py`` seeds its emulator. One unmeasured plain run settles the Stream cursor first.

docsync runs as a subprocess (``python -m docsync_cli sync --no-preview``) through a counting proxy on loopback
(``tests/real/proxy.py``), which journals every request and how long the real server took to answer it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_changes import (  # noqa: E402
    FORMAT,
    INDEXING_SECONDS,
    SYNC,
    TIMER_JITTER,
    _p95,
    goal_listing,
    goal_million,
    say,
)
from bench_sync import LATENCY, RESULTS, Run, docsync, machine  # noqa: E402

from docsync_cli.model import LocalRecord  # noqa: E402
from docsync_cli.state import StateStore, StreamFeed  # noqa: E402
from docsync_cli.xai.client import FIELD_KEYS  # noqa: E402
from docsync_sandbox.xai import XaiEmulator, _Document, _FieldDef  # noqa: E402
from tests.real.instance import custom_metadata  # noqa: E402
from tests.real.proxy import CountingProxy  # noqa: E402
from tests.real.realcrm import Admin, RealCrm, counting_proxy, xai_emulator  # noqa: E402

README = ROOT / "bench" / "README.md"
BEGIN, END = "<!-- bench_real:begin -->", "<!-- bench_real:end -->"
FIXTURE = ROOT.parent / "shared" / "real-espocrm"
NAME = "bench-real"  # every row the benchmark inserts is named with this (and deleted by it at the end)
PER_ACCOUNT = 1000


def env_file(instance: Path) -> dict[str, str]:
    values = {}
    for line in (instance / "env.sh").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = value
    return values


class Sql:
    """The fixture's MariaDB as root over its socket (``common.sh`` ``db_client``)."""

    def __init__(self, instance: Path) -> None:
        self.socket = instance / "db" / "run" / "mysqld.sock"

    def run(self, script: str) -> str:
        done = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-B",
                               "espocrm"], input=script, text=True, capture_output=True, check=False, timeout=600)
        if done.returncode != 0:
            raise SystemExit(f"SQL failed: {done.stderr[:500]}")
        return done.stdout

    def insert(self, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        def literal(value: Any) -> str:
            if value is None:
                return "NULL"
            if isinstance(value, bool | int):
                return str(int(value))
            return "'" + str(value).replace("\\", "\\\\").replace("'", "''") + "'"

        for start in range(0, len(rows), 1000):
            values = ",\n".join("(" + ",".join(literal(v) for v in row) + ")" for row in rows[start:start + 1000])
            self.run(f"INSERT INTO `{table}` ({','.join(columns)}) VALUES\n{values};")


@dataclass
class RealWorld:
    crm: RealCrm
    admin: Admin
    xai: XaiEmulator
    proxy: CountingProxy
    state_dir: Path
    env: dict[str, str]
    docs: list[str]
    collections: list[str]
    runs: list[Run] = field(default_factory=list)

    def clear(self) -> None:
        self.proxy.clear_journal()
        self.xai.clear_journal()

    def run(self, args: list[str] | None = None) -> Run:
        self.clear()
        run = docsync(args or SYNC, self.env)
        if run.exit_code != 0:
            raise SystemExit(f"docsync failed ({run.exit_code}): {run.tail}")
        return run

    def counts(self) -> dict[str, Any]:
        espo = self.proxy.requests()
        lists = [t for m, p, t in self.proxy.timings if m == "GET"]
        return {"espo_requests": len(espo), "xai_requests": len(self.xai.requests()),
                "writes": len([e for e in espo if e.is_write]) + len(self.xai.writes()),
                "espo_seconds": round(sum(t for _, _, t in self.proxy.timings), 3),
                "espo_get_median_ms": round(1000 * statistics.median(lists), 1) if lists else None,
                "espo_get_max_ms": round(1000 * max(lists), 1) if lists else None}

    def members(self, collection_id: str) -> set[str]:
        return {d["fields"].get("crm_document_id") for d in self.xai.collection_documents(collection_id).values()}

    def set_meta(self, **values: str) -> None:
        state = StateStore(self.state_dir)
        try:
            state.set_meta(values)
        finally:
            state.close()


@contextmanager
def real_world(instance: Path, n: int) -> Iterator[RealWorld]:
    env = env_file(instance)
    crm = RealCrm.from_environ(env)
    if crm is None:
        raise SystemExit(f"{instance}/env.sh does not name a CRM (run the fixture's setup.sh first)")
    crm = dataclasses.replace(crm, instance_dir=instance, fixture_dir=FIXTURE)
    sql = Sql(instance)
    admin = Admin(crm, run="bench")
    if int(sql.run("SELECT COUNT(*) FROM document WHERE deleted = 0;").strip()):
        raise SystemExit(f"{crm.url} holds documents: use a fresh instance of the fixture")
    upload = instance / "instance" / "espocrm" / "data" / "upload"
    upload.mkdir(exist_ok=True)  # EspoCRM makes it at the first upload
    accounts_n = max(1, n // PER_ACCOUNT)
    with xai_emulator() as xai, counting_proxy(crm) as proxy, tempfile.TemporaryDirectory(prefix="bench-real-") as tmp:
        try:
            started = time.perf_counter()
            collections = [xai.create_collection(f"Mandant {i}") for i in range(accounts_n)]
            with xai.lock:
                for cid in collections:
                    xai._collections[cid].field_definitions = [_FieldDef(k) for k in FIELD_KEYS]
            accounts = [str(admin.call("POST", "Account", {"name": f"{NAME} Mandant {i}",
                                                           "xaiCollectionId": c})["id"])
                        for i, c in enumerate(collections)]
            admin_id = str(admin.call("GET", "App/user")["user"]["id"])
            now = datetime.now(UTC)
            old = (now - timedelta(hours=2)).strftime(FORMAT)
            sql.run(f"UPDATE account SET created_at = '{old}', modified_at = '{old}' WHERE name LIKE '{NAME} %';")
            state_dir = Path(tmp) / "state"
            state = StateStore(state_dir)
            ours = state.installation_id
            prefix = secrets.token_hex(4)
            attachments: list[tuple[Any, ...]] = []
            documents: list[tuple[Any, ...]] = []
            links: list[tuple[Any, ...]] = []
            local: list[LocalRecord] = []
            docs: list[str] = []
            for number in range(n):
                doc_id, att_id = f"{prefix}{number:09x}", f"{prefix}{number + n:09x}"
                content = f"Dokument {doc_id}\n".encode()
                sha, md5 = hashlib.sha256(content).hexdigest(), hashlib.md5(content).hexdigest()
                collection, account = collections[number % accounts_n], accounts[number % accounts_n]
                (upload / att_id).write_bytes(content)
                with xai.lock:
                    file = xai._store_file(f"crm-{doc_id}-{sha[:8]}-d.txt", content, "text/plain")
                    xai._collections[collection].documents[file.id] = _Document(
                        file_id=file.id, fields={"crm_document_id": doc_id, "content_sha256": sha,
                                                 "managed_by": "docsync", "installation_id": ours},
                        added_at=0.0, started=0.0)
                attachments.append((att_id, f"dokument-{number}.txt", 0, "text/plain", len(content), "file", 0, old,
                                    old, "Attachment", "EspoUploadDir", 0, doc_id, "Document", admin_id))
                documents.append((doc_id, f"{NAME} Dokument {number}", 0, "Active", "2025-01-15", old, old, att_id,
                                  admin_id, admin_id, "Gesynct", md5, sha, file.id, json.dumps([collection]), sha,
                                  "synced"))
                links.append((account, doc_id, 0))
                local.append(LocalRecord(doc_id=doc_id, file_id=att_id, sha256=sha, md5=md5, xai_file_id=file.id,
                                         collections=(collection,), crm_modified_at=old))
                docs.append(doc_id)
            sql.insert("attachment", ["id", "name", "deleted", "type", "size", "field", "is_being_uploaded",
                                      "created_at", "modified_at", "role", "storage", "global", "related_id",
                                      "related_type", "created_by_id"], attachments)
            sql.insert("document", ["id", "name", "deleted", "status", "publish_date", "created_at", "modified_at",
                                    "file_id", "created_by_id", "modified_by_id", "datei_status", "md5", "sha",
                                    "xai_file_id", "xai_collections", "xai_synced_hash", "xai_sync_status"], documents)
            sql.insert("account_document", ["account_id", "document_id", "deleted"], links)
            state.add_many(local)
            cursor = sql.run("SELECT COALESCE(MAX(number), 0) FROM note;").strip()
            seen = {"stream": StreamFeed.ACTIVE, "accounts_override": False}
            state.set_meta({"watermark": (now - timedelta(hours=1)).strftime(FORMAT),
                            "last_listing": repr(time.time()), "note_cursor": cursor, "feeds": json.dumps(seen)})
            state.set_linked("Account", dict(zip(accounts, collections, strict=True)), replace=True)
            state.close()
            say(f"seeded {n} documents by SQL in {time.perf_counter() - started:.0f} s")
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("ESPOCRM_", "XAI_", "DOCSYNC_"))}
            env |= crm.api_user_env(url=proxy.url) | {
                "XAI_API_URL": xai.api_url, "XAI_MANAGEMENT_URL": xai.management_url, "XAI_API_KEY": xai.api_key,
                "XAI_MANAGEMENT_KEY": xai.management_key, "DOCSYNC_STATE_DIR": str(state_dir),
                "DOCSYNC_SYNC__PROCESSING_WAIT_SECONDS": "10", "DOCSYNC_SYNC__POLL_INTERVAL_SECONDS": "0.2"}
            world = RealWorld(crm, admin, xai, proxy, state_dir, env, docs, collections)
            world.run()  # unmeasured: settles the Stream cursor past the notes the seeding left
            yield world
        finally:
            admin.cleanup()
            admin.close()
            sql.run(f"DELETE FROM account_document WHERE document_id IN (SELECT id FROM document WHERE name LIKE "
                    f"'{NAME} %'); DELETE FROM attachment WHERE related_id IN (SELECT id FROM document WHERE name "
                    f"LIKE '{NAME} %'); DELETE FROM document WHERE name LIKE '{NAME} %'; "
                    f"DELETE FROM account WHERE name LIKE '{NAME} %';")
            for path in upload.iterdir():
                if path.name.startswith(prefix):
                    path.unlink()


def replace_file(world: RealWorld, doc_id: str, content: bytes) -> None:
    """A person uploads a new version (``POST Attachment`` + ``PUT Document``), the status left as it is."""
    world.admin.replace_file(doc_id, content, "neu.txt", mime="text/plain")


def measure_real(instance: Path, n: int, changes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"docs": n}
    with real_world(instance, n) as w:
        noop = []
        for _ in range(3):
            noop.append((w.run(), w.counts()))
        out["noop"] = {"wall": statistics.median(r.wall for r, _ in noop), "walls": [r.wall for r, _ in noop],
                       **max((c for _, c in noop), key=lambda c: c["espo_requests"]),
                       "writes": sum(c["writes"] for _, c in noop)}
        say(f"no-op: {out['noop']}")

        target = w.docs[n // 2]
        replace_file(w, target, b"Neue Fassung.\n")
        one = w.run()
        doc = w.admin.read(target)
        out["one_change"] = {"wall": one.wall, **w.counts(), "status": doc["dateiStatus"],
                             "searchable": target in w.members(w.collections[(n // 2) % len(w.collections)])}
        say(f"one change: {out['one_change']}")

        w.set_meta(last_listing="0")
        listing = w.run()
        out["listing"] = {"wall": listing.wall, **w.counts()}
        say(f"listing pass: {out['listing']}")
        full = w.run(["sync", "--no-preview", "--full"])
        out["full"] = {"wall": full.wall, "rss_mb": full.maxrss_mb, **w.counts()}
        say(f"--full: {out['full']}")

        def override(resources: Path) -> None:
            path = resources / "metadata" / "entityDefs" / "Document.json"
            data = json.loads(path.read_text())
            data["fields"]["accounts"] = {"noLoad": False}
            path.write_text(json.dumps(data, indent=4, ensure_ascii=False))

        with custom_metadata(w.crm, override):
            w.set_meta(last_listing="0")
            listing = w.run()
            out["listing_override"] = {"wall": listing.wall, **w.counts()}
            say(f"listing pass with the override: {out['listing_override']}")
            full = w.run(["sync", "--no-preview", "--full"])
            out["full_override"] = {"wall": full.wall, "rss_mb": full.maxrss_mb, **w.counts()}
            say(f"--full with the override: {out['full_override']}")

        rng = random.Random(12)
        latencies, walls = [], []
        for i in range(changes):
            doc_id = w.docs[rng.randrange(n)]
            replace_file(w, doc_id, f"Fassung {i}\n".encode())
            run = w.run()
            if w.admin.read(doc_id)["dateiStatus"] != "Gesynct":
                raise SystemExit(f"change {i}: {doc_id} is not Gesynct after the run")
            walls.append(run.wall)
            latencies.append(rng.uniform(0, 60 + run.wall) + rng.uniform(0, TIMER_JITTER) + run.wall
                             + INDEXING_SECONDS)
        out["latency"] = {"changes": changes, "p95": _p95(latencies), "median": round(statistics.median(latencies), 1),
                          "run_wall_p95": _p95(walls), "run_wall_median": round(statistics.median(walls), 2)}
        say(f"latency: {out['latency']}")
    return out


def measure_emulator(n: int, changes: int) -> dict[str, Any]:
    """``bench_changes.py``'s goals at the same size (emulators in this process, 20 ms per request)."""
    return {"docs": n, "million": goal_million(n, changes), "listing": goal_listing(n)}


# ---------------------------------------------------------------------------------------------------
# results and the README table


def save(name: str, data: dict[str, Any]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data["measured_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
    data["machine"] = machine()
    (RESULTS / f"real_{name}.json").write_text(json.dumps(data, indent=2))


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"real_{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def report() -> str:
    real, emu = load("server"), load("emulator")
    if real is None or emu is None:
        return "(no results yet: run `bench/bench_real.py all --instance DIR`)"
    n = real["docs"]
    m, lst = emu["million"], emu["listing"]

    def reqs(r: dict[str, Any]) -> str:
        return f"{r['espo_requests']} EspoCRM + {r['xai_requests']} xAI requests"

    def timing(r: dict[str, Any]) -> str:
        return (f"; the server took {r['espo_seconds']:.2f} s in all (GET median {r['espo_get_median_ms']} ms, "
                f"max {r['espo_get_max_ms']} ms)")

    noop, one, listing, full = real["noop"], real["one_change"], real["listing"], real["full"]
    lo, fo, lat = real["listing_override"], real["full_override"], real["latency"]
    en, eo, el = m["noop"], m["one_change"], m["latency"]
    rows = [
        f"| measurement, {n:,} documents | real EspoCRM 9.2.7 (PHP built-in server, 4 workers, MariaDB) | "
        f"emulator, {LATENCY * 1000:.0f} ms per request |",
        "|---|---|---|",
        f"| no-op plain run | {reqs(noop)}, {noop['writes']} writes in 3 runs, {noop['wall']:.2f} s (median of 3, "
        f"Python start-up included){timing(noop)} | {en['espo_requests']} EspoCRM + {en['xai_requests']} xAI "
        f"requests, {en['writes']} writes, {en['wall']:.2f} s |",
        f"| one change (a replaced file) | {reqs(one)}, {one['wall']:.2f} s; {one['status']}, searchable: "
        f"{one['searchable']}{timing(one)} | {eo['espo_requests']} EspoCRM + {eo['xai_requests']} xAI requests, "
        f"{eo['wall']:.2f} s; {eo['status']}, searchable: {eo['searchable']} |",
        f"| listing pass (hourly), without the accountsIds override | {reqs(listing)}, {listing['wall']:.2f} s"
        f"{timing(listing)} | {lst['no_override']['listing_requests']} EspoCRM requests, "
        f"{lst['no_override']['listing_wall']:.2f} s |",
        f"| listing pass with the override | {reqs(lo)}, {lo['wall']:.2f} s{timing(lo)} | "
        f"{lst['override']['listing_requests']} EspoCRM requests, {lst['override']['listing_wall']:.2f} s |",
        f"| `--full`, without / with the override | {reqs(full)}, {full['writes']} writes, {full['wall']:.1f} s / "
        f"{reqs(fo)}, {fo['writes']} writes, {fo['wall']:.1f} s | {lst['no_override']['full_espo_requests']} + "
        f"{lst['no_override']['full_xai_requests']}, {lst['no_override']['full_writes']} writes, "
        f"{lst['no_override']['full_wall']:.1f} s / {lst['override']['full_espo_requests']} + "
        f"{lst['override']['full_xai_requests']}, {lst['override']['full_writes']} writes, "
        f"{lst['override']['full_wall']:.1f} s |",
        f"| change → searchable, timer every minute, xAI indexing {INDEXING_SECONDS:.0f} s "
        f"({lat['changes']} changes) | p95 {lat['p95']:.1f} s, median {lat['median']:.1f} s; the run itself: "
        f"median {lat['run_wall_median']:.2f} s, p95 {lat['run_wall_p95']:.2f} s | p95 {el['p95']:.1f} s, "
        f"median {el['median']:.1f} s; run p95 {el['run_wall_p95']:.2f} s |",
    ]
    return "\n".join([
        f"Measured by `.venv/bin/python bench/bench_real.py all --instance DIR` on {real['measured_at']} UTC "
        f"(emulator side {emu['measured_at']} UTC). Machine: {real['machine']}.",
        "",
        *rows,
    ])


def write_readme(section: str) -> None:
    block = f"{BEGIN}\n{section}\n{END}"
    text = README.read_text()
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## A real EspoCRM (issue 24)\n\n" + block + "\n"
    README.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("goal", choices=["all", "server", "emulator", "report"])
    parser.add_argument("--instance", type=Path, help="the fixture's DIR (setup.sh DIR), running")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.goal in ("all", "server"):
        if args.instance is None:
            parser.error("--instance DIR is needed to measure the real server")
        save("server", measure_real(args.instance.resolve(), args.docs, args.changes))
    if args.goal in ("all", "emulator"):
        save("emulator", measure_emulator(args.docs, args.changes))
    table = report()
    print(table)
    if not args.no_readme:
        write_readme(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
