"""The shared typer app and consoles; command modules import these."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from dynamics_bridge import __version__
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.logs import configure_logging
from dynamics_bridge.settings import load_settings

app = typer.Typer(
    name="dynamics-bridge",
    help="Swedish payment events into Dynamics 365 member records and APSIS One.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # paths and messages stay on one line for grep and logs
err_console = Console(stderr=True, soft_wrap=True)


@app.callback()
def main(
    log_level: str = typer.Option("WARNING", envvar="BRIDGE_LOG__LEVEL", help="Log level."),
) -> None:
    """Swedish payment events into Dynamics 365 member records and APSIS One."""
    install_logging(log_level)


def install_logging(level: str) -> None:
    """JSON lines on stderr (stdout stays for results: tables, --json), scrubbed as the function
    app's: personnummer masked from the first line, the configured secrets removed once the
    settings load. Settings that do not load leave the filter without secrets; the command
    that needs them reports the problem (``check`` lists every one)."""
    configure_logging(level, stream=sys.stderr)
    try:
        secrets = load_settings().secrets()
    except ConfigError:
        return
    configure_logging(level, secrets=secrets, stream=sys.stderr)


@app.command()
def version() -> None:
    """Print the installed version."""
    console.print(__version__)


def sandbox_missing(exc: ModuleNotFoundError) -> typer.Exit:
    """The local stand-ins and the demo are a second distribution, never deployed: say how to
    get it instead of a traceback (only when it is the sandbox that is missing)."""
    if not (exc.name or "").startswith("dynamics_bridge_sandbox"):
        raise exc
    err_console.print(
        "the local sandbox is not installed: pip install -e packages/dynamics-bridge-sandbox "
        "(make demo and make test install it)",
        highlight=False,
    )
    return typer.Exit(2)
