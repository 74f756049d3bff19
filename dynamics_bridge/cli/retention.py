"""``retention train|themes|score|report|run|status``: the retention analytics by hand.

Each command reads the member history from Dataverse once (``mappings/retention.yaml`` says
what), runs inside this process (nothing is sent anywhere to train) and versions what it makes in
the artifact store (``BRIDGE_RETENTION__DIRECTORY``, or the ops tables). ``--dry-run`` reads and
computes everything and writes nothing: no model version, no member column, no task.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError

if TYPE_CHECKING:
    from dynamics_bridge.app.retention import RetentionRun, StepReport

retention_app = typer.Typer(
    help="Churn risk, lifetime value and winback themes from the union's own history."
)
app.add_typer(retention_app, name="retention")

#: Exit status of ``train`` (and ``run``) when the new model does not beat the baseline: it is
#: kept for the record but not used, and a script should notice.
NOT_USED = 2

_DRY = typer.Option(False, "--dry-run", help="Read and compute; write nothing.")
_TODAY = typer.Option(None, "--today", help="The run's date (YYYY-MM-DD); default today.")
_JSON = typer.Option(False, "--json", help="The step reports as JSON.")


def _run(today: str | None, dry_run: bool) -> RetentionRun:
    from dynamics_bridge.cli.sync import cli_services
    from dynamics_bridge.settings import load_settings

    day = date.fromisoformat(today) if today else datetime.now(UTC).date()
    return cli_services(load_settings()).retention_run(day, dry_run=dry_run)


def _fail(exc: BridgeError) -> typer.Exit:
    err_console.print(str(exc), highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _show(reports: list[StepReport], as_json: bool) -> None:
    if as_json:
        from dynamics_bridge.app.retention import reports_json

        console.print_json(reports_json(reports))
        return
    for report in reports:
        title = f"retention {report.step}" + (
            " (dry run: nothing written)" if report.dry_run else ""
        )
        table = Table(title=title, title_justify="left")
        table.add_column("count")
        table.add_column("", justify="right")
        for key, value in report.counts.items():
            table.add_row(key, f"{value:,}")
        if report.counts:
            console.print(table)
        else:
            console.print(title)
        console.print(report.message, highlight=False, soft_wrap=True)
        if report.version:
            console.print(f"kept as version {report.version}", highlight=False)


def _not_used(reports: list[StepReport]) -> bool:
    return any(r.step == "train" and not r.detail.get("used", True) for r in reports)


@retention_app.command("train")
def train(today: str | None = _TODAY, dry_run: bool = _DRY, as_json: bool = _JSON) -> None:
    """Train the churn model on the history before a cut-off and test it on who left in the
    following horizon, against the baseline. A model that does not beat the baseline is kept
    for the record and not used (exit status 2)."""
    try:
        run = _run(today, dry_run)
        run.train()
    except BridgeError as exc:
        raise _fail(exc) from None
    _show(run.reports, as_json)
    if _not_used(run.reports):
        err_console.print("The model does not beat the baseline: it is not used.")
        raise typer.Exit(NOT_USED)


@retention_app.command("themes")
def themes(today: str | None = _TODAY, dry_run: bool = _DRY, as_json: bool = _JSON) -> None:
    """Cluster the recent leavers into winback themes (ids kept from the last run); name,
    order and word them in retention.yaml themes.named."""
    try:
        run = _run(today, dry_run)
        report = run.themes()
    except BridgeError as exc:
        raise _fail(exc) from None
    _show(run.reports, as_json)
    if as_json:
        return
    table = Table(title="themes", title_justify="left")
    for column in ("id", "name", "leavers", "share", "value kr", "reasons", "words", "behaviour"):
        table.add_column(column)
    for theme in report.detail["themes"]:
        table.add_row(
            theme["id"],
            theme["name"],
            f"{theme['size']:,}",
            f"{theme['share']:.0%}",
            "" if theme["mean_value"] is None else f"{theme['mean_value']:,}",
            ", ".join(f"{r} {n}" for r, n in theme["reasons"]),
            ", ".join(theme["words"]),
            ", ".join(f"{n} {v:+.1f}" for n, v in theme["behaviour"]),
        )
    console.print(table)


@retention_app.command("score")
def score(today: str | None = _TODAY, dry_run: bool = _DRY, as_json: bool = _JSON) -> None:
    """Write churn risk (latest model in use), lifetime value and leavers' themes to the member
    columns where they changed, and make the advisor tasks."""
    try:
        run = _run(today, dry_run)
        run.score()
    except BridgeError as exc:
        raise _fail(exc) from None
    _show(run.reports, as_json)


@retention_app.command("report")
def report(
    output: Path = typer.Option(
        Path("retention-report.html"), "--output", "-o", help="Where to write the HTML page."
    ),
    today: str | None = _TODAY,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Write the file only; keep no version for the console."
    ),
) -> None:
    """The HTML report (retention curves, calibration, reasons, themes), written to a file and
    kept for the admin console."""
    try:
        run = _run(today, dry_run)
        _, html = run.report()
    except BridgeError as exc:
        raise _fail(exc) from None
    output.write_text(html, encoding="utf-8")
    _show(run.reports, False)
    console.print(f"written to {output}", highlight=False)


@retention_app.command("run")
def run_all(today: str | None = _TODAY, dry_run: bool = _DRY, as_json: bool = _JSON) -> None:
    """What the weekly timer does: train, themes, score, report."""
    from dynamics_bridge.app.retention import run_steps

    try:
        run = _run(today, dry_run)
        run_steps(run)
    except BridgeError as exc:
        raise _fail(exc) from None
    _show(run.reports, as_json)
    if _not_used(run.reports):
        raise typer.Exit(NOT_USED)


@retention_app.command("status")
def status() -> None:
    """The latest churn model: whether it is used, and why."""
    from dynamics_bridge.app.retention import model_state
    from dynamics_bridge.cli.sync import cli_services
    from dynamics_bridge.settings import load_settings

    try:
        state = model_state(cli_services(load_settings()).artifacts)
    except BridgeError as exc:
        raise _fail(exc) from None
    if state["model"] is None:
        console.print(state["why"])
        return
    verdict = "used" if state["used"] else "NOT USED"
    console.print(
        f"churn model {state['model']} (trained {state['trained_on']}): {verdict}: {state['why']}",
        highlight=False,
        soft_wrap=True,
    )
