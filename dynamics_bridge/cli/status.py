"""``dynamics-bridge status``: the console's Overview in the terminal (the same data).

Exit 1 when a part is red (settings, Dataverse, APSIS, SPAR, the queue), so a script or a
scheduled check can act on it; ``--json`` prints :meth:`Overview.to_json`.
"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from dynamics_bridge.app.status import OUTCOMES, Overview, build_overview, events_by_source
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError, ConfigError
from dynamics_bridge.ops.model import DayTotals
from dynamics_bridge.settings import load_settings

STATE_STYLE = {"ok": "[green]ok[/green]", "red": "[red]RED[/red]", "off": "[dim]off[/dim]"}


def _services() -> Services:
    """The CLI's wiring (a seam for tests)."""
    from dynamics_bridge.cli.sync import cli_services

    return cli_services(load_settings())


def _outcome_table(title: str, overview: Overview, totals: DayTotals) -> Table:
    by_source = events_by_source(totals)
    shown = [o for o in OUTCOMES if any(c.get(o) for c in by_source.values())] or ["applied"]
    table = Table(title=title, title_justify="left")
    table.add_column("source")
    for outcome in shown:
        table.add_column(outcome, justify="right")
    for source, counts in by_source.items():
        table.add_row(source, *(str(counts.get(o, 0)) for o in shown))
    all_outcomes = overview.outcomes(totals)
    table.add_row("[bold]all[/bold]", *(f"[bold]{all_outcomes.get(o, 0)}[/bold]" for o in shown))
    return table


def render(overview: Overview) -> None:
    """The overview as rich tables on stdout."""
    health = Table(title="Health", title_justify="left")
    health.add_column("part")
    health.add_column("state")
    health.add_column("reason")
    for line in overview.health:
        health.add_row(line.name, STATE_STYLE[line.state], line.reason)
    console.print(health)
    console.print(_outcome_table(f"Today ({overview.today.day})", overview, overview.today))
    console.print(
        _outcome_table(
            f"Last {len(overview.days)} days ({overview.days[0].day} – {overview.today.day})",
            overview,
            overview.week,
        )
    )
    trend = "  ".join(
        f"{t.day.strftime('%m-%d')}: {n}"
        for t, n in zip(overview.days, overview.poison_by_day, strict=True)
    )
    console.print(
        f"Poison book: [bold]{overview.poison_total}[/bold] waiting; by the day they failed: "
        f"{trend}",
        highlight=False,
    )
    if overview.queue is not None:
        console.print(
            f"Queue: {overview.queue.get('messages', 0)} waiting, "
            f"{overview.queue.get('poison', 0)} on the poison queue",
            highlight=False,
        )
    else:
        console.print(f"Queue: [red]not readable ({overview.queue_error})[/red]", highlight=False)
    files = Table(title="Last files", title_justify="left")
    for column in ("when", "source", "file", "receipt", "queued"):
        files.add_column(column, justify="right" if column == "queued" else "left")
    for run in overview.files:
        files.add_row(
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            run.name,
            run.detail.get("file", "") + (" (dry run)" if run.detail.get("dry_run") else ""),
            run.detail.get("receipt", ""),
            str(run.total(part=2, value="queued")),
        )
    console.print(files)
    timers = Table(title="Timers (last run)", title_justify="left")
    for column in ("timer", "when", "took", "result"):
        timers.add_column(column)
    for name, last in overview.timers.items():
        if last is None:
            timers.add_row(name, "[dim]never[/dim]", "", "")
        else:
            timers.add_row(
                name,
                last.started_at.strftime("%Y-%m-%d %H:%M"),
                f"{last.duration_ms / 1000:.1f} s",
                "ok" if last.ok else f"[red]{last.errors[0]}[/red]",
            )
    console.print(timers)


@app.command()
def status(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Today and the last 7 days: events by source and outcome, the poison book, the queue, the
    last files and timer runs, and health; exit 1 when a part is red."""
    try:
        services = _services()
        overview = build_overview(services)
    except ConfigError as exc:
        for problem in exc.problems:
            err_console.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except BridgeError as exc:
        err_console.print(f"[red]{type(exc).__name__}: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(overview.to_json(), ensure_ascii=False))
    else:
        render(overview)
    if overview.red:
        raise typer.Exit(1)
