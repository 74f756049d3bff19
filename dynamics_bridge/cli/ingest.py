"""``dynamics-bridge ingest``: Bankgirot files (Autogiro reports, BgMax) onto the event queue."""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dynamics_bridge.cli._app import app, console, err_console
from dynamics_bridge.errors import ConfigError, InputError, TransientError
from dynamics_bridge.ingest import FileFormat, IngestReport, ingest_file, iter_files
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.queue import EventQueue, open_queue
from dynamics_bridge.settings import BankgirotSettings, load_settings

PROGRESS_FROM_BYTES = 1024 * 1024


class _Counting:
    """A read-through wrapper that moves a progress bar as the parser reads."""

    def __init__(self, raw: BinaryIO, progress: Progress, task: Any) -> None:
        self._raw, self._progress, self._task = raw, progress, task

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._progress.update(self._task, advance=len(data))
        return data


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(..., help="Files or directories."),
    file_format: str = typer.Option("auto", "--format", help="auto | autogiro | bgmax"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Parse and check only; queue nothing."),
    as_json: bool = typer.Option(False, "--json", help="Events (dry run) or summary as JSON."),
) -> None:
    """Read Bankgirot files, check them against their own totals, and queue their events."""
    if file_format not in ("auto", "autogiro", "bgmax"):
        err_console.print(f"--format must be auto, autogiro or bgmax, not {file_format!r}")
        raise typer.Exit(2)
    queue: EventQueue | None = None
    if dry_run:
        bankgirot = BankgirotSettings()
        # A dry run needs no queue settings; the Bankgirot ones apply when they are valid.
        with contextlib.suppress(ConfigError):
            bankgirot = load_settings().bankgirot
    else:
        try:
            settings = load_settings()
        except ConfigError as exc:
            err_console.print(str(exc), highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        bankgirot = settings.bankgirot
        queue = open_queue(settings.queue)

    def print_event(event: PaymentEvent) -> None:
        sys.stdout.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")

    reports: list[IngestReport] = []
    failed = 0
    try:
        files = list(iter_files(paths))
    except InputError as exc:
        err_console.print(f"{exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    for path in files:
        size = path.stat().st_size
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=size < PROGRESS_FROM_BYTES or dry_run,
        ) as progress:
            counting = functools.partial(
                _Counting, progress=progress, task=progress.add_task(path.name, total=size)
            )
            try:
                reports.append(
                    ingest_file(
                        path,
                        fmt=cast(FileFormat, file_format),
                        queue=queue,
                        settings=bankgirot,
                        on_event=print_event if (dry_run and as_json) else None,
                        wrap=counting,
                    )
                )
            except InputError as exc:
                failed += 1
                err_console.print(f"{exc}", highlight=False, soft_wrap=True)
            except TransientError as exc:
                failed += 1
                err_console.print(f"{path}: not queued: {exc}", highlight=False, soft_wrap=True)
    _summary(reports, dry_run=dry_run, as_json=as_json)
    if failed:
        raise typer.Exit(2)


def _summary(reports: list[IngestReport], *, dry_run: bool, as_json: bool) -> None:
    if as_json:
        lines = [json.dumps(r.to_json(), ensure_ascii=False) for r in reports]
        target = err_console if dry_run else console
        for line in lines:
            target.print(line, highlight=False, soft_wrap=True)
        return
    table = Table(title="Events " + ("found (dry run, nothing queued)" if dry_run else "queued"))
    for column in ("file", "format", "kind", "currency", "count", "sum"):
        table.add_column(
            column,
            justify="right" if column in ("count", "sum") else "left",
            no_wrap=column != "file",
            overflow="fold",
        )
    for report in reports:
        for kind, by_currency in sorted(report.totals.items()):
            for currency, (count, total) in sorted(by_currency.items()):
                table.add_row(
                    Path(report.path).name,
                    report.format,
                    kind,
                    currency,
                    str(count),
                    f"{total / 100:,.2f}".replace(",", " "),
                )
    (err_console if dry_run and as_json else console).print(table)
