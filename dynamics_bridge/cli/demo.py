"""``dynamics-bridge demo``: the main job on the embedded default (the local sandbox)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from dynamics_bridge.cli._app import app, console, sandbox_missing
from dynamics_bridge.cli.activation import print_demo_section as print_apsis_section
from dynamics_bridge.cli.spar import print_demo_section
from dynamics_bridge.cli.web_console import DEFAULT_PORT


def _table(title: str, counts: dict[str, int], label: str) -> Table:
    table = Table(title=title)
    table.add_column(label)
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    return table


@app.command()
def demo(
    members: int = typer.Option(300, min=20, help="Fictitious members to seed."),
    workdir: Path = typer.Option(Path(".bridge/demo"), help="Fresh sandbox files go here."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
) -> None:
    """Sandbox, provisioning, every source delivered twice, sync into Dataverse, and the result."""
    try:
        from dynamics_bridge_sandbox.demo.run import run_demo
    except ModuleNotFoundError as exc:
        raise sandbox_missing(exc) from None
    intake_log = logging.getLogger("dynamics_bridge.intake")
    level = intake_log.level
    intake_log.setLevel(logging.ERROR)  # the forged callback is on purpose; reported below
    try:
        report = run_demo(workdir, members=members)
    finally:
        intake_log.setLevel(level)
    summary = report.to_json()
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    console.print(
        _table(
            "Events by source (each input delivered twice)", summary["events_by_source"], "source"
        )
    )
    console.print(_table("Events by kind", summary["events_by_kind"], "kind"))
    console.print(_table("Outcomes in Dataverse", summary["outcomes"], "outcome"))
    console.print(
        _table("Members by payment status", summary["members_by_payment_status"], "status")
    )
    rows = summary["dataverse_rows"]
    console.print(
        f"{summary['deliveries']} webhook deliveries (answers {summary['answers']}), "
        f"{summary['files_ingested']} Bankgirot files; {summary['queued_events']} events queued. "
        f"Dataverse now holds {rows['members']} members and {rows['payments']} payment rows, "
        f"written with {summary['dataverse_requests']} requests. Every redelivery became a "
        "duplicate; the forged callback got 401; unknown references went to the poison queue:"
    )
    for reason in summary["poisoned"]:
        console.print(f"  • {reason}", highlight=False)
    print_apsis_section(summary["apsis"])
    print_demo_section(summary["spar"])
    _print_retention(summary["retention"])
    console.print(
        "\nThis day in the admin console (overview, history, poison, segments, triggers): "
        f"`dynamics-bridge console --demo` serves it at http://127.0.0.1:{DEFAULT_PORT}/ "
        "(it prints a one-time sign-in link).",
        highlight=False,
    )


def _print_retention(retention: dict[str, Any]) -> None:
    """The retention analytics on the seeded register: the model against its baseline, the
    themes against the planted leaver groups, what was written."""
    console.print("\n[bold]Retention analytics[/bold] (a seeded register with planted structure)")
    if "skipped" in retention:
        console.print(f"skipped: {retention['skipped']}", highlight=False)
        return
    churn = retention.get("churn")
    if churn:
        verdict = "used" if churn["used"] else "NOT USED"
        console.print(
            f"{retention['members']:,} members: churn model {verdict}, ROC AUC "
            f"{churn['roc_auc']:.3f} against the baseline's {churn['baseline_roc_auc']:.3f} on "
            "the held-out 90 days",
            highlight=False,
        )
    for step, done in retention["steps"].items():
        if not done["done"]:
            console.print(f"{step}: not done: {done['message']}", highlight=False)
    themes = retention.get("themes", [])
    if themes:
        console.print(
            f"{len(themes)} winback themes ("
            + ", ".join(f"{t['id']} {t['reason']} {t['leavers']}" for t in themes)
            + f"); adjusted Rand index against the planted groups {retention.get('themes_ari')}",
            highlight=False,
        )
    score = retention.get("score")
    if score:
        console.print(
            f"{score['scored']:,} members scored ({score['high_risk']:,} at high risk), "
            f"{score['changed']:,} member rows written, advisor tasks in Dynamics: "
            f"{score.get('tasks_created', 0):,}; {retention['seconds']} s. "
            "`dynamics-bridge retention report` draws it.",
            highlight=False,
        )
