"""``spar lookup`` and ``address-refresh``: SPAR PersonSok by hand, and the refresh job.

A personnummer is printed masked unless ``--show-pnr``; an invalid one exits 2 before anything
is sent. Every lookup tells SPAR that the person is probably a member, so a dry run of the
refresh asks SPAR nothing.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import _progress
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError, InputError, NotFoundError
from dynamics_bridge.personnummer import Personnummer
from dynamics_bridge.registry import AddressRecord
from dynamics_bridge.registry.refresh import AddressRefresh
from dynamics_bridge.settings import load_settings

spar_app = typer.Typer(help="SPAR PersonSok (the Swedish population register) over SOAP.")
app.add_typer(spar_app, name="spar")


class _NotAsked:
    """SPAR in a dry run: never asked (a lookup tells SPAR the person is probably a member)."""

    def lookup(self, personnummer: Personnummer | str) -> AddressRecord:
        raise BridgeError("a dry run asks SPAR nothing")


NOT_ASKED = _NotAsked()


def _fail(exc: BridgeError, code: int = 1) -> typer.Exit:
    err_console.print(str(exc), highlight=False, soft_wrap=True)
    return typer.Exit(code)


@spar_app.command("lookup")
def lookup(
    personnummer: str = typer.Argument(..., help="10 or 12 digits, with - or + before the last 4."),
    as_json: bool = typer.Option(False, "--json", help="Print the record as one JSON object."),
    show_pnr: bool = typer.Option(False, "--show-pnr", help="Print personnummer in full."),
) -> None:
    """Ask SPAR about one person and print the address record.

    Exit codes: 0 found; 1 SPAR has no such person, or SPAR cannot be asked (settings, the
    service); 2 the personnummer is not valid (nothing is sent)."""
    try:
        pnr = Personnummer.parse(personnummer)
    except InputError as exc:
        raise _fail(exc, 2) from None
    try:
        record = Services(load_settings()).spar.lookup(pnr)
    except NotFoundError as exc:
        raise _fail(exc) from None
    except InputError as exc:
        raise _fail(exc, 2) from None
    except BridgeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(record.to_json(show_pnr=show_pnr), ensure_ascii=False))
        return
    console.print(_record_table(record, show_pnr=show_pnr))


def _record_table(record: AddressRecord, *, show_pnr: bool) -> Table:
    data = record.to_json(show_pnr=show_pnr)
    table = Table(title=f"SPAR: {data['personnummer']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("status", data["status"])
    if record.protected_identity:
        table.add_row("protected identity", "yes: SPAR gives no name or address")
    if record.name:
        name = " ".join(p for p in (record.name.first_names, record.name.last_name) if p)
        table.add_row("name", name)
    if record.mailing_address:
        table.add_row("post to", "\n".join(record.mailing_address.label()))
    for field in ("deceased_on", "deregistration_code", "deregistered_on", "new_personnummer"):
        if data[field]:
            table.add_row(field.replace("_", " "), str(data[field]))
    table.add_row("SPAR transaction", str(data["spar_uuid"]))
    return table


@app.command("address-refresh")
def address_refresh(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Select and count; ask SPAR nothing, write nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Look up the members the mapping selects in SPAR and write addresses and statuses.

    A progress bar (members looked up) shows on stderr when it is a terminal. Exit codes: 0
    done (a dry run: whoever it would look up); 1 a member could not be looked up or written
    (each is listed), or SPAR or Dataverse settings are missing or refused."""
    try:
        services = Services(load_settings())
        mapping = services.mapping  # BRIDGE_MAPPINGS_DIR's dataverse.yaml
        marketing = services.marketing
        # A dry run asks SPAR nothing, so it needs no SPAR contract numbers either.
        spar = NOT_ASKED if dry_run else services.spar
        refresh = AddressRefresh(services.dataverse, mapping, spar, marketing)
        with _progress.progress_bar("address refresh: members looked up") as advance:
            report = refresh.run(dry_run=dry_run, progress=advance)
    except BridgeError as exc:
        raise _fail(exc) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print_refresh(report.to_json())
        if marketing is None and report.protected:
            err_console.print(
                "No marketing platform configured (BRIDGE_APSIS__*): protected members were "
                "flagged in Dataverse only."
            )
    if report.failed:
        raise typer.Exit(1)


def print_refresh(summary: dict[str, Any], title: str = "SPAR address refresh") -> None:
    """The report as the CLI and the demo print it."""
    dry_run = summary["dry_run"]
    table = Table(title=title + (" (dry run: SPAR not asked, nothing written)" if dry_run else ""))
    table.add_column("")
    table.add_column("count", justify="right")
    for reason, count in summary["selected"].items():
        table.add_row(f"selected: {reason.replace('_', ' ')}", str(count))
    if dry_run:  # nothing was asked, so there is nothing more to count
        table.add_row("would look up", str(sum(summary["selected"].values())))
        console.print(table)
        return
    table.add_row("looked up", str(summary["looked_up"]))
    for status, count in summary["statuses"].items():
        table.add_row(f"  {status.replace('_', ' ')}", str(count))
    table.add_row("updated", str(summary["updated"]))
    table.add_row("protected identity (address kept, flagged)", str(summary["protected"]))
    table.add_row("erased from marketing", str(summary["erased_from_marketing"]))
    console.print(table)
    for failure in summary["failed"]:
        console.print(f"  • {failure}", highlight=False)


def print_demo_section(summary: dict[str, Any]) -> None:
    """The demo's SPAR section (``demo`` prints it after the payment summary)."""
    if not summary:
        return
    print_refresh(summary, "SPAR address refresh (local SPAR responder)")
    kept = "kept as it was" if summary["protected_address_kept"] else "CHANGED"
    gone = "still there" if summary["protected_in_marketing"] else "erased"
    console.print(
        f"Protected identity: CRM address {kept}, protected flag set, APSIS profile {gone}. "
        "Every lookup stored its time and SPAR's transaction id; no raw answer was kept."
    )
