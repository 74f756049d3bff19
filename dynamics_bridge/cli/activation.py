"""``segments push``, ``reminders run``, ``triggers send|unconfirmed|resolve``, ``apsis check``."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from dynamics_bridge.activation.loader import activation_configured
from dynamics_bridge.activation.reports import ReminderReport, SegmentReport
from dynamics_bridge.activation.service import Activation, check_apsis, event_field_problems
from dynamics_bridge.app.wiring import apsis_credentials
from dynamics_bridge.cli import _progress
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError

segments_app = typer.Typer(help="Segments and engagement score, pushed to APSIS One.")
reminders_app = typer.Typer(help="Reminders due today, each once per period.")
triggers_app = typer.Typer(help="Triggers in the outbox (payment rows).")
apsis_app = typer.Typer(help="APSIS One: the configured data model.")
app.add_typer(segments_app, name="segments")
app.add_typer(reminders_app, name="reminders")
app.add_typer(triggers_app, name="triggers")
app.add_typer(apsis_app, name="apsis")


def _activation(dry_run: bool = False) -> Activation:
    """The activation side over the mappings folder (``BRIDGE_MAPPINGS_DIR``); a dry run
    without an APSIS key reads Dataverse only (APSIS is never asked in a dry run)."""
    from dynamics_bridge.cli.sync import cli_services
    from dynamics_bridge.settings import load_settings

    settings = load_settings()
    services = cli_services(settings)
    if (
        dry_run
        and not apsis_credentials(settings.apsis)
        and (activation := services.dry_run_activation) is not None
    ):
        return activation
    if not apsis_credentials(settings.apsis) or not activation_configured(settings.mappings):
        raise BridgeError(
            "APSIS is not configured (BRIDGE_APSIS__CLIENT_ID, __CLIENT_SECRET) or "
            f"{settings.mappings}: apsis.yaml, triggers.yaml, segments.yaml are missing "
            "(`dynamics-bridge check` says which)"
        )
    built = services.activation
    assert built is not None  # both conditions were checked above
    return built


def _fail(exc: BridgeError) -> typer.Exit:
    err_console.print(str(exc), highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _counts(title: str, counts: dict[str, int], label: str) -> Table:
    table = Table(title=title)
    table.add_column(label)
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    return table


@segments_app.command("push")
def segments_push(
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the differences; send nothing."),
    full: bool = typer.Option(
        False,
        "--full",
        help="Every member, not only those changed (also done by itself once the last full "
        "run is older than segments.yaml full_run_hours).",
    ),
    as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object."),
) -> None:
    """Evaluate segments and the score for members changed since the last run (every member
    when the last full run is older than full_run_hours); push the differences.

    A progress bar (members evaluated) shows on stderr when it is a terminal. Exit codes: 0
    done (a dry run: whatever it would do); 1 a push failed for some member (each is listed),
    or APSIS, Dataverse or the mapping files are not there."""
    try:
        activation = _activation(dry_run)
        with _progress.progress_bar("segments: members evaluated") as advance:
            report = activation.segments.run(dry_run=dry_run, full=full or None, progress=advance)
    except BridgeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    table = Table(title="Differences" + (" (dry run: nothing sent)" if dry_run else ""))
    for column in ("member", "score", "attributes", "tags +", "tags −", "action"):
        table.add_column(column)
    for diff in report.diffs:
        plan = diff.plan
        action = "erase" if plan.erase else "create" if plan.create else "update"
        table.add_row(
            diff.member,
            str(diff.score),
            ", ".join(f"{k}={v}" for k, v in plan.attributes.items()),
            ", ".join(plan.tags_add),
            ", ".join(plan.tags_remove),
            f"{action} ({plan.excluded})" if plan.excluded else action,
        )
    console.print(table)
    console.print(
        _counts("Segment sizes (members evaluated)", dict(report.segment_sizes), "segment")
    )
    console.print(segments_summary(report), highlight=False)
    for problem in report.failed:
        err_console.print(f"  • {problem}", highlight=False)
    if report.failed:
        raise typer.Exit(1)


def segments_summary(report: SegmentReport) -> str:
    """The run in one line; a dry run says what *would* be pushed and erased."""
    head = f"{report.evaluated} evaluated ({'full run' if report.full else 'changed only'}): "
    if report.dry_run:
        return head + (
            f"would push {report.would_push}, would erase {report.would_erase}, "
            f"{report.excluded} excluded, {report.unchanged} unchanged; delta link not saved "
            "(dry run: nothing sent)"
        )
    return head + (
        f"{report.pushed} pushed, {report.erased} erased, {report.excluded} excluded, "
        f"{report.unchanged} unchanged, {report.imports} bulk import(s); failed "
        f"{len(report.failed)} ({report.permanent} for good); delta link "
        + ("saved" if report.delta_saved else "kept back")
    )


@reminders_app.command("run")
def reminders_run(
    dry_run: bool = typer.Option(False, "--dry-run", help="List who is due; send nothing."),
    as_json: bool = typer.Option(False, "--json", help="The summary as one JSON object."),
) -> None:
    """Send every reminder due today that was not sent for its period yet.

    A progress bar (reminders looked for, then the sending) shows on stderr when it is a
    terminal. Exit codes: 0 done (a dry run: whatever it would send); 1 a reminder could not be
    claimed or sent (each is listed; the next run tries again), or APSIS, Dataverse or the
    mapping files are not there."""
    try:
        activation = _activation(dry_run)
        with _progress.progress_bar("reminders") as advance:
            report = activation.reminders.run(dry_run=dry_run, progress=advance)
    except BridgeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
        return
    table = Table(title="Due today" + (" (dry run: nothing sent)" if dry_run else ""))
    for column in ("member", "reminder", "period"):
        table.add_column(column)
    for item in report.items:
        table.add_row(item.member_key, item.name, item.period)
    console.print(table)
    console.print(reminders_summary(report), highlight=False)
    if report.failed:
        raise typer.Exit(1)


def reminders_summary(report: ReminderReport) -> str:
    """The run in one line; a dry run says what *would* be sent."""
    sent = report.due if report.dry_run else report.sent
    by_name = ", ".join(f"{name} {n}" for name, n in sorted(sent.items()))
    word = "would send" if report.dry_run else "sent"
    return (
        f"{word} {sum(sent.values())}"
        + (f" ({by_name})" if by_name else "")
        + f"; already sent this period {report.already_sent}, excluded {report.excluded}"
        + ("" if report.dry_run else f", failed {len(report.failed)}")
    )


@triggers_app.command("send")
def triggers_send() -> None:
    """Sweep the outbox: send triggers due (held, left pending), read back the ones whose send
    has an unknown outcome (BRIDGE_ACTIVATION__READBACK); never twice.

    Exit codes: 0 done; 1 a trigger failed (listed in the JSON), or APSIS, Dataverse or the
    mapping files are not there."""
    try:
        report = _activation().triggers.sweep()
    except BridgeError as exc:
        raise _fail(exc) from None
    console.print(json.dumps(report.to_json(), ensure_ascii=False), highlight=False)
    if report.failed:
        raise typer.Exit(1)


@triggers_app.command("unconfirmed")
def triggers_unconfirmed(
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line."),
) -> None:
    """Triggers whose send has an unknown outcome (APSIS may or may not hold them): resolve each
    with `triggers resolve EVENT_ID --send` (APSIS does not hold it) or `--drop` (it does).

    Exit codes: 0 listed (none may be); 1 APSIS, Dataverse or the mapping files are not there."""
    try:
        rows = _activation().triggers.unconfirmed()
    except BridgeError as exc:
        raise _fail(exc) from None
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row.to_json(), ensure_ascii=False))
        return
    table = Table(title=f"Unconfirmed triggers ({len(rows)})")
    for column in ("event", "member", "triggers", "sent at"):
        table.add_column(column)
    for row in rows:
        table.add_row(row.event_id, row.member, "\n".join(row.triggers), row.since or "")
    console.print(table)


@triggers_app.command("resolve")
def triggers_resolve(
    event_id: str = typer.Argument(..., help="The payment event id (see triggers unconfirmed)."),
    send: bool = typer.Option(False, "--send", help="APSIS does not hold them: send again."),
    drop: bool = typer.Option(
        False,
        "--drop",
        help="APSIS holds them (or they no longer matter): mark them dropped, send nothing.",
    ),
) -> None:
    """Decide an unconfirmed row: check the member's profile in APSIS first, then --send or
    --drop. Nothing else ever sends an unconfirmed trigger again without the read-back.

    Exit codes: 0 done; 1 the send failed, or the row or the settings are not there; 2 neither
    or both of --send and --drop."""
    if send == drop:
        err_console.print("say --send or --drop (exactly one)", highlight=False)
        raise typer.Exit(2)
    try:
        report = _activation().triggers.resolve(event_id, send=send)
    except BridgeError as exc:
        raise _fail(exc) from None
    console.print(json.dumps(report.to_json(), ensure_ascii=False), highlight=False)
    if report.failed:
        raise typer.Exit(1)


@apsis_app.command("check")
def apsis_check() -> None:
    """Verify that apsis.yaml's section, attributes, event types and tags exist in APSIS, and
    that each event's current version has every field triggers.yaml and segments.yaml send.

    Exit codes: 0 every name exists; 1 some do not (each is listed), or APSIS is not there."""
    try:
        activation = _activation()
        problems = check_apsis(activation.platform, activation.config.apsis)
        if not problems:
            problems = [
                f"{where}: {what}"
                for where, what in event_field_problems(activation.platform, activation.config)
            ]
    except BridgeError as exc:
        raise _fail(exc) from None
    for problem in problems:
        err_console.print(f"[red]✗[/red] {problem}", highlight=False, soft_wrap=True)
    if problems:
        raise typer.Exit(1)
    console.print(
        "[green]✓[/green] every configured APSIS name exists, and every event field",
        highlight=False,
    )


def print_demo_section(summary: dict[str, Any]) -> None:
    """The demo's APSIS section (``demo`` prints it after the payment summary)."""
    if not summary:
        return
    console.print(
        _counts("Triggers and reminders in APSIS (stand-in)", summary["events_by_type"], "event")
    )
    console.print(_counts("Segment sizes (tags in APSIS)", summary["segment_sizes"], "segment"))
    withdrawn = summary["consent_withdrawn"]
    console.print(
        f"{summary['profiles']} profiles in APSIS, {summary['attribute_updates']} attribute "
        f"updates ({summary['imports']} bulk imports), {summary['apsis_requests']} requests "
        f"({sum(summary['throttled'].values())} answered 429 and retried). Every input arrived "
        f"twice: triggers sent twice {summary['sent_twice']}, left in the outbox "
        f"{summary['left_in_outbox']}; a second segments run pushed "
        f"{summary['segments_second_run_pushed']}, a second reminders run sent "
        f"{summary['reminders_second_run_sent']}. Member {withdrawn['member']} withdrew consent: "
        f"erased {withdrawn['erased']}. Members without consent in APSIS: "
        f"{len(summary['excluded_members_in_apsis'])}."
    )
