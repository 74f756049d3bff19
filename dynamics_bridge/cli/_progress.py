"""Progress bars for the long commands (sync, segments push, reminders, address refresh,
ingest): on stderr, and only when stderr is a terminal, so stdout stays for results and a
pipe or a log file gets no control codes.

A command opens :func:`progress_bar` and hands its callback to the job; the callback takes
``(done, total)`` (``total`` None while unknown) and may be called from any thread. The bar
is drawn only for a terminal; the callback is called either way (the tests count on it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, Protocol

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dynamics_bridge.cli._app import err_console

__all__ = ["Advance", "progress_bar", "shown"]


class Advance(Protocol):
    """``(done, total)``: how far a job is; ``total`` None while it is not known; ``note`` a
    few words shown after the bar's name (``1 234 events``)."""

    def __call__(self, done: int, total: int | None = None, note: str | None = None) -> None: ...


def shown() -> bool:
    """Whether a bar is drawn: stderr is a terminal (not a pipe, a file or a test runner)."""
    return err_console.is_terminal


@contextmanager
def progress_bar(
    description: str, *, unit: Literal["items", "bytes"] = "items", show: bool = True
) -> Iterator[Advance]:
    """A bar named ``description`` (``done/total`` or bytes, elapsed, remaining), gone when
    done. ``show`` False: the callback is still there, the bar is not (a small file)."""
    lock = threading.Lock()
    amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        amount,
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not (show and shown()),
    ) as progress:
        task = progress.add_task(description, total=None)

        def advance(done: int, total: int | None = None, note: str | None = None) -> None:
            named = f"{description} ({note})" if note else description
            with lock:
                progress.update(task, completed=done, total=total, description=named)

        yield advance
