"""``sync/keys.py``: each xAI key is proven by one cheap read when the run did not use it, at most every
PROOF_SECONDS per key and URL; the proof file holds fingerprints, never a key (docs/contracts.md §15)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pytest_httpx import HTTPXMock

from docsync_cli.errors import AuthError
from docsync_cli.sync.keys import PROOF_FILE, PROOF_SECONDS, fingerprint, prove_keys
from docsync_cli.transport.http import RetryPolicy, ServiceClient
from docsync_cli.xai.client import XaiClient, build_http_client, xai_detail

FILES, MGMT = "https://api.x.example", "https://mgmt.x.example"
API_KEY, MGMT_KEY = "xai-api-key-abc", "xai-mgmt-key-def"
MARKS = (fingerprint(FILES, API_KEY), fingerprint(MGMT, MGMT_KEY))
FILES_LIST = re.compile(r"https://api\.x\.example/v1/files\?limit=1")
COLLECTIONS = re.compile(r"https://mgmt\.x\.example/v1/collections\?limit=1")


def make_xai() -> XaiClient:
    policy = RetryPolicy(attempts=1, wait_initial=0, wait_max=0)
    return XaiClient(ServiceClient("xai", build_http_client(FILES, API_KEY, 5.0), retry=policy, detail=xai_detail),
                     ServiceClient("xai-management", build_http_client(MGMT, MGMT_KEY, 5.0), retry=policy,
                                   detail=xai_detail))


def test_both_keys_are_proven_once_then_kept_for_a_while(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    httpx_mock.add_response(url=FILES_LIST, json={"data": []})
    httpx_mock.add_response(url=COLLECTIONS, json={"collections": []})
    assert prove_keys(make_xai(), tmp_path, MARKS, wall=lambda: 1000.0) == 2
    assert prove_keys(make_xai(), tmp_path, MARKS, wall=lambda: 1000.0 + PROOF_SECONDS - 1) == 0
    text = (tmp_path / PROOF_FILE).read_text()
    assert API_KEY not in text and MGMT_KEY not in text
    assert (tmp_path / PROOF_FILE).stat().st_mode & 0o777 == 0o600


def test_a_key_used_by_the_run_needs_no_probe(tmp_path: Path) -> None:
    xai = make_xai()
    xai.files.succeeded = xai.management.succeeded = True
    assert prove_keys(xai, tmp_path, MARKS) == 0


def test_another_key_or_a_damaged_file_has_no_proof(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    (tmp_path / PROOF_FILE).write_text("{not json")
    httpx_mock.add_response(url=FILES_LIST, status_code=400,
                            json={"code": "Client specified an invalid argument",
                                  "error": "Incorrect API key provided: xa***bc."})
    with pytest.raises(AuthError):
        prove_keys(make_xai(), tmp_path, (fingerprint(FILES, "xai-other"), MARKS[1]))
