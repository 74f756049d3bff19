"""``dynamics-bridge sync``: consume the event queue into Dataverse."""

from __future__ import annotations

import typer
from rich.table import Table

from dynamics_bridge.activation.jobs import build_activation
from dynamics_bridge.app.sync import SyncReport, dry_run_sync, run_sync
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping import MappingFile, load_mapping
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import Settings, load_settings


def dataverse_client(settings: Settings) -> DataverseClient:
    """The CLI's Dataverse client: the same factory as the Functions app (every app user, the
    opt-in headers, multiple-operations tables, throttle limit, solution)."""
    return DataverseClient.from_settings(settings.dataverse)


@app.command()
def sync(
    once: bool = typer.Option(False, "--once", help="Drain the queue, then stop."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Peek at the queue and show what would be written; take and write nothing.",
    ),
) -> None:
    """Apply queued events to Dataverse; poison what cannot be applied, with the reason."""
    try:
        settings = load_settings()
        mapping = load_mapping()
        client = dataverse_client(settings)
        hooks = None if dry_run else build_activation(settings, client, mapping)  # triggers
        pipeline = Pipeline(DataverseMemberStore(client, mapping), mapping, hooks=hooks)
        queue = open_queue(settings.queue)
        # A dry run peeks: no dequeue count raised, nothing hidden, nothing deleted.
        report = dry_run_sync(queue, pipeline) if dry_run else run_sync(queue, pipeline, once=once)
    except BridgeError as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if dry_run:
        console.print(dry_run_table(report, mapping))
        if report.not_shown:
            console.print(
                f"{report.not_shown} more message(s) on the queue were not shown: one peek sees "
                "at most 32 messages on Azure Storage, and none that a consumer holds right now",
                highlight=False,
            )
    console.print(
        f"{report.messages} message(s): "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
        + f"; poisoned {report.poisoned_events}, requeued {report.requeued_events}",
        highlight=False,
    )


def dry_run_table(report: SyncReport, mapping: MappingFile) -> Table:
    """Each event's would-be requests: the payment-row create and the member's column changes."""
    table = Table(title="Would write (dry run, nothing taken off the queue, nothing written)")
    for column in ("event", "outcome", "request", "table", "key", "column", "old → new"):
        table.add_column(column)
    payment, member = mapping.payment, mapping.member
    for outcome in report.results:
        event_id = outcome.event.event_id
        head = [event_id[:18], outcome.outcome.value]
        rows: list[list[str]] = []
        if outcome.payment_row is not None:
            columns = [c for c in outcome.payment_row if "@" not in c]
            rows.append(
                [
                    "create",
                    payment.table,
                    f"{payment.key_column}={event_id}",
                    "",
                    f"new row: {len(columns)} column(s) + member lookup",
                ]
            )
        for column, (old, new) in outcome.changes.items():
            key = f"{member.key_column}={outcome.member_key}"
            rows.append(["update", member.table, key, column, f"{old} → {new}"])
        if not rows:
            rows.append(["—", "", outcome.member_key or "", "", mask_text(outcome.reason or "")])
        for row in rows:
            table.add_row(*head, *row)
            head = ["", ""]
    return table
