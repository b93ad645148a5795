"""Prometheus textfile for the node_exporter textfile collector: the outcome of the newest run.

This module owns the metric names and the one file it writes (``<dir>/docsync.prom``; node_exporter reads only
``*.prom`` files). The file is replaced atomically, so the collector sees the old file or the new one, never a
half-written one, and it is made world-readable (``0644``) before it appears, because docsync runs with
``UMask=0077`` while node_exporter runs as another user.

Metrics (all gauges)::

    docsync_last_run_timestamp_seconds       end of the newest run (Unix time)
    docsync_last_run_duration_seconds        its duration
    docsync_last_run_exit_code               its exit code (0 ok, 1 partial failure, 75 lock held, ...)
    docsync_last_success_timestamp_seconds   end of the newest run that exited 0 (absent if there is none)
    docsync_documents{result="synced"}       one series per key of RunRecord.counts (synced, failed, ...)

``docsync verify --metrics-file`` writes its own file (use another name, e.g. ``docsync_verify.prom``)::

    docsync_verify_found_ratio               share of probed documents found in the top N (0..1; absent if
                                             nothing could be probed)
    docsync_verify_probed_documents          documents probed
    docsync_verify_missed_documents          of them not found
    docsync_verify_timestamp_seconds         end of the verify run (Unix time)

Alert on staleness with e.g. ``time() - docsync_last_success_timestamp_seconds > 3600`` plus
``absent(docsync_last_success_timestamp_seconds)``.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from docsync_cli.state.history import RunRecord

FILE_MODE = 0o644


def build_registry(run: RunRecord, last_success_unixtime: float | None) -> CollectorRegistry:
    """A fresh registry holding the gauges for ``run`` (see the module docstring for the names)."""
    registry = CollectorRegistry()
    Gauge(
        "docsync_last_run_timestamp_seconds", "Unix time at which the newest docsync run finished.", registry=registry
    ).set(run.finished_unixtime)
    Gauge("docsync_last_run_duration_seconds", "Duration of the newest docsync run in seconds.", registry=registry).set(
        run.duration_seconds
    )
    Gauge("docsync_last_run_exit_code", "Exit code of the newest docsync run (0 = success).", registry=registry).set(
        run.exit_code
    )
    if last_success_unixtime is not None:
        Gauge(
            "docsync_last_success_timestamp_seconds",
            "Unix time at which the newest successful (exit code 0) docsync run finished.",
            registry=registry,
        ).set(last_success_unixtime)
    documents = Gauge(
        "docsync_documents",
        "Documents per result in the newest docsync run (synced, failed, pending, unchanged, deleted, ...).",
        ["result"],
        registry=registry,
    )
    for result, count in sorted(run.counts.items()):
        documents.labels(result=result).set(count)
    return registry


def write_metrics(path: Path, run: RunRecord, last_success_unixtime: float | None) -> None:
    """Atomically replace ``path`` (should end in ``.prom``) with the metrics of ``run``.

    The content is first written (atomically, by ``prometheus_client.write_to_textfile``) to a hidden staging
    file next to ``path``, made ``0644``, then renamed over ``path``; on any error the staging file is removed
    and ``path`` is left as it was. Raises ``OSError`` if the directory is missing or not writable.
    """
    _replace(path, build_registry(run, last_success_unixtime))


def build_verify_registry(found_ratio: float | None, probed: int, missed: int, finished_unixtime: float
                          ) -> CollectorRegistry:
    """The gauges of one ``docsync verify`` run (see the module docstring)."""
    registry = CollectorRegistry()
    if found_ratio is not None:
        Gauge("docsync_verify_found_ratio", "Share of probed documents docsync verify found in the top results "
              "of their collections (0..1).", registry=registry).set(found_ratio)
    Gauge("docsync_verify_probed_documents", "Documents the newest docsync verify probed.",
          registry=registry).set(probed)
    Gauge("docsync_verify_missed_documents", "Probed documents docsync verify did not find.",
          registry=registry).set(missed)
    Gauge("docsync_verify_timestamp_seconds", "Unix time at which the newest docsync verify finished.",
          registry=registry).set(finished_unixtime)
    return registry


def write_verify_metrics(path: Path, found_ratio: float | None, probed: int, missed: int,
                         finished_unixtime: float) -> None:
    """Atomically replace ``path`` with the gauges of one verify run (same guarantees as :func:`write_metrics`)."""
    _replace(path, build_verify_registry(found_ratio, probed, missed, finished_unixtime))


def _replace(path: Path, registry: CollectorRegistry) -> None:
    staging = path.with_name(f".{path.name}.{os.getpid()}.staging")
    try:
        write_to_textfile(str(staging), registry)
        os.chmod(staging, FILE_MODE)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
