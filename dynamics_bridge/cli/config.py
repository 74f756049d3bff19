"""``schema`` and ``check``: mapping files an admin can validate before anything is written."""

from __future__ import annotations

from pathlib import Path

import typer

from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import DEFAULT_MAPPING, load_mapping
from dynamics_bridge.mapping.schema import write_schemas
from dynamics_bridge.settings import load_settings


@app.command()
def schema(
    out: Path = typer.Option(DEFAULT_MAPPING.parent / "schema", help="Folder for *.schema.json."),
) -> None:
    """Write a JSON Schema for each mapping file (for editors and CI)."""
    for path in write_schemas(out):
        console.print(f"wrote {path}")


@app.command()
def check(
    mapping: Path = typer.Option(DEFAULT_MAPPING, help="The Dataverse mapping file."),
) -> None:
    """Validate settings and mapping files; exit 1 listing every problem with its place."""
    problems: list[str] = []
    for step in (load_settings, lambda: load_mapping(mapping)):
        try:
            step()
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        for problem in problems:
            err_console.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]✓[/green] settings and {mapping} are valid", highlight=False)
