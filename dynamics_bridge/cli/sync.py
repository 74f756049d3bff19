"""``dynamics-bridge sync``: consume the event queue into Dataverse."""

from __future__ import annotations

from collections import Counter

import typer
from rich.table import Table

from dynamics_bridge.app.sync import SyncReport
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import _progress
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
    host settles it, so a local sync exercises the deployed path; each leaves a run in the run
    history. A progress bar (messages settled) shows on stderr when it is a terminal.

    Exit codes: 0 done (some events may be poisoned: see the summary); 1 every event taken
    was poisoned (nothing written, nothing left to retry), or the sync could not start
    (settings, Dataverse, the queue). A dry run exits 0 whatever it would do.
    """
    try:
        services = cli_services(load_settings())
        # A dry run peeks: no dequeue count raised, nothing hidden, nothing deleted.
        report = services.dry_run_sync() if dry_run else _sync(services, once=once)
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
    console.print(summary_line(report, dry_run=dry_run), highlight=False)
    if not dry_run and all_poisoned(report):
        err_console.print(
            "every event was poisoned: see `dynamics-bridge poison list` for the reasons",
            highlight=False,
        )
        raise typer.Exit(1)


def _sync(services: Services, *, once: bool) -> SyncReport:
    """The sync with a bar of messages settled, out of the queue's depth when it started."""
    try:
        depth: int | None = int(services.queue.depth().get("messages", 0))
    except BridgeError:  # the count is a courtesy
        depth = None
    with _progress.progress_bar("sync: messages settled") as advance:

        def settled(report: SyncReport) -> None:
            total = max(depth, report.messages) if depth is not None else None
            advance(report.messages, total, f"{report.outcomes.total()} events")

        return services.sync(once=once, on_progress=settled)


#: outcomes of events that were written (or needed no write)
_DONE = ("applied", "duplicate", "stale")


def all_poisoned(report: SyncReport) -> bool:
    """Something was poisoned and nothing was written or left to retry."""
    poisoned = report.poisoned_events + report.outcomes.get("undecodable", 0)
    done = sum(report.outcomes.get(o, 0) for o in _DONE)
    return poisoned > 0 and done == 0 and not report.outcomes.get("retry", 0)


def summary_line(report: SyncReport, *, dry_run: bool) -> str:
    """The run in one line; a dry run says what *would* happen, since nothing did."""
    if not dry_run:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
        return (
            f"{report.messages} message(s): {counts}; poisoned {report.poisoned_events}, "
            f"left for redelivery {report.left}"
        )
    poison: Counter[str] = Counter()
    retry = 0
    for result in report.results:
        if result.retryable:
            retry += 1
        elif result.outcome.value in ("unmatched", "failed"):
            poison[result.outcome.value] += 1
    poison["undecodable"] += report.outcomes.get("undecodable", 0)
    outcomes = report.outcomes
    parts = [f"would apply {outcomes.get('applied', 0)}"]
    skip = {o: outcomes[o] for o in ("duplicate", "stale") if outcomes.get(o)}
    if skip:
        parts.append(f"would skip {sum(skip.values())} ({_listed(skip)})")
    parts.append(f"would poison {poison.total()}" + (f" ({_listed(poison)})" if +poison else ""))
    if retry:
        parts.append(f"would leave {retry} for a retry")
    head = f"{report.messages} message(s) (dry run: nothing taken, nothing written): "
    return head + ", ".join(parts)


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)


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
