"""Proof that both xAI keys work, so a wrong key fails the first timer run, not the first new document.

A run with nothing to do makes no xAI request, so a wrong or revoked ``XAI_API_KEY`` or ``XAI_MANAGEMENT_KEY``
would end with exit 0 until a document needs work. After a run completes, each key that got no successful answer
during the run and has no recent proof (:data:`PROOF_SECONDS`, for this key at this URL) is proven with the
cheapest read: ``GET /v1/files?limit=1`` for the Files API key, ``GET /v1/collections?limit=1`` for the
management key (docs/contracts.md §5.2, §6.2). A wrong key is answered 400 naming it (§15): an
:class:`~docsync_cli.errors.AuthError`, exit 3.

Proofs are kept in the state dir's ``keys-proven.json`` (``0600``) as a time per fingerprint: a truncated SHA-256
of the URL and the key, never the key. A changed key or URL has no proof and is asked for on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from docsync_cli.config import Settings
from docsync_cli.state.installation import private_file
from docsync_cli.transport.http import ServiceClient
from docsync_cli.xai.client import XaiClient

log = logging.getLogger("docsync.keys")

PROOF_FILE = "keys-proven.json"
PROOF_SECONDS = 15 * 60.0


def fingerprint(url: str, key: str) -> str:
    """What identifies a key at a URL in the proof file (no way back to the key)."""
    return hashlib.sha256(f"docsync key proof\0{url.rstrip('/')}\0{key}".encode()).hexdigest()[:24]


def key_fingerprints(settings: Settings) -> tuple[str, str]:
    """The Files API key's and the management key's fingerprints, in the order :func:`prove_keys` takes them."""
    xai = settings.xai
    return (fingerprint(xai.api_url, xai.api_key.get_secret_value()),
            fingerprint(xai.management_url, xai.management_key.get_secret_value()))


def read_proofs(state_dir: Path) -> dict[str, float]:
    """The proofs on file; a missing or unreadable file is no proof (the keys are asked again)."""
    try:
        raw = json.loads((state_dir / PROOF_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: float(v) for k, v in raw.items() if isinstance(k, str) and isinstance(v, int | float)}


def write_proofs(state_dir: Path, proofs: dict[str, float]) -> None:
    """Store ``proofs`` atomically, private, never through a symlink; failing to store one only costs a request."""
    staging = state_dir / f".{PROOF_FILE}.{os.getpid()}"
    try:
        private_file(staging)
        staging.write_text(json.dumps(proofs, sort_keys=True), encoding="utf-8")
        os.replace(staging, state_dir / PROOF_FILE)
    except OSError as exc:
        log.debug("cannot keep the key proofs in %s: %s", state_dir, exc)


def prove_keys(xai: XaiClient, state_dir: Path, fingerprints: tuple[str, str],
               wall: Callable[[], float] = time.time) -> int:
    """Prove the Files API key and the management key (``fingerprints`` in that order) unless this run or a recent
    one did; raise what a refused probe raises. Returns the number of probes sent."""
    proofs = read_proofs(state_dir)
    now = wall()
    sent = 0
    checks: tuple[tuple[str, ServiceClient, Callable[[], None]], ...] = (
        (fingerprints[0], xai.files, xai.probe_files),
        (fingerprints[1], xai.management, xai.probe_management),
    )
    for mark, service, probe in checks:
        proven = proofs.get(mark)
        if service.succeeded:
            proofs[mark] = now
        elif proven is None or not 0 <= now - proven < PROOF_SECONDS:
            sent += 1
            probe()
            proofs[mark] = now
    write_proofs(state_dir, {mark: proofs[mark] for mark in fingerprints if mark in proofs})
    return sent
