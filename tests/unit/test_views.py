"""``ui.py``, the output boundary: every printed string passes the secret scrubber, report lines are literal
(no rich markup) and redacted with the configured keys, and ``--json`` output is redacted too."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from docsync_cli.cli import views as ui
from docsync_cli.config import load_settings

CONFIGURED = "plain-configured-key-77"  # no echoed-key shape: only the settings know it is a secret


def console() -> tuple[ui.Scrubbed, io.StringIO]:
    buffer = io.StringIO()
    return ui.Scrubbed(Console(file=buffer, highlight=False, soft_wrap=True, width=200)), buffer


def settings(tmp_path: Path) -> object:
    return load_settings(None, env={"ESPOCRM_URL": "http://crm.example", "ESPOCRM_API_KEY": CONFIGURED,
                                    "XAI_API_KEY": "xai-k2", "XAI_MANAGEMENT_KEY": "xai-k3",
                                    "DOCSYNC_STATE_DIR": str(tmp_path)})


def test_the_console_scrubs_echoed_key_shapes() -> None:
    out, buffer = console()
    out.print("server said: Bearer xai-abcdefghijklmnopqrstuvwxyz0123", markup=False)
    assert "abcdefghijklmnopqrstuvwxyz0123" not in buffer.getvalue()


def test_report_lines_are_literal_and_redacted_with_the_configured_keys(tmp_path: Path) -> None:
    out, buffer = console()
    printer = ui.LinePrinter(out, settings(tmp_path))  # type: ignore[arg-type]
    printer.line(f"[bold]Akte[/] key {CONFIGURED}", style="red")
    assert buffer.getvalue() == "[bold]Akte[/] key ***\n"


def test_without_settings_a_line_is_printed_as_given() -> None:
    out, buffer = console()
    ui.LinePrinter(out).line("✓ configuration: loaded [from env]")
    assert buffer.getvalue() == "✓ configuration: loaded [from env]\n"


def test_json_output_is_redacted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ui.print_json({"error": f"refused {CONFIGURED}", "name": "Müller"}, settings(tmp_path))  # type: ignore[arg-type]
    assert capsys.readouterr().out == '{\n  "error": "refused ***",\n  "name": "Müller"\n}\n'
