"""``sandbox`` and ``provision``: a local Dataverse, and the columns the mapping needs."""

from __future__ import annotations

import shlex
import time
from pathlib import Path

import typer

from dynamics_bridge.cli._app import app, console, err_console, sandbox_missing
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.provision import apply_plan, plan
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping
from dynamics_bridge.settings import load_settings


@app.command()
def sandbox(
    db: Path = typer.Option(Path(".bridge/sandbox/dataverse.sqlite"), help="SQLite file."),
    port: int = typer.Option(0, help="0 picks a free port."),
    requests_per_window: int = typer.Option(6000, help="Limit per app user per window."),
    time_scale: float = typer.Option(1.0, help="60 makes the 5-minute window last 5 s."),
    execution_ms_per_window: int = typer.Option(1_200_000, help="Execution-time budget."),
    max_concurrent: int = typer.Option(52, help="Requests in flight per app user."),
    latency: float = typer.Option(0.0, help="Seconds added to every request."),
    fault_rate: float = typer.Option(0.0, help="Share of requests answered 503."),
    reset_rate: float = typer.Option(0.0, help="Share of connections dropped."),
    app_users: int = typer.Option(
        1, "--app-users", min=1, max=50, help="App users to register, each with its own budget."
    ),
) -> None:
    """Run the local Dataverse (and its token endpoint) in the foreground until Ctrl-C."""
    try:
        from dynamics_bridge_sandbox.dataverse import Limits
        from dynamics_bridge_sandbox.server import run_sandbox
    except ModuleNotFoundError as exc:
        raise sandbox_missing(exc) from None
    db.parent.mkdir(parents=True, exist_ok=True)
    limits = Limits(
        requests_per_window=requests_per_window,
        execution_ms_per_window=execution_ms_per_window,
        max_concurrent=max_concurrent,
        time_scale=time_scale,
        latency_seconds=latency,
        fault_rate=fault_rate,
        reset_rate=reset_rate,
    )
    with run_sandbox(db, limits=limits, port=port or None, app_users=app_users) as box:
        console.print(f"Dataverse sandbox on {box.url} (data in {db}). Export:")
        for name, value in box.env.items():
            typer.echo(f"export {name}={shlex.quote(value)}")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            console.print("stopped")


@app.command()
def provision(
    apply: bool = typer.Option(False, "--apply", help="Create what is missing."),
    mapping: Path = typer.Option(DEFAULT_MAPPING, help="The Dataverse mapping file."),
) -> None:
    """Print (or with --apply create) the tables, columns, lookups, choice values and keys the
    mapping lacks; --apply waits for new alternate keys to be Active."""
    try:
        settings = load_settings().dataverse
        model = load_mapping(mapping)
        # Every configured app user, and BRIDGE_DATAVERSE__SOLUTION as MSCRM.SolutionUniqueName.
        client = DataverseClient.from_settings(settings)
        steps = plan(client, model)
        for step in steps:
            console.print(("" if apply else "would ") + step.describe(), highlight=False)
        if apply:
            apply_plan(client, steps)  # then waits for each new key's index to be Active
        solution = f" in solution {settings.solution}" if settings.solution and steps else ""
        console.print(f"{len(steps)} step(s){solution}" + ("" if apply else "; run with --apply"))
    except BridgeError as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
