"""Ingest Bankgirot files: parse, check against the file's own totals, then hand events on.

A file is read twice: once to check all of it (every section and closing figure), and only
then again to queue (or print) its events. So a bad total found on the last line still means
nothing from that file is queued, and memory stays flat however large the file is: nothing is
held between the passes but the per-kind totals. The file itself is the durable copy until its
events are on the queue. A stream that cannot seek (a network body) is first copied to a
temporary file.

Mandate notices saying our own request failed create no event; the checking pass collects them
on the report (``requests_failed``) and logs each once, however many times the file is read.
When advisor tasks are on (dataverse.yaml ``tasks``, retention.yaml ``advisor.failed_mandates``)
each becomes a task in Dynamics regarding the member its payer number names, once the file is
queued (never in a dry run): :class:`MandateTaskMaker`, keyed ``mandate:<file>:<payer>`` so a
file ingested again makes no second task. A notice whose member is not found, or whose task
could not be made, stays on the report as needing a task.

Every file must belong to the union: its payee bankgiro numbers (and Autogiro customer numbers,
when configured) must be the union's own (``BRIDGE_BANKGIROT__PAYEE_BANKGIROS``,
``__CUSTOMER_NUMBERS``). With none configured nothing is ingested (ConfigError), unless
``__ACCEPT_ANY_PAYEE`` is set for development.

The CLI (``dynamics-bridge ingest``) and, later, a blob-triggered Azure Function call
:func:`ingest_file`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol, cast
from zoneinfo import ZoneInfo

from dynamics_bridge.activation.advisor import AdvisorTask, mandate_task
from dynamics_bridge.app.runs import RunRecorder, file_counts, receipt_text
from dynamics_bridge.errors import BridgeError, ConfigError, InputError
from dynamics_bridge.model import MemberRefKind, PaymentEvent
from dynamics_bridge.queue import EventQueue
from dynamics_bridge.settings import BankgirotSettings, env_name
from dynamics_bridge.sources import autogiro, bgmax
from dynamics_bridge.sources.bankgirot import Payees

if TYPE_CHECKING:
    from dynamics_bridge.dataverse.tasks import TaskReport
    from dynamics_bridge.mapping.models import MappingFile
    from dynamics_bridge.mapping.retention import Advisor
    from dynamics_bridge.ops.port import OpsStore
    from dynamics_bridge.pipeline import MemberStore

__all__ = [
    "TASK_CREATED",
    "TASK_EXISTING",
    "TASK_NO_MEMBER",
    "FileFormat",
    "IngestReport",
    "MandateTaskMaker",
    "MandateTasks",
    "Progress",
    "detect_format",
    "ingest_file",
    "iter_files",
    "parse_stream",
    "payees_of",
]

FileFormat = Literal["auto", "autogiro", "bgmax"]
#: Called after every chunk read: ("checking" | "queueing", bytes read so far, total or None).
Progress = Callable[[str, int, int | None], None]

_SPOOL_IN_MEMORY = 16 * 1024 * 1024

log = logging.getLogger(__name__)

#: What became of a failed mandate request's task (``IngestReport.mandate_tasks``); anything
#: else is ``failed: <why>``.
TASK_CREATED, TASK_EXISTING, TASK_NO_MEMBER = "created", "existing", "member not found"


@dataclass
class IngestReport:
    """What one file held: events per kind and currency (count and sum), how many went on, and
    the mandate notices saying our own request failed (no event; each needs a task)."""

    path: str
    format: str
    events: int = 0
    queued: int = 0
    #: kind → currency → [count, sum in minor units]
    totals: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    #: in file order, each once (from the checking pass)
    requests_failed: list[autogiro.Notice] = field(default_factory=list)
    #: notice origin (FILE:LINE) → its task: created, existing, member not found, failed: why
    mandate_tasks: dict[str, str] = field(default_factory=dict)

    def tasks_made(self) -> int:
        """Failed mandate requests that have their task in Dynamics (made now or before)."""
        return sum(1 for s in self.mandate_tasks.values() if s in (TASK_CREATED, TASK_EXISTING))

    def add(self, event: PaymentEvent) -> None:
        self.events += 1
        by_currency = self.totals.setdefault(event.kind.value, {})
        entry = by_currency.setdefault(event.currency, [0, 0])
        entry[0] += 1
        entry[1] += event.amount_minor

    def to_json(self) -> dict[str, object]:
        """The summary; ``mandate_requests_failed`` (each ``FILE:LINE``) only when there are any."""
        body: dict[str, object] = {
            "path": self.path,
            "format": self.format,
            "events": self.events,
            "queued": self.queued,
            "by_kind": {
                kind: {cur: {"count": c, "sum_minor": s} for cur, (c, s) in sorted(by_cur.items())}
                for kind, by_cur in sorted(self.totals.items())
            },
        }
        if self.requests_failed:
            body["mandate_requests_failed"] = [notice.origin for notice in self.requests_failed]
        if self.mandate_tasks:
            body["mandate_tasks"] = dict(self.mandate_tasks)
        return body


class TaskCreator(Protocol):
    """What makes tasks in Dynamics (:class:`dynamics_bridge.dataverse.tasks.TaskWriter`)."""

    def create(self, tasks: Sequence[AdvisorTask]) -> TaskReport: ...


class MandateTasks(Protocol):
    """Makes the advisor tasks for a file's failed mandate requests: notice origin → status."""

    def make(self, notices: Sequence[autogiro.Notice]) -> dict[str, str]: ...


class MandateTaskMaker:
    """One advisor task per failed mandate request, regarding the member whose payer number
    the notice names (read in one query through the pipeline's member store), keyed
    ``mandate:<file>:<payer>``, owned as ``advisor.owner`` says and due in
    ``advisor.due_days``. A notice whose member is not found gets no task and says so."""

    def __init__(
        self,
        members: MemberStore,
        writer: TaskCreator,
        mapping: MappingFile,
        advisor: Advisor,
        *,
        today: Callable[[], date] | None = None,
    ) -> None:
        self.members = members
        self.writer = writer
        self.mapping = mapping
        self.advisor = advisor
        zone = ZoneInfo(mapping.timezone)
        self.today = today or (lambda: datetime.now(zone).date())

    def make(self, notices: Sequence[autogiro.Notice]) -> dict[str, str]:
        key = self.mapping.member.keys.get(MemberRefKind.PAYER_NUMBER)
        column = key.column if key is not None else None
        if column is None:  # payer numbers found through payment rows: no member to read
            return {n.origin: TASK_NO_MEMBER for n in notices}
        found = self.members.read_members(column, sorted({_payer(n) for n in notices}), [])
        today = self.today()
        tasks: dict[str, AdvisorTask] = {}
        status: dict[str, str] = {}
        for notice in notices:
            member = found.get(_payer(notice))
            if member is None or not member.row_id:
                status[notice.origin] = TASK_NO_MEMBER
                continue
            tasks[notice.origin] = mandate_task(
                origin=notice.origin,
                payer=notice.payer,
                payer_key=_payer_key(notice),
                codes=notice.pair,
                reason=notice.reason,
                contact_id=member.row_id,
                today=today,
                due_days=self.advisor.due_days,
            )
        if tasks:
            report = self.writer.create(list(tasks.values()))
            for origin, task in tasks.items():
                status[origin] = report.status(task.key) or "failed: not written"
        return {n.origin: status[n.origin] for n in notices}


def _payer(notice: autogiro.Notice) -> str:
    """The payer number to find the member by: as the file has it, not as it is shown."""
    return notice.payer_number or notice.payer


def _payer_key(notice: autogiro.Notice) -> str:
    """The payer in a task's key: as shown where that is the number itself, else a digest (a
    masked personnummer would give two payers born the same day one key)."""
    raw = _payer(notice)
    if raw == notice.payer:
        return raw
    return "h" + hashlib.sha256(raw.encode()).hexdigest()[:20]


def detect_format(head: bytes) -> Literal["autogiro", "bgmax"]:
    """BgMax files open with ``01BGMAX``; everything else is read as an Autogiro report.

    Title lines before the first record (anything not starting with two digits) are skipped.
    """
    for line in head.splitlines() or [head]:
        stripped = line.lstrip(b"\xef\xbb\xbf \t")
        if stripped[:2].isdigit():
            return "bgmax" if stripped[2:7] == b"BGMAX" else "autogiro"
    return "autogiro"


def payees_of(settings: BankgirotSettings) -> Payees | None:
    """The union's payees every file is checked against; None (no check) only when none are
    configured and ``accept_any_payee`` is set. Raises ConfigError when neither is."""
    problems = settings.problems()
    if problems:
        raise ConfigError(problems)
    if not settings.payee_bankgiros:
        return None
    return Payees(
        frozenset(settings.payee_bankgiros),
        frozenset(settings.customer_numbers),
        bankgiro_setting=env_name(("bankgirot", "payee_bankgiros")),
        customer_setting=env_name(("bankgirot", "customer_numbers")),
    )


def parse_stream(
    stream: BinaryIO,
    name: str,
    fmt: Literal["autogiro", "bgmax"],
    settings: BankgirotSettings,
    *,
    on_notice: Callable[[autogiro.Notice], None] | None = None,
) -> Iterator[PaymentEvent]:
    """The events of one file, checked as they stream past (the pure parsers, chosen by format).

    ``on_notice`` gets the Autogiro mandate notices that create no event (see
    :func:`autogiro.parse`; without it they are logged); BgMax files have none. Raises
    ConfigError when the union's payees are not configured (see :func:`payees_of`).
    """
    payees = payees_of(settings)
    if fmt == "bgmax":
        return bgmax.parse(stream, name, ocr_scheme=settings.ocr_scheme, payees=payees)
    return autogiro.parse(stream, name, on_notice=on_notice, payees=payees)


def ingest_file(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    format: FileFormat = "auto",
    queue: EventQueue | None = None,
    settings: BankgirotSettings | None = None,
    name: str | None = None,
    on_event: Callable[[PaymentEvent], None] | None = None,
    on_progress: Progress | None = None,
    ops: OpsStore | None = None,
    tasks: Callable[[], MandateTasks | None] | None = None,
) -> IngestReport:
    """Check a whole file, then send its events to ``queue`` and/or ``on_event``.

    ``source`` is a path or a binary stream (``name`` then says what to call it in origins and
    errors). Raises InputError naming ``FILE:LINE`` when the file is bad; nothing from it has
    then been queued or passed to ``on_event``. A queue failure (TransientError) can stop a
    file part-way: ingest it again; ids are deterministic, so what already went on the queue
    becomes a duplicate downstream, never a second payment.

    Mandate notices saying our own request failed are collected in the checking pass only:
    listed once on the report's ``requests_failed`` and logged once (WARNING, outcome
    ``mandate_request_failed``) after the whole file checked out.

    ``tasks`` builds what makes the advisor tasks for those notices (None from it: tasks are
    off); it is called only when a file with such notices has been queued (so never in a dry
    run), and each notice's task is on the report's ``mandate_tasks``. A task that cannot be
    made (Dynamics unreachable, a setting missing) is logged and reported, never fails the file:
    its events are queued by then.

    A file naming another payee than the union's is an InputError like any bad file; with no
    payees configured (and no ``accept_any_payee``) a ConfigError is raised before reading.

    Each call leaves one run in ``ops`` (kind ``file``, name = the format): counted
    ``<source>/<kind>/queued`` when events were queued; detail: the file, its receipt totals,
    ``dry_run`` when no queue was given; a rejected file's run holds the error.
    """
    settings = settings or BankgirotSettings()
    label = name or (str(source) if isinstance(source, str | os.PathLike) else None)
    named = format if format != "auto" else "bankgirot"
    with RunRecorder("file", named, ops) as run:
        run.detail["file"] = label or str(getattr(source, "name", "<stream>"))
        if queue is None:
            run.detail["dry_run"] = "yes"
        payees_of(settings)  # refuse before reading anything when the union's payees are unset
        report = _ingest(source, format, queue, settings, name, on_event, on_progress, run)
        run.detail["receipt"] = receipt_text(report.totals)
        if queue is not None:
            run.add_counts(file_counts(report.format, report.totals))
        if report.requests_failed:
            run.detail["mandate_requests_failed"] = str(len(report.requests_failed))
            if queue is not None and tasks is not None:
                report.mandate_tasks = _make_tasks(tasks, report.requests_failed)
                run.detail["mandate_tasks_made"] = str(report.tasks_made())
    return report


def _make_tasks(
    tasks: Callable[[], MandateTasks | None], notices: Sequence[autogiro.Notice]
) -> dict[str, str]:
    """Each notice's task status; a failure to make them is a status, logged once."""
    try:
        maker = tasks()
        return maker.make(notices) if maker is not None else {}
    except BridgeError as exc:
        reason = "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
        log.warning(
            "%s: no advisor task made for %d failed mandate request(s): %s",
            notices[0].origin.rsplit(":", 1)[0],
            len(notices),
            reason,
            extra={"outcome": "tasks_failed", "count": len(notices)},
        )
        return {n.origin: f"failed: {reason}" for n in notices}


def _ingest(
    source: str | os.PathLike[str] | BinaryIO,
    format: FileFormat,
    queue: EventQueue | None,
    settings: BankgirotSettings,
    name: str | None,
    on_event: Callable[[PaymentEvent], None] | None,
    on_progress: Progress | None,
    run: RunRecorder,
) -> IngestReport:
    with _seekable(source, name) as (stream, label, size):
        start = stream.tell()
        head = stream.read(64 * 1024)
        stream.seek(start)
        chosen: Literal["autogiro", "bgmax"] = (
            detect_format(head) if format == "auto" else cast(Literal["autogiro", "bgmax"], format)
        )
        run.name = chosen
        report = IngestReport(label, chosen)
        checked = _watched(stream, "checking", size, on_progress)
        found = report.requests_failed.append
        for event in parse_stream(checked, label, chosen, settings, on_notice=found):
            report.add(event)
        for notice in report.requests_failed:
            autogiro.log_notice(notice)
        if queue is None and on_event is None:
            return report
        stream.seek(start)
        sent = _watched(stream, "queueing", size, on_progress)
        batch: list[PaymentEvent] = []
        limit = settings.events_per_message_batch
        for event in parse_stream(sent, label, chosen, settings, on_notice=_seen_already):
            if on_event is not None:
                on_event(event)
            if queue is not None:
                batch.append(event)
                if len(batch) >= limit:
                    queue.send(batch)
                    report.queued += len(batch)
                    batch = []
        if queue is not None and batch:
            queue.send(batch)
            report.queued += len(batch)
    return report


def _seen_already(notice: autogiro.Notice) -> None:
    """The queueing pass: every notice is already on the report (and logged) from the check."""


@contextmanager
def _seekable(
    source: str | os.PathLike[str] | BinaryIO, name: str | None
) -> Iterator[tuple[BinaryIO, str, int | None]]:
    """A seekable binary stream for the two passes, its name, and its size when known."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        with path.open("rb") as fh:
            yield fh, name or str(source), path.stat().st_size
        return
    label = name or str(getattr(source, "name", "<stream>"))
    seekable = getattr(source, "seekable", None)
    if callable(seekable) and seekable():
        yield source, label, None
        return
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        shutil.copyfileobj(source, spool)
        size = spool.tell()
        spool.seek(0)
        yield cast(BinaryIO, spool), label, size


def _watched(stream: BinaryIO, phase: str, size: int | None, report: Progress | None) -> BinaryIO:
    """``stream`` itself, or read through :class:`_Watched` when progress is reported."""
    return cast(BinaryIO, _Watched(stream, phase, size, report)) if report else stream


class _Watched:
    """A read-through stream that reports how far the parser has read (for a progress bar)."""

    def __init__(self, raw: BinaryIO, phase: str, size: int | None, report: Progress) -> None:
        self._raw, self._phase, self._size, self._report = raw, phase, size, report
        self._done = 0

    def read(self, size: int = -1, /) -> bytes:
        data = self._raw.read(size)
        position = self._raw.tell()
        if position > self._done:  # a BgMax section read again does not move the bar back
            self._done = position
            self._report(self._phase, position, self._size)
        return data

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()


def iter_files(paths: list[Path]) -> Iterator[Path]:
    """Files as given, and the files inside given directories (sorted, hidden ones skipped).

    A path that does not exist raises InputError naming it; the caller decides whether to go on.
    """
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            yield path
        else:
            raise InputError("no such file or directory", location=str(path))
