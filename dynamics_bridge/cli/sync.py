"""``dynamics-bridge sync``: consume the event queue into Dataverse."""

from __future__ import annotations

import typer
from rich.table import Table

from dynamics_bridge.app.sync import SyncReport
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.personnummer import mask_text
from dynamics_bridge.settings import Settings, load_settings


def cli_services(settings: Settings) -> Services:
    """The CLI's wiring: the function app's (every app user, the opt-in headers,
    multiple-operations tables, throttle limit, solution), with the host's queue defaults."""
    return Services(settings)


def dataverse_client(settings: Settings) -> DataverseClient:
    """The CLI's Dataverse client, built by the wiring as the function app's is."""
    return cli_services(settings).dataverse


@app.command()
def sync(
    once: bool = typer.Option(False, "--once", help="Drain the queue, then stop."),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Peek at the queue and show what would be written; take and write nothing.",
    ),
) -> None:
    """Apply queued events to Dataverse; poison what cannot be applied, with the reason.

    Each message runs through the function app's queue trigger and is settled as the Functions
    host settles it, so a local sync exercises the deployed path."""
    try:
        services = cli_services(load_settings())
        # A dry run peeks: no dequeue count raised, nothing hidden, nothing deleted.
        report = services.dry_run_sync() if dry_run else services.sync(once=once)
        mapping = services.mapping
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
        + f"; poisoned {report.poisoned_events}, left for redelivery {report.left}",
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
