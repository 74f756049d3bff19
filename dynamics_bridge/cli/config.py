"""``schema``, ``check``, ``settings``: what an admin can read and validate before anything runs."""

from __future__ import annotations

from pathlib import Path

import typer

from dynamics_bridge.activation.loader import activation_configured, load_activation
from dynamics_bridge.app.schema import write_schemas
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError, ConfigError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping
from dynamics_bridge.settings import load_settings, settings_reference


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
    mapping: Path = typer.Option(DEFAULT_MAPPING, help="The Dataverse mapping file."),
) -> None:
    """Validate settings and mapping files; exit 1 listing every problem with its place."""
    problems: list[str] = []
    settings = model = None
    try:
        settings = load_settings()
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        model = load_mapping(mapping)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if model is not None and activation_configured(mapping.parent):
        try:
            load_activation(model, mapping.parent)  # apsis.yaml, triggers.yaml, segments.yaml
        except ConfigError as exc:
            problems.extend(exc.problems)
    if settings is not None and model is not None and settings.dataverse.configured:
        from dynamics_bridge.cli.sync import dataverse_client
        from dynamics_bridge.dataverse.provision import check_metadata

        try:
            problems.extend(
                f"Dataverse: {p}" for p in check_metadata(dataverse_client(settings), model)
            )
        except BridgeError as exc:
            problems.append(f"Dataverse not reachable: {exc}")
    if settings is not None:
        # Warnings, not failures: a union without Swish (or Bankgirot files) needs no
        # identifier (or payee), but one with it must learn here, not from refused input.
        for warning in settings.swish.problems() + settings.bankgirot.problems():
            err_console.print(f"[yellow]![/yellow] {warning}", highlight=False, soft_wrap=True)
    if problems:
        for problem in problems:
            err_console.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    checked = " and match Dataverse" if settings and settings.dataverse.configured else ""
    console.print(f"[green]✓[/green] settings and {mapping} are valid{checked}", highlight=False)
