"""The emulator commands: ``docsync sandbox serve`` and ``docsync demo``. The emulators (``docsync_sandbox``) are
imported inside the commands, so the rest of the CLI never loads them."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated

import typer

from docsync_cli.cli import views as ui
from docsync_cli.outcome import EXIT_LOCAL

sandbox_app = typer.Typer(help="Local EspoCRM and xAI emulators for trying docsync safely.", no_args_is_help=True)


@sandbox_app.command("serve")
def sandbox_serve(
    espocrm_port: Annotated[int, typer.Option(min=0, max=65535,
                                              help="Port of the EspoCRM emulator (0 = any free).")] = 0,
    xai_port: Annotated[int, typer.Option(min=0, max=65535,
                                          help="Port of the xAI Files API emulator (0 = any free).")] = 0,
    management_port: Annotated[int, typer.Option(min=0, max=65535,
                                                 help="Port of the xAI Management emulator (0 = any free).")] = 0,
    processing_delay: Annotated[float, typer.Option(help="Seconds xAI keeps documents PROCESSING.")] = 1.0,
    crm: Annotated[str, typer.Option(help="How the emulated EspoCRM defines docsync's fields: design (the design "
                                     "document's), generated (`docsync espocrm-fields`), c-prefixed, "
                                     "preview-file, page-cap-50 or hmac.")] = "design",
) -> None:
    """Run both emulators seeded with a sample firm, and print the environment block to use them."""
    from docsync_cli.crm.fields import entity_defs
    from docsync_sandbox.crm_profiles import PROFILE_NAMES, profile
    from docsync_sandbox.demo import StopSignals
    from docsync_sandbox.seed import Sandbox, corpus_dir

    if crm not in PROFILE_NAMES:
        raise typer.BadParameter(f"choose one of {', '.join(PROFILE_NAMES)}", param_hint="--crm")
    stop = StopSignals()
    try:
        # "generated": the emulated CRM after an admin installed what `docsync espocrm-fields` prints
        installed = entity_defs({})["fields"] if crm == "generated" else None
        with Sandbox(processing_delay=processing_delay, ports=(espocrm_port, xai_port, management_port),
                     crm=profile(crm, installed=installed)) as sandbox:
            sandbox.seed_firm(corpus_dir())
            state_dir = sandbox_state_dir()
            ui.print_sandbox_environment(sandbox.environment(state_dir), state_dir)
            signum = stop.wait()
    except OSError as exc:  # e.g. a --*-port another program listens on
        stop.restore()
        typer.echo(f"docsync sandbox serve: cannot start the emulators: {exc.strerror or exc}; choose other ports "
                   "or 0 (any free port)", err=True)
        raise typer.Exit(EXIT_LOCAL) from None
    typer.echo(f"# emulators stopped ({signum.name})", err=True)


def sandbox_state_dir() -> Path:
    """The state directory serve's block names: a fresh, unguessable path in ``/tmp`` that does not exist yet, so
    the first docsync run with the block creates it (0700) for whoever runs it: root, the service user, anyone.
    Never under the directory serve was started from (root's home would lock the service user out)."""
    return Path("/tmp") / f"docsync-sandbox-{secrets.token_hex(6)}"  # noqa: S108 - unguessable, made 0700 by its user


def demo(
    keep_running: Annotated[bool, typer.Option("--keep-running", help="Keep the emulators up afterwards.")] = False,
    contact_sheet: Annotated[Path | None, typer.Option("--contact-sheet", help="Where to write the PNG of every "
                                                       "preview (default: ./docsync-demo-previews.png).")] = None,
) -> None:
    """Start the emulators, seed a firm, run a real `docsync sync` against them, and show the result."""
    from docsync_sandbox.demo import run_demo

    raise typer.Exit(run_demo(ui.DemoConsole(), keep_running=keep_running, contact_sheet=contact_sheet))
