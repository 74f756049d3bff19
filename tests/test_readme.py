"""The README is a user's first manual: its settings and commands must be the real ones."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from dynamics_bridge.cli import app
from dynamics_bridge.settings import settings_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme() -> str:
    return README.read_text(encoding="utf-8")


def test_the_settings_tables_are_the_ones_the_models_generate() -> None:
    text = _readme()
    block = text.split("<!-- settings:begin -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert block == settings_reference(), "run: dynamics-bridge settings, and paste it into README"


def test_every_variable_is_documented_with_a_description() -> None:
    rows = [line for line in settings_reference().splitlines() if line.startswith("| `BRIDGE_")]
    assert len(rows) > 90
    undocumented = [row for row in rows if row.rstrip().endswith("|  |")]
    assert undocumented == []


def test_every_command_the_readme_shows_exists() -> None:
    root = typer.main.get_command(app)
    shown = set(re.findall(r"dynamics-bridge ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)?)", _readme()))
    assert shown, "the README shows no command"
    missing = []
    for words in shown:
        name, _, sub = words.partition(" ")
        command = root.commands.get(name)  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if command is None or (sub and subcommands is not None and sub not in subcommands):
            missing.append(words)
    assert missing == []
