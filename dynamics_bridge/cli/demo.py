"""``dynamics-bridge demo``: the main job on the embedded default, no tenant needed."""

from __future__ import annotations

import json
import logging
from typing import Any

import typer
from rich.table import Table

from dynamics_bridge.cli._app import app, console
from dynamics_bridge.demo.callbacks import demo_callbacks
from dynamics_bridge.demo.intake import deliver
from dynamics_bridge.queue import InMemoryQueue
from dynamics_bridge.settings import load_settings

DEMO_SIGN_KEY = "demo-billogram-sign-key"  # the demo signs its own callbacks; not a real key


@app.command()
def demo(
    members: int = typer.Option(20, min=2, help="How many fictitious members get callbacks."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Verify and queue the project's own sample callbacks (each delivered twice) and show them."""
    settings = load_settings(
        queue={"backend": "memory", "name": "demo-payment-events"},
        billogram={"sign_key": DEMO_SIGN_KEY},
    )
    queue = InMemoryQueue(settings.queue.name)
    member_numbers = [str(100001 + i) for i in range(members)]
    intake_log = logging.getLogger("dynamics_bridge.intake")
    level = intake_log.level
    intake_log.setLevel(logging.ERROR)  # the forged callback is on purpose; reported below
    try:
        report = deliver(demo_callbacks(member_numbers, DEMO_SIGN_KEY), settings, queue)
    finally:
        intake_log.setLevel(level)
    summary: dict[str, Any] = {
        "deliveries": report.deliveries,
        "answers": {str(k): v for k, v in sorted(report.answers.items())},
        "queued_events": len(report.queued),
        "unique_event_ids": len(report.unique_events),
        "events_by_source": report.events_by_source(),
        "events_by_kind": report.events_by_kind(),
    }
    if as_json:
        console.print_json(json.dumps(summary))
        return
    table = Table(title="Verified callbacks as canonical events (each delivered twice)")
    for column in ("source", "kind", "member", "amount", "reason", "event id"):
        table.add_column(column, no_wrap=True)
    for event in report.unique_events.values():
        ref = event["member_ref"]
        table.add_row(
            event["source"],
            event["kind"],
            f"{ref['value']} ({ref['kind']})",
            f"{event['amount_minor'] / 100:,.2f} {event['currency']}".replace(",", " "),
            event["reason_code"] or "",
            event["event_id"][:18] + "…",
        )
    console.print(table)
    kinds = Table(title="Events by kind")
    kinds.add_column("kind")
    kinds.add_column("events", justify="right")
    for kind, count in summary["events_by_kind"].items():
        kinds.add_row(kind, str(count))
    console.print(kinds)
    console.print(
        f"{report.deliveries} deliveries, answers {summary['answers']}; "
        f"{len(report.queued)} events queued, {len(report.unique_events)} distinct event ids: "
        "every redelivery carried the same ids, so the sync recognises it as a duplicate."
    )
    if report.answers.get(401):
        console.print(
            f"{report.answers[401]} deliveries with a forged signature got 401 and queued nothing."
        )
