"""The poison book: every poison-queue message kept where operators can count, page, search,
replay and purge it by filter, which a storage queue (32 messages per look, no search, no
get-by-id) cannot do.

The sync still settles failures onto ``<queue>-poison`` (:meth:`EventQueue.to_poison`, the hot
path's one durable write, and where the Functions host itself moves a message after
``maxDequeueCount``). :meth:`PoisonBook.absorb` drains that queue into the ops store: a batch of
records written first, the queue messages deleted after, so a crash in between only writes the
same message ids again. Replay and purge then work on the book, in bulk, and each leaves one
:class:`~dynamics_bridge.ops.model.AuditRecord`.

What an operator is shown is masked (:func:`masked`): every personnummer-shaped value keeps its
birth date and loses its last four digits.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from dynamics_bridge.errors import ConfigError, InputError
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.ops.model import AuditRecord, PoisonFilter, PoisonPage, PoisonRecord
from dynamics_bridge.personnummer import PNR_PATTERN, mask_text
from dynamics_bridge.queue.envelope import ENVELOPE_VERSION

if TYPE_CHECKING:
    from dynamics_bridge.ops.port import OpsStore
    from dynamics_bridge.queue import EventQueue, ReceivedMessage

__all__ = [
    "HOST_MOVED",
    "PoisonBook",
    "ReplayReport",
    "masked",
    "record_of",
]

log = logging.getLogger("dynamics_bridge.poison")

#: The reason of a message the Functions host moved itself (it writes no reason of its own).
HOST_MOVED = "host: moved by the Functions host after maxDequeueCount"

#: Poison-queue messages taken per look (Azure Storage's maximum) and hidden meanwhile (s).
ABSORB_BATCH = 32
ABSORB_VISIBILITY = 120
#: Book records removed per bulk delete (larger steps fill the transactions: 5,000 replayed
#: 540 records/s from a 40,000-record book on Azurite, 500 did 349/s).
STEP = 5000
#: Events gathered before one queue send (split by the queue into as few messages as fit).
EVENTS_PER_SEND = 2000
#: Records between two progress reports.
TICK = 100
#: How far back :meth:`PoisonBook.waiting` looks for the oldest record.
MAX_LOOK_BACK = timedelta(days=3650)
#: File sources: their events' origin is ``PATH:LINE`` (a webhook's is a callback id).
FILE_SOURCES = frozenset({"autogiro", "bgmax"})

Progress = Callable[[int, int], None]


@dataclass(slots=True)
class ReplayReport:
    """What a replay did: poison ``messages`` (book records) replayed and removed, the
    ``events`` they held put back on the queue in ``queue_messages`` messages, and the records
    left in the book because they hold no events to replay (``skipped``: their ids)."""

    messages: int = 0
    events: int = 0
    queue_messages: int = 0
    skipped: list[str] = field(default_factory=list)


# --- a poison-queue message as a record ---------------------------------------------------------


def record_of(message: ReceivedMessage, *, now: datetime | None = None) -> PoisonRecord:
    """One poison-queue message as the book keeps it.

    Our own poison messages carry a ``poison`` block (reason, failed_at); one the Functions host
    moved after ``maxDequeueCount`` is the original message unchanged: its reason is
    :data:`HOST_MOVED` and its time the message's insertion time (or ``now``)."""
    now = now or datetime.now(UTC)
    inserted = message.inserted_at
    if message.envelope is None:
        reason = f"{HOST_MOVED} (undecodable: {message.error})"
        body = {
            "v": ENVELOPE_VERSION,
            "events": [],
            "poison": {"reason": reason, "raw": message.raw},
        }
        return PoisonRecord(
            message_id=message.message_id,
            failed_at=inserted or now,
            reason=reason,
            source="",
            event_ids=(),
            member_refs=(),
            file="",
            body=_json_text(body),
        )
    envelope = message.envelope
    block = envelope.poison
    if block is None:
        reason, failed_at = HOST_MOVED, inserted or now
    else:
        reason = str(block.get("reason") or HOST_MOVED)
        failed_at = _instant(block.get("failed_at")) or inserted or now
    events = [e for e in envelope.events if isinstance(e, dict)]
    sources = _distinct(str(e.get("source") or "") for e in events)
    return PoisonRecord(
        message_id=message.message_id,
        failed_at=failed_at,
        reason=reason,
        source=sources[0] if len(sources) == 1 else ("mixed" if sources else ""),
        event_ids=tuple(_distinct(str(e.get("event_id") or "") for e in events)),
        member_refs=tuple(_distinct(_member_value(e) for e in events)),
        file=next(iter(_distinct(_file_of(e) for e in events)), ""),
        body=_json_text(envelope.to_json()),
    )


def _json_text(body: dict[str, Any]) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _distinct(values: Iterable[str]) -> list[str]:
    return [v for v in dict.fromkeys(values) if v]


def _member_value(event: dict[str, Any]) -> str:
    ref = event.get("member_ref")
    return str(ref.get("value") or "") if isinstance(ref, dict) else ""


def _file_of(event: dict[str, Any]) -> str:
    """The base name of a file event's ``PATH:LINE`` origin; "" for a webhook's."""
    origin = str(event.get("origin") or "")
    if event.get("source") not in FILE_SOURCES:
        return ""
    path, colon, line = origin.rpartition(":")
    if not (colon and path and line.isdigit()):
        return ""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- what an operator is shown ------------------------------------------------------------------


def masked(record: PoisonRecord) -> PoisonRecord:
    """The same record with every personnummer-shaped value masked (``19811218-****``) in the
    reason, the member refs and the body (base64 raw text is decoded first when the decoded
    text holds one). Event ids and the message id stay: they are what an operator searches."""
    try:
        body = json.loads(record.body) if record.body else None
    except json.JSONDecodeError:
        body_text = mask_text(record.body)
    else:
        body_text = (
            _json_text(_masked(body, None)) if isinstance(body, dict) else mask_text(record.body)
        )
    return replace(
        record,
        reason=mask_text(record.reason),
        member_refs=tuple(mask_text(m) for m in record.member_refs),
        body=body_text,
    )


def _masked(value: Any, key: str | None) -> Any:
    if isinstance(value, str):
        return _masked_raw(value) if key == "raw" else mask_text(value, label=key)
    if isinstance(value, dict):
        return {k: _masked(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(v, key) for v in value]
    return value


def _masked_raw(raw: str) -> str:
    try:
        decoded = base64.b64decode(raw.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):  # not base64 text (UnicodeDecodeError is a ValueError)
        return mask_text(raw)
    if PNR_PATTERN.search(decoded):
        return "base64 of: " + mask_text(decoded)
    return mask_text(raw)


# --- the book -----------------------------------------------------------------------------------


class PoisonBook:
    """The poison queue drained into the ops store, and what operators do with it there.

    ``workers``: poison-queue looks taken at once while absorbing (each: one receive of up to
    32, one write to the book, the deletes side by side); ``clock`` is for tests. Built by
    :attr:`dynamics_bridge.app.wiring.Services.poison_book`.
    """

    def __init__(
        self,
        queue: EventQueue,
        ops: OpsStore,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        workers: int = 4,
    ) -> None:
        self.queue = queue
        self.ops = ops
        self._clock = clock
        self._workers = max(1, workers)

    @property
    def durable(self) -> bool:
        """False when absorbing would lose messages: a durable (Azure) poison queue drained
        into this process's memory, gone when the process ends."""
        from dynamics_bridge.ops.memory import InMemoryOpsStore
        from dynamics_bridge.queue import InMemoryQueue

        return not isinstance(self.ops, InMemoryOpsStore) or isinstance(self.queue, InMemoryQueue)

    def absorb(
        self, limit: int | None = None, *, progress: Callable[[int], None] | None = None
    ) -> int:
        """Move poison-queue messages into the book (at most ``limit``); returns how many.

        Each look's records are written first, its queue messages deleted after: a crash in
        between leaves the messages to come back after their visibility timeout, and the next
        absorb writes the same message ids again (records are replaced by id, not doubled).
        ``progress`` is called with the count moved so far."""
        if not self.durable:
            raise ConfigError(
                "the poison book is in this process's memory (BRIDGE_OPS__BACKEND=memory) but "
                "the queue is not: absorbing would take messages off the poison queue and lose "
                "them when the process ends; set BRIDGE_OPS__BACKEND=tables"
            )
        lock, writing = threading.Lock(), threading.Lock()
        state = {"moved": 0, "reserved": 0}
        stop = threading.Event()

        def reserve() -> int:
            with lock:
                left = ABSORB_BATCH if limit is None else limit - state["reserved"]
                want = max(0, min(ABSORB_BATCH, left))
                state["reserved"] += want
                return want

        def loop(deleter: ThreadPoolExecutor) -> None:
            while not stop.is_set() and (want := reserve()):
                batch = self.queue.poison_receive(want, visibility_timeout=ABSORB_VISIBILITY)
                with lock:
                    state["reserved"] -= want - len(batch)
                if not batch:
                    return
                now = self._clock()
                with writing:  # one writer: a day's records share one counts row in the store
                    self.ops.put_poison([record_of(m, now=now) for m in batch])
                list(deleter.map(self.queue.poison_delete, batch))  # raises the first failure
                with lock:
                    state["moved"] += len(batch)
                    if progress is not None:
                        progress(state["moved"])

        with (
            ThreadPoolExecutor(self._workers) as loops,
            ThreadPoolExecutor(self._workers * 4) as deleter,
        ):
            running = [loops.submit(loop, deleter) for _ in range(self._workers)]
            try:
                for future in running:
                    future.result()
            finally:
                stop.set()
        moved = state["moved"]
        if moved:
            log.info("absorbed %d poison message(s) into the book", moved, extra={"count": moved})
        return moved

    # --- reading ---------------------------------------------------------------------------
    def page(
        self, where: PoisonFilter, *, limit: int = 50, cursor: str | None = None
    ) -> PoisonPage:
        """Matching records, newest first (unmasked: pass each through :func:`masked`)."""
        return self.ops.poison_page(where, limit=limit, cursor=cursor)

    def count(self, where: PoisonFilter) -> int:
        return self.ops.poison_count(where)

    def show(self, id_or_prefix: str) -> PoisonRecord:
        """The record by id or a unique prefix: NotFoundError, or InputError naming the
        candidates of an ambiguous prefix."""
        return self.ops.poison_get(id_or_prefix)

    def waiting(self) -> tuple[int, datetime | None]:
        """Records in the book, and when the oldest failed (None when empty): at most a second
        before it, so an age from it is never short.

        Found with counts alone (the poison timer asks every 5 minutes, and a store counts
        without reading records): back from now in growing steps until nothing is older, then
        halving the span between."""
        total = self.ops.poison_count(PoisonFilter())
        if not total:
            return 0, None
        now = self._clock()

        def older(moment: datetime) -> bool:
            return self.ops.poison_count(PoisonFilter(until=moment)) > 0

        if not older(now):
            return total, now  # failed "in the future": a clock ahead of ours
        hi, step = now, timedelta(hours=1)
        lo = now - step
        while older(lo) and step < MAX_LOOK_BACK:
            hi, step = lo, step * 8
            lo = now - step
        while hi - lo > timedelta(seconds=1):
            middle = lo + (hi - lo) / 2
            if older(middle):
                hi = middle
            else:
                lo = middle
        return total, lo

    def _chosen(
        self, where: PoisonFilter | None, ids: Sequence[str]
    ) -> tuple[int, Iterable[PoisonRecord]]:
        """How many records a replay or purge takes, and the records: ``ids`` (or unique
        prefixes), resolved before anything is done (one unknown raises NotFoundError; kept
        only where they match ``where`` when both are given); else every record matching
        ``where`` (``PoisonFilter()`` for all), read as they are needed. Neither is an
        InputError: nothing is taken by default."""
        if ids:
            found = {r.message_id: r for r in (self.ops.poison_get(i) for i in ids)}
            records = [r for r in found.values() if where is None or where.matches(r)]
            return len(records), records
        if where is None:
            raise InputError(
                "say which poison messages: their ids, or a filter (PoisonFilter() for all)",
                location="poison book",
            )
        return self.ops.poison_count(where), self.ops.poison_iter(where)

    # --- acting ----------------------------------------------------------------------------
    def replay(
        self,
        where: PoisonFilter | None = None,
        ids: Sequence[str] = (),
        *,
        who: str,
        via: str,
        progress: Progress | None = None,
    ) -> ReplayReport:
        """Put the chosen records' events back on the main queue (ids unchanged: the sync
        settles a replayed event it already wrote as ``duplicate``), in as few queue messages as
        the message size allows, then remove those records in bulk; one audit for the lot.

        The records are read as they are sent and removed only once every event is on the
        queue (a store's paging is never disturbed by its own deletes); a failure part way
        leaves them all in the book, and a second replay does no harm. Records without events
        (an undecodable message: its raw text is in the body) stay, named in ``skipped``."""
        total, records = self._chosen(where, ids)
        report = ReplayReport()
        _tick(progress, 0, total)
        pending: dict[str, PaymentEvent] = {}
        replayed: list[str] = []
        seen: set[str] = set()

        def flush() -> None:
            if pending:
                report.queue_messages += len(self.queue.send(list(pending.values())))
                report.events += len(pending)
                pending.clear()

        for record in records:
            if record.message_id in seen:
                continue
            seen.add(record.message_id)
            parsed = _events_of(record)
            if parsed:
                replayed.append(record.message_id)
                for event in parsed:
                    pending.setdefault(event.event_id, event)
            else:
                report.skipped.append(record.message_id)
            if len(pending) >= EVENTS_PER_SEND:
                flush()
            if len(seen) % TICK == 0:
                _tick(progress, len(seen), max(total, len(seen)))
        flush()
        try:
            for start in range(0, len(replayed), STEP):
                report.messages += self.ops.delete_poison(replayed[start : start + STEP])
        finally:
            if report.messages:
                self._audit("replay", who, via, where, ids, report.messages)
        _tick(progress, len(seen), max(total, len(seen)))
        if report.skipped:
            log.warning(
                "replay left %d poison message(s) holding no events",
                len(report.skipped),
                extra={"count": len(report.skipped)},
            )
        return report

    def purge(
        self,
        where: PoisonFilter | None = None,
        ids: Sequence[str] = (),
        *,
        who: str,
        via: str,
        progress: Progress | None = None,
    ) -> int:
        """Remove the chosen records for good (bulk deletes, :data:`STEP` at a time, once the
        ids are read); one audit; returns how many went."""
        total, records = self._chosen(where, ids)
        _tick(progress, 0, total)
        chosen = list(dict.fromkeys(r.message_id for r in records))
        total, gone = len(chosen), 0
        try:
            for start in range(0, total, STEP):
                gone += self.ops.delete_poison(chosen[start : start + STEP])
                _tick(progress, min(start + STEP, total), total)
        finally:
            if gone:
                self._audit("purge", who, via, where, ids, gone)
        return gone

    def _audit(
        self,
        action: str,
        who: str,
        via: str,
        where: PoisonFilter | None,
        ids: Sequence[str],
        count: int,
    ) -> None:
        self.ops.record_audit(
            AuditRecord(
                at=self._clock(),
                who=who,
                action=action,
                what=describe(where, ids),
                count=count,
                via=via,
            )
        )


def describe(where: PoisonFilter | None, ids: Sequence[str]) -> str:
    """What was chosen, in words for the audit trail (a long list of ids is cut)."""
    if ids:
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        text = f"ids: {shown}"
        return text if where is None or where.empty else f"{text} where {where.describe()}"
    return where.describe() if where is not None else "nothing"


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _events_of(record: PoisonRecord) -> list[PaymentEvent]:
    """The record's events, or none when any of them does not parse (kept whole for a human)."""
    try:
        return [PaymentEvent.from_json(e) for e in record.events()]
    except (InputError, KeyError, TypeError, ValueError, json.JSONDecodeError):
        return []
