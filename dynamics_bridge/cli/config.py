"""``schema``, ``check``, ``settings``: what an admin can read and validate before anything runs."""

from __future__ import annotations

from pathlib import Path

import typer

from dynamics_bridge.app.check import run_check
from dynamics_bridge.app.schema import write_schemas
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.mapping import DEFAULT_MAPPING
from dynamics_bridge.settings import settings_reference


@app.command()
def schema(
    out: Path = typer.Option(DEFAULT_MAPPING.parent / "schema", help="Folder for *.schema.json."),
) -> None:
    """Write a JSON Schema for each mapping file (for editors and CI)."""
    for path in write_schemas(out):
        console.print(f"wrote {path}")


@app.command("settings")
def settings_command() -> None:
    """Print every BRIDGE_* variable with its default and what it is for (Markdown)."""
    typer.echo(settings_reference(), nl=False)


@app.command()
def check(
    mapping: Path | None = typer.Option(
        None,
        help="A dataverse.yaml elsewhere (its folder holds the other mapping files); default: "
        "BRIDGE_MAPPINGS_DIR, else the bridge's own mappings/.",
    ),
    offline: bool = typer.Option(
        False, "--offline", help="Settings and files only: ask Dataverse and APSIS nothing."
    ),
) -> None:
    """Check settings, every mapping file, the Dataverse metadata, the APSIS definitions and
    the SPAR contract files; list every problem with its place and what to do.

    The same check the function app and its timers run at start (there, Dataverse or APSIS out
    of reach is a warning: a job meets the outage itself).
    Exit codes: 0 no errors (warnings may be listed); 1 at least one error."""
    from dynamics_bridge.cli.sync import cli_services

    report = run_check(mapping_path=mapping, live=not offline, wiring=cli_services, history=True)
    for finding in report.findings:
        mark = "[red]✗[/red]" if finding.severity == "error" else "[yellow]![/yellow]"
        place = f"{finding.where}: " if finding.where else ""
        err_console.print(f"{mark} {place}{finding.what}", highlight=False, soft_wrap=True)
        err_console.print(f"  → {finding.fix}", highlight=False, soft_wrap=True)
    files = ", ".join(
        f"{name} {'✓' if there else '✗ missing'}" for name, there in report.files.items()
    )
    console.print(f"mappings in {report.folder}: {files}", highlight=False, soft_wrap=True)
    if not report.ok:
        err_console.print(
            f"{len(report.errors)} error(s), {len(report.warnings)} warning(s): the bridge "
            "refuses to run on this configuration",
            highlight=False,
        )
        raise typer.Exit(1)
    checked = "" if offline else " and match Dataverse"
    console.print(
        f"[green]✓[/green] settings and mappings are valid{checked}"
        + (f" ({len(report.warnings)} warning(s))" if report.warnings else ""),
        highlight=False,
    )
