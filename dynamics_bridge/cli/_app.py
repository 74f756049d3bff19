"""The shared typer app and consoles; command modules import these."""

from __future__ import annotations

import typer
from rich.console import Console

from dynamics_bridge import __version__

app = typer.Typer(
    name="dynamics-bridge",
    help="Swedish payment events into Dynamics 365 member records and APSIS One.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


@app.command()
def version() -> None:
    """Print the installed version."""
    console.print(__version__)
