"""Every docsync log line passes through the redaction filter once the settings are loaded."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from docsync_cli.cli import app as cli
from docsync_cli.config import load_settings

CANARY = "xai-CANARY-0123456789"


def test_a_secret_in_a_log_message_is_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = load_settings(None, env={"ESPOCRM_URL": "http://crm.example", "ESPOCRM_API_KEY": "espo-key-1",
                                        "XAI_API_KEY": CANARY, "XAI_MANAGEMENT_KEY": "mgmt-key-1",
                                        "DOCSYNC_STATE_DIR": str(tmp_path)})
    saved = logging.getLogger().handlers[:]
    cli._setup_logging(verbose=1, log_format="text")
    cli._install_redaction(settings)
    try:
        logging.getLogger("docsync.test").warning("server echoed %s back", CANARY)
    finally:
        cli._REDACTOR.settings = None
        logging.getLogger().handlers[:] = saved
        root = logging.getLogger("docsync")
        root.handlers.clear()
        root.propagate = True
        root.setLevel(logging.NOTSET)
    err = capsys.readouterr().err
    assert "server echoed *** back" in err
    assert CANARY not in err
