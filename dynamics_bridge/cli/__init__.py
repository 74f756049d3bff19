"""The ``dynamics-bridge`` command. Each area adds its commands in its own module below.

To add an area: write ``dynamics_bridge/cli/<area>.py`` that decorates functions with
``@app.command()`` (or adds a sub-typer) and import it in the block below.
"""

from __future__ import annotations

from dynamics_bridge.cli._app import app, console, err_console

# Command modules register themselves on ``app`` when imported.
# isort: off
from dynamics_bridge.cli import config, dataverse, demo, ingest, poison, sync  # noqa: F401
from dynamics_bridge.cli import spar  # noqa: F401
from dynamics_bridge.cli import activation  # noqa: F401
from dynamics_bridge.cli import retention, status, web_console  # noqa: F401
# isort: on

__all__ = ["app", "console", "err_console"]
