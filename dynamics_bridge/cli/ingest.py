"""``dynamics-bridge ingest``: Bankgirot files (Autogiro reports, BgMax) onto the event queue."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import typer
from pydantic import ValidationError
from rich.table import Table

from dynamics_bridge.app.ingest import (
    FileFormat,
    IngestReport,
    MandateTasks,
    ingest_file,
    iter_files,
)
from dynamics_bridge.app.runs import store_of
from dynamics_bridge.app.wiring import Services
from dynamics_bridge.cli import _progress
from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import BridgeError, ConfigError, InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import EventQueue, InMemoryQueue
from dynamics_bridge.settings import ENV_DELIMITER, ENV_PREFIX, BankgirotSettings, load_settings

if TYPE_CHECKING:
    from dynamics_bridge.ops.port import OpsStore

#: Files at least this large get a progress bar (when events are queued).
PROGRESS_FROM_BYTES = 8 * 1024 * 1024
FORMATS = ("auto", "autogiro", "bgmax")


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or directories (read recursively)."),
    file_format: str = typer.Option("auto", "--format", help="auto | autogiro | bgmax"),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Parse and check only; queue nothing, need no queue settings."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Dry run: events as JSON lines on stdout. Else: summary as JSON."
    ),
) -> None:
    """Read Bankgirot files, check them against their own totals, and queue their events.

    A bad file is reported as FILE:LINE: message on stderr and nothing from it is queued; the
    other files still are. A file for another payee than the union's own
    (BRIDGE_BANKGIROT__PAYEE_BANKGIROS, __CUSTOMER_NUMBERS) is a bad file. Each file leaves a
    run in the run history. A file of 8 MB or more gets a progress bar on stderr when it is a
    terminal, in a dry run too.

    A failed Autogiro mandate request becomes a task in Dynamics regarding its member when
    dataverse.yaml has `tasks:` and retention.yaml says `advisor.failed_mandates: true` (never in
    a dry run); one whose member is not found, or whose task cannot be made, is listed as
    needing a task.

    Exit codes: 0 every file checked out (and was queued, unless a dry run); 2 a file was bad
    or could not be read or queued, a path held nothing to ingest, or the union's payee
    bankgiros are not configured (nothing is read). Ingest poisons nothing: events are
    matched to members by `sync`, whose exit code says when every one was poisoned.
    """
    if file_format not in FORMATS:
        _error(f"--format must be one of {', '.join(FORMATS)}, not {file_format!r}")
        raise typer.Exit(2)
    bankgirot, queue, ops, tasks = _settings(dry_run)
    missing = bankgirot.problems()
    if missing:
        _error(str(ConfigError(missing)))
        raise typer.Exit(2)
    print_event = _print_event if dry_run and as_json else None
    in_memory = isinstance(queue, InMemoryQueue)
    if in_memory:
        _error(
            "warning: BRIDGE_QUEUE__BACKEND is 'memory': the events go to a queue inside this "
            "process and are lost when the command ends. Use --dry-run to check files, or set "
            "BRIDGE_QUEUE__BACKEND=azure (and BRIDGE_QUEUE__CONNECTION_STRING) to queue them."
        )

    reports: list[IngestReport] = []
    failed = 0
    for given in paths:
        try:
            files = list(iter_files([given]))
        except InputError as exc:
            failed += 1
            _error(str(exc))
            continue
        if not files:  # an empty drop folder is worth an exit code, not a quiet success
            failed += 1
            _error(f"{given}: nothing to ingest (no files)")
            continue
        for path in files:
            try:
                report = _ingest_one(
                    path, cast(FileFormat, file_format), queue, bankgirot, print_event, ops, tasks
                )
                reports.append(report)
            except InputError as exc:
                failed += 1
                _error(str(exc))
            except BridgeError as exc:
                failed += 1
                _error(
                    f"{path}: stopped while queueing: {exc} (ingest the file again: event ids "
                    "are deterministic, so what was queued becomes a duplicate downstream)"
                )
            except OSError as exc:
                failed += 1
                _error(f"{path}: cannot read: {exc.strerror or exc}")
    _summary(reports, dry_run=dry_run, as_json=as_json, in_memory=in_memory)
    if failed:
        raise typer.Exit(2)


def _settings(
    dry_run: bool,
) -> tuple[
    BankgirotSettings,
    EventQueue | None,
    OpsStore | None,
    Callable[[], MandateTasks | None] | None,
]:
    """The Bankgirot settings, the queue unless this is a dry run (which needs no queue), the
    run history's store when the settings load (a dry run is recorded as one), and what makes
    the advisor tasks for failed mandate requests (not in a dry run; built on first need)."""
    prefix = f"{ENV_PREFIX}BANKGIROT{ENV_DELIMITER}"
    try:
        if dry_run:
            settings = load_settings(queue={"backend": "memory"})
            return settings.bankgirot, None, store_of(Services(settings)), None
        services = Services(load_settings())
        return (
            services.settings.bankgirot,
            services.queue,
            store_of(services),
            services.mandate_tasks,
        )
    except ConfigError as exc:
        if not dry_run or any(p.startswith(prefix) for p in exc.problems):
            _error(str(exc))
            raise typer.Exit(2) from None
    # A dry run goes on past problems in settings it does not use, with the Bankgirot ones.
    try:
        values = {
            key[len(prefix) :].lower(): value
            for key, value in os.environ.items()
            if key.startswith(prefix)
        }
        return BankgirotSettings(**values), None, None, None  # type: ignore[arg-type]
    except ValidationError as exc:
        _error(f"invalid {prefix}* settings: {exc}")
        raise typer.Exit(2) from None


def _ingest_one(
    path: Path,
    file_format: FileFormat,
    queue: EventQueue | None,
    bankgirot: BankgirotSettings,
    on_event: Callable[[PaymentEvent], None] | None,
    ops: OpsStore | None = None,
    tasks: Callable[[], MandateTasks | None] | None = None,
) -> IngestReport:
    """One file, with a bar of bytes read over both passes (one when only checked) for a file
    of PROGRESS_FROM_BYTES or more, real ingest or dry run alike."""
    size = path.stat().st_size
    passes = 2 if queue is not None or on_event is not None else 1
    with _progress.progress_bar(
        f"ingest {path.name}", unit="bytes", show=size >= PROGRESS_FROM_BYTES
    ) as advance:

        def moved(phase: str, done: int, total: int | None) -> None:
            advance(done + (size if phase == "queueing" else 0), size * passes)

        return ingest_file(
            path,
            format=file_format,
            queue=queue,
            settings=bankgirot,
            on_event=on_event,
            on_progress=moved,
            ops=ops,
            tasks=tasks,
        )


def _print_event(event: PaymentEvent) -> None:
    sys.stdout.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")


def _error(message: str) -> None:
    err_console.print(message, highlight=False, soft_wrap=True, markup=False)


#: The summary's name for mandate notices that say our own request failed (no event).
NEEDS_TASK = "mandate request failed, needs a task"
#: ... and for those whose task is in Dynamics (made by this ingest, or already there).
TASK_MADE = "mandate request failed, task in Dynamics"


def _summary(
    reports: list[IngestReport],
    *,
    dry_run: bool,
    as_json: bool,
    in_memory: bool = False,
) -> None:
    """Per file and kind: count and sum. JSON on stderr in a dry run (stdout holds events).

    Mandate notices saying our own request failed create no event but are counted from the
    report (and listed by ``FILE:LINE`` in JSON as ``mandate_requests_failed``, which
    :meth:`IngestReport.to_json` writes): each needs a task, unless its task was made in
    Dynamics (counted apart; ``mandate_tasks`` in JSON says each one's status).
    """
    if as_json:
        target = sys.stderr if dry_run else sys.stdout
        for report in reports:
            line = report.to_json()
            if in_memory:
                line["queue"] = "memory (lost when this command ends)"
            target.write(json.dumps(line, ensure_ascii=False) + "\n")
        return
    if dry_run:
        title = "Events found (dry run, nothing queued)"
    elif in_memory:
        title = "Events queued in memory only (lost when this command ends)"
    else:
        title = "Events queued"
    table = Table(title=title)
    for column in ("file", "format", "kind", "currency", "count", "sum"):
        table.add_column(
            column,
            justify="right" if column in ("count", "sum") else "left",
            no_wrap=column != "file",
            overflow="fold",
        )
    for report in reports:
        failed_requests = report.requests_failed
        if not report.totals and not failed_requests:
            table.add_row(Path(report.path).name, report.format, "(no events)", "", "0", "")
        for kind, by_currency in sorted(report.totals.items()):
            for currency, (count, total) in sorted(by_currency.items()):
                table.add_row(
                    Path(report.path).name,
                    report.format,
                    kind,
                    currency,
                    str(count),
                    _kronor(total),
                )
        made = report.tasks_made()
        if made:
            table.add_row(
                Path(report.path).name, report.format, f"({TASK_MADE})", "", str(made), ""
            )
        if len(failed_requests) > made:
            table.add_row(
                Path(report.path).name,
                report.format,
                f"({NEEDS_TASK})",
                "",
                str(len(failed_requests) - made),
                "",
            )
    console.print(table)
    events = sum(r.events for r in reports)
    if dry_run:
        said = f"would queue {events} event(s) from {len(reports)} file(s) (dry run)"
    else:
        said = f"queued {sum(r.queued for r in reports)} event(s) from {len(reports)} file(s)"
        said += " in memory only" if in_memory else ""
    console.print(said, highlight=False)


def _kronor(minor: int) -> str:
    """``123456789`` öre → ``1 234 567.89`` (integers all the way: amounts are never floats)."""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100:,}.{abs(minor) % 100:02d}".replace(",", " ")
