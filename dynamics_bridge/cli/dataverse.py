"""``sandbox`` and ``provision``: stand-ins to practise on, and the columns the mapping needs."""

from __future__ import annotations

import shlex
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from dynamics_bridge.app.check import MAPPING_FILE
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli._app import app, console, err_console, sandbox_missing
from dynamics_bridge.dataverse.provision import apply_plan, environment, key_mismatches, plan
from dynamics_bridge.errors import BridgeError, ConfigError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.settings import load_settings


class StandIn(StrEnum):
    dataverse = "dataverse"
    apsis = "apsis"
    spar = "spar"
    all = "all"


@app.command()
def sandbox(
    which: StandIn = typer.Argument(
        StandIn.dataverse, help="Entra + Dataverse, APSIS One, SPAR, or all three."
    ),
    state_dir: Path = typer.Option(
        Path(".bridge/sandbox"),
        "--state-dir",
        help="Credentials, ports, the CA and .env, kept between runs.",
    ),
    db: Path | None = typer.Option(None, help="SQLite file [default: STATE_DIR/dataverse.sqlite]."),
    port: int = typer.Option(0, help="Dataverse's port; 0 reuses the last one when free."),
    apsis_port: int = typer.Option(0, help="APSIS's port; 0 reuses the last one when free."),
    spar_port: int = typer.Option(0, help="SPAR's port; 0 reuses the last one when free."),
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
    retention_members: int = typer.Option(
        0,
        "--retention-members",
        min=0,
        help="Seed a synthetic register of this many members with three years of history "
        "(planted churn drivers and leaver groups) for `dynamics-bridge retention`.",
    ),
) -> None:
    """Run local stand-ins in the foreground until Ctrl-C, with the same credentials, ports and
    CA as last time; STATE_DIR/.env holds their BRIDGE_* settings (set -a; . FILE; set +a)."""
    try:
        from dynamics_bridge_sandbox.dataverse import Limits
        from dynamics_bridge_sandbox.standins import STANDINS, run_standins
    except ModuleNotFoundError as exc:
        raise sandbox_missing(exc) from None
    names = list(STANDINS) if which is StandIn.all else [which.value]
    limits = Limits(
        requests_per_window=requests_per_window,
        execution_ms_per_window=execution_ms_per_window,
        max_concurrent=max_concurrent,
        time_scale=time_scale,
        latency_seconds=latency,
        fault_rate=fault_rate,
        reset_rate=reset_rate,
    )
    ports = {"dataverse": port, "apsis": apsis_port, "spar": spar_port}
    try:
        with run_standins(
            names, state_dir, db=db, ports=ports, limits=limits, app_users=app_users
        ) as running:
            if retention_members and running.dataverse is not None:
                _seed_retention(running.dataverse, retention_members)
            labels = {"dataverse": "Dataverse sandbox", "apsis": "APSIS stand-in", "spar": "SPAR"}
            for name, url in running.urls.items():
                console.print(f"{labels[name]} on {url}", highlight=False)
            for name, value in running.env.items():
                typer.echo(f"export {name}={shlex.quote(value)}")
            console.print(
                f"ready; settings in {running.env_file}: set -a; . {running.env_file}; set +a",
                highlight=False,
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:  # Ctrl-C: leaving the block has stopped them
        console.print("stopped")
    except BridgeError as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def _seed_retention(info: Any, members: int) -> None:
    """The synthetic register on the sandbox (the ``retention`` extra); said, and skipped,
    without it."""
    try:
        from dynamics_bridge_sandbox.demo.retention import seed_retention
    except (ImportError, ConfigError) as exc:
        err_console.print(f"no register seeded: {exc}", highlight=False, soft_wrap=True)
        return
    register = seed_retention(info, load_mapping(), members=members, today=datetime.now(UTC).date())
    left = sum(1 for m in register.members if m.ended_on is not None)
    console.print(
        f"seeded {members:,} members ({left:,} left in three years) for the retention analytics",
        highlight=False,
    )


@app.command()
def provision(
    apply: bool = typer.Option(False, "--apply", help="Create what is missing."),
    mapping: Path | None = typer.Option(
        None,
        help="The Dataverse mapping file; default: dataverse.yaml in BRIDGE_MAPPINGS_DIR, else "
        "the bridge's own mappings/.",
    ),
) -> None:
    """Print (or with --apply create) the tables, columns, lookups, choice values and keys the
    mapping lacks, each column with its type, into the configured solution; --apply waits for
    new alternate keys to be Active."""
    try:
        loaded = load_settings()
        # The mappings folder setting, as every other command and the function app read it.
        mapping = mapping or loaded.mappings / MAPPING_FILE
        model = load_mapping(mapping)
        # Every configured app user, and BRIDGE_DATAVERSE__SOLUTION as MSCRM.SolutionUniqueName.
        client = Services(loaded, mapping=model).dataverse
        env = environment(client, model)
        console.print(f"target: {env.describe()}", highlight=False)
        for warning in env.warnings(model) + key_mismatches(client, model, source=str(mapping)):
            err_console.print(f"! {warning}", highlight=False, soft_wrap=True)
        steps = plan(client, model, env, source=str(mapping))
        for step in steps:
            console.print(("" if apply else "would ") + step.describe(), highlight=False)
        if apply:
            apply_plan(client, steps)  # then waits for each new key's index to be Active
        solution = f" in solution {env.solution}" if env.solution and steps else ""
        console.print(f"{len(steps)} step(s){solution}" + ("" if apply else "; run with --apply"))
    except BridgeError as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
