"""``dynamics-bridge poison list|show|replay|purge``: the poison book, for operators.

Every command first moves what waits on the poison queue into the book (as the poison timer
does every 5 minutes), so what it shows and takes is the whole of it, not the 32 messages a
storage queue shows at one look. Exit codes: 0 done, 1 a replay left records it could not replay
(or a purge was not confirmed), 2 bad input or an id that is not there.
"""

from __future__ import annotations

import getpass
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, NoReturn

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeRemainingColumn,
)

from dynamics_bridge.app.poison import PoisonBook, masked
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError
from dynamics_bridge.ops.model import PoisonFilter, PoisonRecord
from dynamics_bridge.settings import load_settings

poison_app = typer.Typer(
    help="The poison book: list, show, replay or purge events that could not be applied.",
    no_args_is_help=True,
)
app.add_typer(poison_app, name="poison")


def _services() -> Services:
    """The CLI's wiring: the function app's queue and ops store (tests replace this)."""
    return Services(load_settings())


@contextmanager
def _errors() -> Iterator[None]:
    """Our errors as one line on stderr and exit 2 (bad input, not found, configuration)."""
    try:
        yield
    except BridgeError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(message, highlight=False, soft_wrap=True, markup=False)
    raise typer.Exit(code)


def _progress(*, counting: bool = True) -> Progress:
    """A bar on stderr (stdout stays for results), gone when done; a count where no total."""
    columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
    if counting:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    else:
        columns += [TextColumn("{task.completed:,.0f}")]
    return Progress(*columns, console=err_console, transient=True)


def _book() -> PoisonBook:
    """The poison book with the poison queue absorbed into it first."""
    with _errors():
        book = _services().poison_book
        with _progress(counting=False) as progress:
            task = progress.add_task("absorbing the poison queue", total=None)
            book.absorb(progress=lambda moved: progress.update(task, completed=moved))
    return book


@contextmanager
def _bar(what: str) -> Iterator[Callable[[int, int], None]]:
    with _progress() as progress:
        task = progress.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


# --- filters ------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _when(value: str | None, option: str) -> datetime | None:
    """``2026-11-28``, ``2026-11-28T06:00`` (UTC unless an offset is given), or an age such as
    ``90m``, ``2h``, ``3d``, ``1w`` (that long ago)."""
    if not value:
        return None
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2).lower()]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            day = date.fromisoformat(value.strip())
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return _fail(
            f"{option}: {value!r} is neither a date (2026-11-28), a time (2026-11-28T06:00) "
            "nor an age (90m, 2h, 3d, 1w)"
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


REASON = typer.Option(None, "--reason", help="Text within the reason (unmatched, failed, host).")
SOURCE = typer.Option(None, "--source", help="swish, billogram, autogiro, bgmax or mixed.")
SINCE = typer.Option(None, "--since", help="Failed at or after: 2026-11-28, ...T06:00, or 3d.")
UNTIL = typer.Option(None, "--until", help="Failed before: 2026-11-28, ...T06:00, or 2h.")
SEARCH = typer.Option(
    None, "--search", help="A member number, event id, message id (or its start) or file name."
)
SHOW_PNR = typer.Option(
    False, "--show-pnr", help="Show personnummer in full (default: masked, 19811218-****)."
)


def _filter(
    reason: str | None,
    source: str | None,
    since: str | None,
    until: str | None,
    search: str | None,
) -> PoisonFilter:
    return PoisonFilter(
        reason=reason or None,
        source=source or None,
        since=_when(since, "--since"),
        until=_when(until, "--until"),
        search=search or None,
    )


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in this environment (a bare container)
        return "unknown"


def _chosen(ids: list[str] | None, all_: bool, where: PoisonFilter) -> PoisonFilter | None:
    """The filter to act on, or None for ids; refuses an unclear choice."""
    if ids and (all_ or not where.empty):
        _fail("give message IDS, or filters or --all, not both")
    if not ids and not all_ and where.empty:
        _fail("say which: message IDS, filters (--reason, --source, --since, ...) or --all")
    return None if ids else where


# --- commands -----------------------------------------------------------------------------------


def _summary_line(record: PoisonRecord) -> dict[str, Any]:
    return {
        "message_id": record.message_id,
        "failed_at": record.failed_at.isoformat(),
        "reason": record.reason,
        "category": record.category,
        "source": record.source,
        "file": record.file,
        "event_ids": list(record.event_ids),
        "member_refs": list(record.member_refs),
    }


@poison_app.command("list")
def list_(
    reason: str | None = REASON,
    source: str | None = SOURCE,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    search: str | None = SEARCH,
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="Messages per page."),
    page: int | None = typer.Option(None, "--page", min=1, help="Page number (1: the newest)."),
    cursor: str | None = typer.Option(None, "--cursor", help="Go on from a printed cursor."),
    as_json: bool = typer.Option(
        False, "--json", help="One JSON line per message, then one with the count."
    ),
    show_pnr: bool = SHOW_PNR,
) -> None:
    """Poison messages, newest first, with the true count of those that match."""
    if page is not None and cursor:
        _fail("give --page or --cursor, not both")
    where = _filter(reason, source, since, until, search)
    book = _book()
    number = page or 1
    records: list[PoisonRecord] = []
    next_cursor: str | None = None
    with _errors():
        total = book.count(where)
        at, there = cursor, True
        if cursor is None:
            for _ in range(number - 1):  # cursors are the store's own: walk to the page asked
                at = book.page(where, limit=limit, cursor=at).cursor
                if at is None:
                    there = False
                    break
        if there:
            shown = book.page(where, limit=limit, cursor=at)
            records, next_cursor = shown.records, shown.cursor
    if not show_pnr:
        records = [masked(r) for r in records]
    if as_json:
        for record in records:
            typer.echo(json.dumps(_summary_line(record), ensure_ascii=False))
        count_line = {
            "count": total,
            "shown": len(records),
            "page": None if cursor else number,
            "next_cursor": next_cursor,
        }
        typer.echo(json.dumps(count_line))
        return
    matching = "" if where.empty else f" ({where.describe()})"
    if not records:
        console.print(
            f"{total:,} poison message(s) match{matching}; none on this page",
            highlight=False,
            markup=False,
        )
        return
    if cursor:
        span = f"{len(records)} after the cursor"
    else:
        first = (number - 1) * limit + 1
        span = f"{first:,}–{first + len(records) - 1:,}"
    console.print(
        f"{total:,} poison message(s) match{matching}; showing {span}",
        highlight=False,
        markup=False,
    )
    for text in _rows(records):
        console.print(text, highlight=False, markup=False)
    if next_cursor is not None:
        following = f"--cursor {next_cursor}"
        if not cursor:
            following = f"--page {number + 1} (or {following})"
        console.print(f"next: {following}", highlight=False, markup=False)


def _rows(records: list[PoisonRecord]) -> list[str]:
    """Two lines a message: the facts in aligned columns, then the reason indented. Never a
    table that squeezes: the id is what `show`, `replay` and `purge` take, so it is whole."""
    cells = []
    for r in records:
        more = len(r.member_refs) - 1
        member = (r.member_refs[0] + (f" +{more}" if more else "")) if r.member_refs else "-"
        events = f"{len(r.event_ids)} event" + ("" if len(r.event_ids) == 1 else "s")
        cells.append(
            (
                r.message_id,
                r.failed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M"),
                r.source or "-",
                events,
                member,
                r.file,
            )
        )
    header = ("message id", "failed at (UTC)", "source", "events", "member", "file")
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header) - 1)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join([*(v.ljust(w) for v, w in zip(row, widths, strict=False)), row[-1]])

    out = [line(header).rstrip()]
    for row, record in zip(cells, records, strict=True):
        out += [line(row).rstrip(), f"    {record.reason}"]
    return out


@poison_app.command()
def show(
    message_id: str = typer.Argument(..., help="A message id, or its start when unique."),
    show_pnr: bool = SHOW_PNR,
) -> None:
    """One poison message in full: reason, events, raw text (personnummer masked)."""
    book = _book()
    with _errors():
        record = book.show(message_id)
    if not show_pnr:
        record = masked(record)
    body = json.loads(record.body) if record.body else {}
    shown = {**_summary_line(record), **body}
    poison = body.get("poison") if isinstance(body, dict) else None
    if isinstance(poison, dict) and "raw" in poison:
        shown["raw"] = poison["raw"]
    typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))


IDS = typer.Argument(None, help="Message ids (or unique starts of them).", show_default=False)
ALL = typer.Option(False, "--all", help="Every message in the book.")


@poison_app.command()
def replay(
    ids: list[str] | None = IDS,
    all_: bool = ALL,
    reason: str | None = REASON,
    source: str | None = SOURCE,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    search: str | None = SEARCH,
) -> None:
    """Put events back on the main queue once their cause is fixed (their ids are unchanged,
    so an event already written is settled as a duplicate)."""
    where = _chosen(ids, all_, _filter(reason, source, since, until, search))
    book = _book()
    with _errors(), _bar("replaying") as progress:
        report = book.replay(where, ids or (), who=_who(), via="cli", progress=progress)
    if not report.messages and not report.skipped:
        what = where.describe() if where is not None else ", ".join(ids or ())
        console.print(f"no poison message matches ({what})", highlight=False, markup=False)
        return
    console.print(
        f"replayed {report.messages:,} poison message(s): {report.events:,} event(s) back on "
        f"the queue in {report.queue_messages:,} message(s)",
        highlight=False,
        markup=False,
    )
    if report.skipped:
        err_console.print(
            f"skipped {len(report.skipped):,} message(s) that hold no events to replay "
            "(read them with `poison show ID`, then purge them):",
            highlight=False,
            markup=False,
        )
        for message_id in report.skipped:
            err_console.print(f"  {message_id}", highlight=False, markup=False)
        raise typer.Exit(1)


@poison_app.command()
def purge(
    ids: list[str] | None = IDS,
    all_: bool = ALL,
    reason: str | None = REASON,
    source: str | None = SOURCE,
    since: str | None = SINCE,
    until: str | None = UNTIL,
    search: str | None = SEARCH,
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete poison messages for good (after a confirmation that shows how many)."""
    where = _chosen(ids, all_, _filter(reason, source, since, until, search))
    book = _book()
    full: list[str] = []
    with _errors():
        if where is None:
            full = list(dict.fromkeys(book.show(i).message_id for i in ids or ()))
            count, what = len(full), ", ".join(full)
        else:
            count, what = book.count(where), where.describe()
    if count == 0:
        console.print(f"no poison message matches ({what})", highlight=False, markup=False)
        return
    if not yes:
        typer.confirm(f"Purge {count:,} poison message(s) ({what}) for good?", abort=True)
    with _errors(), _bar("purging") as progress:
        gone = book.purge(where, full, who=_who(), via="cli", progress=progress)
    console.print(f"purged {gone:,} poison message(s)", highlight=False, markup=False)
