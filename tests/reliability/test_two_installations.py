"""Two installations on one CRM are a configuration error, not a loop.

Two hosts sync the same EspoCRM into the same xAI team, each with its own state dir (so its own installation id)
and the default file lock. The second one finds the first one's ownership record on the documents' files: it adds
no copy, stops with exit 2 and says how to share one installation or split the work. No run re-uploads a document
whose content did not change. Checked from the emulators' state and journals.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docsync_cli.errors import ForeignInstallation
from docsync_cli.outcome import EXIT_OK, EXIT_USAGE
from docsync_cli.state import installation_id
from docsync_sandbox.seed import Sandbox

from .helpers import Firm, clear_journals, describe, run_engine, run_sync, sandbox_running, seed_small_firm
from .invariants import assert_invariants

UPLOAD = r"/v1/files"


@pytest.fixture
def firm(tmp_path: Path) -> Iterator[tuple[Sandbox, Firm]]:
    with sandbox_running() as sandbox:
        yield sandbox, seed_small_firm(sandbox)


def test_a_second_installation_on_the_same_crm_stops_with_exit_2_and_adds_no_copies(
        firm: tuple[Sandbox, Firm], tmp_path: Path) -> None:
    sandbox, _ = firm
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    first = run_engine(sandbox, host_a, full=False)
    assert first.exit_code == EXIT_OK, first
    files = set(sandbox.xai.files())
    clear_journals(sandbox)
    for _ in range(2):  # every run of host B, not only its first
        other = run_engine(sandbox, host_b, full=False)
        assert other.exit_code == EXIT_USAGE, other
        assert isinstance(other.summary.fatal, ForeignInstallation), other
        assert installation_id(host_a) in other.summary.fatal.others
    assert sandbox.xai.requests("POST", UPLOAD) == [], "host B uploaded a copy"
    assert set(sandbox.xai.files()) == files
    a = sandbox.espo.attr
    assert not [d["id"] for d in sandbox.espo.documents() if d.get(a("dateiStatus")) == "Fehler"]
    # Host A is untouched: still in step, and its next runs write nothing.
    clear_journals(sandbox)
    for full in (False, True):
        again = run_engine(sandbox, host_a, full=full)
        assert again.exit_code == EXIT_OK, again
    assert sandbox.xai.writes() == [] and sandbox.espo.writes() == [], "an unchanged document was written again"
    assert_invariants(sandbox, all_synced=True, installation=installation_id(host_a))


def test_the_cli_names_both_ways_out(firm: tuple[Sandbox, Firm], tmp_path: Path) -> None:
    sandbox, _ = firm
    assert run_engine(sandbox, tmp_path / "host-a", full=False).exit_code == EXIT_OK
    proc = run_sync(sandbox, tmp_path / "host-b")
    assert proc.returncode == EXIT_USAGE, describe(proc)
    err = proc.stderr
    assert "another docsync installation" in err and "Traceback" not in err, describe(proc)
    assert "installation_id" in err and "redis" in err and "split the work" in err, describe(proc)


def test_hosts_that_share_the_installation_id_are_one_installation(firm: tuple[Sandbox, Firm],
                                                                    tmp_path: Path) -> None:
    sandbox, _ = firm
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    assert run_engine(sandbox, host_a, full=False).exit_code == EXIT_OK
    clear_journals(sandbox)
    shared = run_engine(sandbox, host_b, full=False, DOCSYNC_SYNC__INSTALLATION_ID=installation_id(host_a))
    assert shared.exit_code == EXIT_OK, shared
    assert sandbox.xai.requests("POST", UPLOAD) == [], "an unchanged document was uploaded again"
    assert_invariants(sandbox, all_synced=True)
