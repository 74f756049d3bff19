"""``dynamics-bridge console``: the admin console on this machine (``--demo``: over the demo's day).

Served by uvicorn on 127.0.0.1:8470; the address printed carries a one-time sign-in token (the
console has no anonymous pages). The module is not called ``console``: ``dynamics_bridge.cli``
exports the rich ``console`` every command prints with, and a submodule of that name would
replace it.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dynamics_bridge.cli._app import app, console, err_console, sandbox_missing

if TYPE_CHECKING:
    from dynamics_bridge.app.wiring import Services

DEFAULT_PORT = 8470


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(services: Services, host: str, port: int) -> None:
    """Serve the console over ``services`` until Ctrl+C; print the one-time sign-in link."""
    import uvicorn

    from dynamics_bridge.app.console import create_app

    gate = create_app(services, auth="local")
    token = gate.new_login_token()
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"Console: http://{shown}:{port}/login?token={token}\n"
        "(the link signs one browser in, once; Ctrl+C stops the console)",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(gate, host=host, port=port, log_level="warning", access_log=False)


@app.command("console")
def console_command(
    host: str = typer.Option("127.0.0.1", help="Listen on this address (loopback by default)."),
    port: int = typer.Option(DEFAULT_PORT, min=1, max=65535, help="Listen on this port."),
    demo: bool = typer.Option(
        False, "--demo", help="Run the sandbox demo first and serve the console over its day."
    ),
    members: int = typer.Option(300, min=20, help="--demo: fictitious members to seed."),
    workdir: Path = typer.Option(Path(".bridge/demo"), help="--demo: sandbox files go here."),
) -> None:
    """The admin console: overview, history, poison book, segments, triggers and mapping."""
    if not _loopback(host):
        err_console.print(
            f"[yellow]![/yellow] {host} is not a loopback address: the console speaks plain "
            "HTTP here; in Azure it is served by the function app behind App Service "
            "Authentication.",
            highlight=False,
        )
    if not demo:
        from dynamics_bridge.cli.sync import cli_services
        from dynamics_bridge.settings import load_settings

        serve(cli_services(load_settings()), host, port)
        return
    try:
        from dynamics_bridge_sandbox.demo.run import run_demo
    except ModuleNotFoundError as exc:
        raise sandbox_missing(exc) from None

    def then(services: Services) -> None:
        absorbed = services.poison_book.absorb()  # the demo's poison queue, into the book
        console.print(
            f"Demo done: {absorbed} poison message(s) in the book; the sandbox stays up while "
            "the console runs.",
            highlight=False,
        )
        serve(services, host, port)

    console.print("Running the demo (sandbox Dataverse, APSIS and SPAR stand-ins)…")
    intake_log = logging.getLogger("dynamics_bridge.intake")
    level = intake_log.level
    intake_log.setLevel(logging.ERROR)  # the demo's forged callback is refused on purpose
    try:
        run_demo(workdir, members=members, then=then)
    finally:
        intake_log.setLevel(level)
