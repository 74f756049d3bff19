"""``dynamics-bridge sync``: consume the event queue into Dataverse."""

from __future__ import annotations

import typer
from rich.table import Table

from dynamics_bridge.activation.jobs import build_activation
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.dataverse.auth import msal_token_provider, session_for
from dynamics_bridge.dataverse.client import AppUserGate, DataverseClient
from dynamics_bridge.dataverse.store import DataverseMemberStore
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.mapping import load_mapping
from dynamics_bridge.pipeline import Pipeline
from dynamics_bridge.queue import open_queue
from dynamics_bridge.settings import Settings, load_settings
from dynamics_bridge.sync import run_sync


def dataverse_client(settings: Settings) -> DataverseClient:
    dv = settings.dataverse
    extra: dict[str, str] = {}
    if dv.suppress_flows:
        extra["MSCRM.SuppressCallbackRegistrationExpanderJob"] = "true"
    if dv.bypass_business_logic:
        extra["MSCRM.BypassBusinessLogicExecution"] = dv.bypass_business_logic
    if dv.duplicate_detection:
        extra["MSCRM.SuppressDuplicateDetection"] = "false"
    return DataverseClient(
        dv.url or "",
        session_for(dv),
        msal_token_provider(dv),
        gate=AppUserGate(max_concurrency=dv.max_concurrency),
        api_version=dv.api_version,
        extra_headers=extra,
        max_attempts=dv.max_attempts,
        timeout=dv.timeout_seconds,
        page_size=dv.page_size,
        keys_per_query=dv.keys_per_query,
    )


@app.command()
def sync(
    once: bool = typer.Option(False, "--once", help="Drain the queue, then stop."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
) -> None:
    """Apply queued events to Dataverse; poison what cannot be applied, with the reason."""
    try:
        settings = load_settings()
        mapping = load_mapping()
        client = dataverse_client(settings)
        hooks = None if dry_run else build_activation(settings, client, mapping)  # triggers
        pipeline = Pipeline(DataverseMemberStore(client, mapping), mapping, hooks=hooks)
        # A dry run only looks: its messages become visible again a second later.
        report = run_sync(
            open_queue(settings.queue),
            pipeline,
            once=once or dry_run,
            dry_run=dry_run,
            visibility_timeout=1 if dry_run else 300,
        )
    except BridgeError as exc:
        err_console.print(str(exc), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if dry_run:
        table = Table(title="Would change (dry run, nothing written)")
        for column in ("event", "outcome", "member", "column", "old → new"):
            table.add_column(column)
        for outcome in report.results:
            changes = outcome.changes or {"": (None, None)}
            for column, (old, new) in changes.items():
                table.add_row(
                    outcome.event.event_id[:18],
                    outcome.outcome.value,
                    outcome.member_key or "",
                    column,
                    f"{old} → {new}" if column else outcome.reason or "",
                )
        console.print(table)
    console.print(
        f"{report.messages} message(s): "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.outcomes.items()))
        + f"; poisoned {report.poisoned_events}, requeued {report.requeued_events}"
    )
