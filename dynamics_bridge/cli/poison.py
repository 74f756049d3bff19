"""``dynamics-bridge poison list|show|replay|purge``: the poison queue, for operators."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.table import Table

from dynamics_bridge.app import poison as ops
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.queue import EventQueue, open_queue
from dynamics_bridge.settings import load_settings

T = TypeVar("T")

poison_app = typer.Typer(
    help="List, show, replay or purge messages on the poison queue.", no_args_is_help=True
)
app.add_typer(poison_app, name="poison")


def _queue() -> EventQueue:
    return open_queue(load_settings().queue)


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except BridgeError as exc:
        err_console.print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


SHOW_PNR = typer.Option(
    False, "--show-pnr", help="Show personnummer in full (default: masked, 19811218-****)."
)


@poison_app.command("list")
def list_(as_json: bool = typer.Option(False, "--json"), show_pnr: bool = SHOW_PNR) -> None:
    """The first 32 poison messages with their reasons."""
    entries = _run(lambda: ops.list_poison(_queue()))
    if not show_pnr:
        entries = [entry.masked() for entry in entries]
    if as_json:
        for entry in entries:
            typer.echo(
                json.dumps(
                    {
                        "message_id": entry.message_id,
                        "reason": entry.reason,
                        "failed_at": entry.failed_at,
                        "event_ids": entry.event_ids,
                    }
                )
            )
        return
    table = Table(title=f"{len(entries)} poison message(s)")
    for column in ("message id", "failed at", "events", "reason"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            entry.message_id, entry.failed_at[:19], str(len(entry.event_ids)), entry.reason
        )
    console.print(table)


@poison_app.command()
def show(message_id: str, show_pnr: bool = SHOW_PNR) -> None:
    """One poison message in full: reason, events, raw text (personnummer masked)."""
    entry = _run(lambda: ops.show(_queue(), message_id))
    if not show_pnr:
        entry = entry.masked()
    typer.echo(
        json.dumps(
            {
                "message_id": entry.message_id,
                "reason": entry.reason,
                "raw": entry.raw,
                **entry.body,
            },
            indent=2,
            ensure_ascii=False,
        )
    )


@poison_app.command()
def replay(
    message_id: str = typer.Argument(None, help="Poison message to replay."),
    all_: bool = typer.Option(False, "--all", help="Replay every replayable message."),
) -> None:
    """Put events back on the main queue once their cause is fixed (their ids are unchanged)."""
    if all_ == bool(message_id):
        err_console.print("give a MESSAGE_ID or --all")
        raise typer.Exit(2)
    if all_:
        count, skipped = _run(lambda: ops.replay_all(_queue()))
        console.print(f"replayed {count} event(s); {len(skipped)} message(s) hold no events")
        return
    ids = _run(lambda: ops.replay(_queue(), message_id))
    console.print(f"replayed {len(ids)} event(s) from {message_id}")


@poison_app.command()
def purge(message_id: str) -> None:
    """Delete one poison message for good."""
    _run(lambda: ops.purge(_queue(), message_id))
    console.print(f"purged {message_id}")
