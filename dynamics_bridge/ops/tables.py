"""Operations records in Azure Table Storage (Azurite locally): azure-data-tables.

Tables (``<prefix>`` from settings, created on first use):

- ``<prefix>runs``: PartitionKey = the day, inverted (newer days first); RowKey = the start time,
  inverted, then the run id: one ascending range query reads runs newest first.
- ``<prefix>rollup``: one DayTotals per *closed* day (PartitionKey ``d``, RowKey ``yyyymmdd``),
  made on first ask and dropped again if a late run for that day is recorded; today's totals
  are always summed fresh.
- ``<prefix>poison``: PartitionKey = the day the message failed, inverted; RowKey = its time,
  inverted, then the message id. Every filter of the console is a comparison the service
  evaluates (source, time, the reason words the sync writes, member numbers, event ids, the
  file's name, a message id prefix: see :mod:`tablekeys`). Each day partition also holds one
  ``~counts`` row: records per (reason word, source, hour), written in the same transaction as
  the records (guarded by its ETag), so counts never drift from the records.
- ``<prefix>poisondays``: a copy of each day's counts row in one small partition, where counts
  are read from (a count reads one row a day, never the records); newer copies win by a
  sequence number, and housekeeping (:meth:`TableOpsStore.expire`) copies them all again.
- ``<prefix>poisonids``: message id → where its record is, so a record is found by its id or a
  unique prefix of it with one range query. Partitioned by the id's first two characters
  (:func:`tablekeys.id_partition`), so no partition holds the whole book.
- ``<prefix>audit``: the audit trail, by day like the runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time as time_module
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from dynamics_bridge._azure import default_credential
from dynamics_bridge.errors import (
    BridgeError,
    ConfigError,
    InputError,
    NotFoundError,
    PermanentError,
    ThrottledError,
    TransientError,
)
from dynamics_bridge.ops.model import (
    AuditRecord,
    DayTotals,
    PoisonFilter,
    PoisonPage,
    PoisonRecord,
    RunRecord,
    roll_up,
)
from dynamics_bridge.ops.tablekeys import (
    COUNTS_ROW,
    bump,
    count_keys,
    count_matching,
    day_key,
    day_pieces,
    decode_cursor,
    encode_cursor,
    exact_on_service,
    id_partition,
    id_prefix_filter,
    join_text,
    key_day,
    key_time,
    odata_time,
    poison_filter,
    poison_search_props,
    quote,
    safe_key,
    split_text,
    time_key,
    unsafe_key,
    word_of,
)
from dynamics_bridge.settings import OpsSettings, QueueSettings

__all__ = ["TableOpsStore"]

log = logging.getLogger("dynamics_bridge.ops")

#: Operations in one entity group transaction (the service's limit).
BATCH = 100
#: A day's roll-up is kept once the day has been over this long (a run that started before
#: midnight may still be recorded a little after it).
CLOSED_AFTER = timedelta(hours=2)
#: Retries of a transaction whose counts row another writer changed meanwhile.
ATTEMPTS = 12
#: Where records were last seen, kept for deletes by id (bounded).
KNOWN_LIMIT = 250_000

T = TypeVar("T")
R = TypeVar("R")
#: a record row as last seen: its count keys and its ETag (None: not known)
Seen = tuple[tuple[str, ...], str | None]
Located = tuple[str, str, Seen | None]  # (PartitionKey, RowKey, as seen if known)


@contextlib.contextmanager
def _mapped(doing: str) -> Iterator[None]:
    """The SDK's errors as the project's: 429 throttled, 5xx/timeouts/connection transient."""
    try:
        yield
    except BridgeError:
        raise
    except ResourceNotFoundError as exc:
        raise NotFoundError(f"ops store: {doing}: not found", status=404) from exc
    except HttpResponseError as exc:
        status = exc.status_code
        error_code = getattr(exc, "error_code", None)
        code = str(error_code) if error_code else None
        text = f"ops store: {doing}: {status} {code or exc.reason or ''}".rstrip()
        if status == 429:
            raise ThrottledError(text, status=status, code=code) from exc
        if status is None or status >= 500 or status == 408:
            raise TransientError(text, status=status, code=code) from exc
        raise PermanentError(text, status=status, code=code) from exc
    except AzureError as exc:  # connection refused, timeouts: no answer at all
        raise TransientError(f"ops store: {doing}: {type(exc).__name__}: {exc}") from exc


def _again(call: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """One entity call, made again when its answer was lost on the way (a dropped connection:
    the storage may or may not have done it). Only for calls whose repeat is safe or whose
    second answer the caller understands (409 after a create, 404 after a delete)."""
    for attempt in range(3):
        try:
            return call(*args, **kwargs)
        except (ServiceRequestError, ServiceResponseError):
            if attempt == 2:
                raise
            time_module.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _conflict(exc: TableTransactionError) -> str | None:
    """Why a transaction was refused, when another writer is the cause: ``changed`` (an ETag
    guard: 412), ``exists`` (a create: 409) or ``gone`` (a delete or update: 404)."""
    code = str(getattr(exc, "error_code", "") or "")
    if exc.status_code == 412 or code == "UpdateConditionNotSatisfied":
        return "changed"
    if exc.status_code == 409 or code == "EntityAlreadyExists":
        return "exists"
    if exc.status_code == 404 or code == "ResourceNotFound":
        return "gone"
    return None


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _poison_keys(record: PoisonRecord) -> tuple[str, str]:
    at = _utc(record.failed_at)
    return day_key(at.date()), f"{time_key(at)}_{safe_key(record.message_id)}"


def _poison_entity(record: PoisonRecord) -> dict[str, Any]:
    pk, rk = _poison_keys(record)
    entity: dict[str, Any] = {
        "PartitionKey": pk,
        "RowKey": rk,
        "mid": record.message_id,
        "failed_at": _utc(record.failed_at),
        "source": record.source,
        "src": record.source.lower(),
        "file": record.file,
    }
    entity.update(split_text("reason", record.reason))
    entity.update(split_text("event_ids", json.dumps(list(record.event_ids))))
    entity.update(split_text("member_refs", json.dumps(list(record.member_refs))))
    entity.update(split_text("body", record.body))
    entity.update(poison_search_props(record))
    return entity


def _poison_record(entity: dict[str, Any]) -> PoisonRecord:
    return PoisonRecord(
        message_id=str(entity["mid"]),
        failed_at=key_time(str(entity["RowKey"])),
        reason=join_text(entity, "reason"),
        source=str(entity.get("source") or ""),
        event_ids=tuple(json.loads(join_text(entity, "event_ids") or "[]")),
        member_refs=tuple(json.loads(join_text(entity, "member_refs") or "[]")),
        file=str(entity.get("file") or ""),
        body=join_text(entity, "body"),
    )


def _counts_of(entity: dict[str, Any] | None) -> Counter[str]:
    return Counter(json.loads(join_text(entity, "counts") or "{}")) if entity else Counter()


@dataclass(frozen=True)
class _Op:
    """One record operation of a day's transaction, and what it does to the day's counters."""

    op: str  # "create" | "upsert" (replace) | "delete"
    entity: dict[str, Any]
    add: tuple[str, ...]
    remove: tuple[str, ...]
    #: a delete of a row as it was seen: refused (412) if it changed since, so the counts it
    #: takes away are the row's own
    etag: str | None = None

    @property
    def row_key(self) -> str:
        return str(self.entity["RowKey"])

    def operation(self) -> tuple[Any, ...]:
        if self.op == "upsert":
            return ("upsert", self.entity, {"mode": UpdateMode.REPLACE})
        if self.op == "delete":
            keys = {"PartitionKey": self.entity["PartitionKey"], "RowKey": self.row_key}
            if self.etag is None:
                return ("delete", keys)
            guard = {"etag": self.etag, "match_condition": MatchConditions.IfNotModified}
            return ("delete", keys, guard)
        return ("create", self.entity)

    def against(self, there: Seen | None) -> _Op | None:
        """The same intent given what is there now (``there``: the row as read, or None)."""
        if self.op == "delete":
            return None if there is None else _Op("delete", self.entity, (), there[0], there[1])
        if there is None:
            return _Op("create", self.entity, self.add, ())
        return _Op("upsert", self.entity, self.add, there[0])


def _id_chunks(items: Iterable[T], key: Callable[[T], str]) -> list[Sequence[T]]:
    """``items`` in transactions of the id index: grouped by partition (a transaction stays in
    one), in key order, at most :data:`BATCH` each."""
    groups: dict[str, list[T]] = {}
    for item in sorted(items, key=key):
        groups.setdefault(id_partition(key(item)), []).append(item)
    return [chunk for group in groups.values() for chunk in _chunks(group, BATCH)]


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class TableOpsStore:
    """The :class:`~dynamics_bridge.ops.port.OpsStore` in Table Storage. Thread-safe as the SDK
    clients are; several processes may write at once (the counts rows are guarded by ETag)."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        prefix: str = "bridge",
        clock: Callable[[], datetime] | None = None,
        workers: int = 4,
    ) -> None:
        self._service = service
        self._workers = workers
        self._prefix = prefix
        self._clock = clock or (lambda: datetime.now(UTC))
        self._ready: dict[str, TableClient] = {}
        self._known: dict[str, Located] = {}
        #: each day's counts as this store last wrote them, with their ETag (None: no row yet)
        self._day_counts: dict[str, tuple[Counter[str], str | None, int]] = {}
        #: the counts mirror rows as this store last wrote them: day -> (seq, ETag)
        self._mirrored: dict[str, tuple[int, str]] = {}
        #: the id-index rows of the last delete, dropping in the background
        self._dropping: Future[None] | None = None
        self._drop_pool: ThreadPoolExecutor | None = None

    @property
    def service(self) -> TableServiceClient:
        """The storage account's table service (other tables of ours share its connection)."""
        return self._service

    # --- construction ------------------------------------------------------------------
    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, prefix: str = "bridge", **kwargs: Any
    ) -> TableOpsStore:
        text = connection_string
        if "QueueEndpoint=" in text and "TableEndpoint=" not in text:
            raise ConfigError(
                "the ops store's connection string names a QueueEndpoint but no TableEndpoint: "
                "add TableEndpoint=... (Azurite: its table port), or set "
                "BRIDGE_OPS__CONNECTION_STRING"
            )
        return cls(TableServiceClient.from_connection_string(text), prefix=prefix, **kwargs)

    @classmethod
    def from_account_url(
        cls, account_url: str, *, prefix: str = "bridge", credential: Any = None, **kwargs: Any
    ) -> TableOpsStore:
        """Connect by identity (in Azure: the app's managed identity; no key in any setting)."""
        if credential is None:
            credential = default_credential("BRIDGE_OPS__ACCOUNT_URL")
        return cls(TableServiceClient(account_url, credential=credential), prefix=prefix, **kwargs)

    @classmethod
    def from_settings(cls, ops: OpsSettings, queue: QueueSettings) -> TableOpsStore:
        """The ops settings' connection, else the queue's (same storage account)."""
        secret = ops.connection_string or queue.connection_string
        if secret is not None and not ops.account_url:
            return cls.from_connection_string(secret.get_secret_value(), prefix=ops.table_prefix)
        url = ops.account_url
        if url is None and queue.account_url:
            url = queue.account_url.replace(".queue.", ".table.")
        if url is None:
            raise ConfigError(
                "BRIDGE_OPS__BACKEND=tables needs BRIDGE_OPS__CONNECTION_STRING or "
                "BRIDGE_OPS__ACCOUNT_URL (or the queue's connection string or account URL)"
            )
        return cls.from_account_url(url, prefix=ops.table_prefix)

    def _table(self, what: str) -> TableClient:
        client = self._ready.get(what)
        if client is None:
            name = f"{self._prefix}{what}"
            with _mapped(f"create table {name}"), contextlib.suppress(ResourceExistsError):
                self._service.create_table(name)
            client = self._ready[what] = self._service.get_table_client(name)
        return client

    def _query(
        self,
        what: str,
        odata: str,
        *,
        select: list[str] | None = None,
        per_page: int | None = None,
        first: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        table = self._table(what)
        with _mapped(f"query {table.table_name}"):
            if first is None:
                yield from table.query_entities(odata, select=select, results_per_page=per_page)
                return
            # a small first page for callers that often stop early, then big ones
            pages: Any = table.query_entities(odata, select=select, results_per_page=first)
            pages = pages.by_page()
            yield from next(pages, [])
            token = pages.continuation_token
            if token:
                rest = table.query_entities(odata, select=select, results_per_page=per_page)
                for page in rest.by_page(continuation_token=token):
                    yield from page

    def _get(self, what: str, pk: str, rk: str) -> dict[str, Any] | None:
        table = self._table(what)
        with _mapped(f"read {table.table_name}"):
            try:
                return _again(table.get_entity, pk, rk)
            except ResourceNotFoundError:
                return None

    def _etag(self, entity: Any) -> str | None:
        metadata = getattr(entity, "metadata", None) or {}
        return metadata.get("etag")

    # --- run history -------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None:
        self.record_runs([run])

    def record_runs(self, runs: Sequence[RunRecord]) -> None:
        """Several runs, a transaction per day (for backfills and benchmarks; not in the port)."""
        by_day: dict[str, list[dict[str, Any]]] = {}
        late: set[date] = set()
        today = _utc(self._clock()).date()
        for run in runs:
            at = _utc(run.started_at)
            entity: dict[str, Any] = {
                "PartitionKey": day_key(at.date()),
                "RowKey": f"{time_key(at)}_{safe_key(run.run_id)}",
                "run_id": run.run_id,
                "kind": run.kind,
                "name": run.name,
                "started_at": at,
                "duration_ms": int(run.duration_ms),
                "ok": run.ok,
            }
            entity.update(split_text("counts", json.dumps(run.counts, sort_keys=True)))
            entity.update(split_text("errors", json.dumps(list(run.errors))))
            entity.update(split_text("detail", json.dumps(run.detail, sort_keys=True)))
            by_day.setdefault(entity["PartitionKey"], []).append(entity)
            if at.date() < today:
                late.add(at.date())
        table = self._table("runs")
        with _mapped("record runs"):
            for entities in by_day.values():
                if len(entities) == 1:
                    _again(table.upsert_entity, entities[0], mode=UpdateMode.REPLACE)
                    continue
                latest = list({e["RowKey"]: e for e in entities}.values())
                for chunk in _chunks(latest, BATCH):
                    ops = [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in chunk]
                    try:
                        table.submit_transaction(ops)
                    except (ServiceRequestError, ServiceResponseError):
                        table.submit_transaction(ops)  # no answer: once more (upserts repeat)
        rollup = self._table("rollup")
        for day in late:  # a late run: its day's roll-up, if one was kept, is stale
            with _mapped("drop a stale roll-up"), contextlib.suppress(ResourceNotFoundError):
                _again(rollup.delete_entity, "d", day.strftime("%Y%m%d"))

    def runs(
        self, since: datetime, until: datetime | None = None, *, kind: str | None = None
    ) -> Iterator[RunRecord]:
        parts = [
            f"PartitionKey le {quote(day_key(_utc(since).date()))}",
            f"started_at ge {odata_time(since)}",
        ]
        if until is not None:
            parts += [
                f"PartitionKey ge {quote(day_key(_utc(until).date()))}",
                f"started_at lt {odata_time(until)}",
            ]
        if kind is not None:
            parts.append(f"kind eq {quote(kind)}")
        for entity in self._query("runs", " and ".join(parts), per_page=1000, first=20):
            yield RunRecord(
                run_id=str(entity["run_id"]),
                kind=str(entity["kind"]),
                name=str(entity["name"]),
                started_at=key_time(str(entity["RowKey"])),
                duration_ms=int(entity.get("duration_ms") or 0),
                counts=json.loads(join_text(entity, "counts") or "{}"),
                errors=tuple(json.loads(join_text(entity, "errors") or "[]")),
                detail=json.loads(join_text(entity, "detail") or "{}"),
            )

    def _closed(self, day: date) -> bool:
        end = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        return end + CLOSED_AFTER <= _utc(self._clock())

    def _sum_day(self, day: date) -> DayTotals:
        select = ["RowKey", "kind", "name", "ok", "counts", "counts_n"]
        odata = f"PartitionKey eq {quote(day_key(day))}"
        runs = []
        for entity in self._query("runs", odata, select=select, per_page=1000):
            if (entity.get("counts_n") or 1) > 1:  # counts over 32K characters: read it whole
                entity = self._get("runs", day_key(day), str(entity["RowKey"])) or entity
            runs.append(
                RunRecord(
                    run_id="",
                    kind=str(entity["kind"]),
                    name=str(entity["name"]),
                    started_at=key_time(str(entity["RowKey"])),
                    duration_ms=0,
                    counts=json.loads(join_text(entity, "counts") or "{}"),
                    errors=() if entity.get("ok", True) else ("failed",),
                )
            )
        return roll_up(day, runs)

    def day_totals(self, days: Sequence[date]) -> list[DayTotals]:
        if not days:
            return []
        lo, hi = min(days).strftime("%Y%m%d"), max(days).strftime("%Y%m%d")
        odata = f"PartitionKey eq 'd' and RowKey ge {quote(lo)} and RowKey le {quote(hi)}"
        kept: dict[date, DayTotals] = {}
        for entity in self._query("rollup", odata, per_page=1000):
            totals = DayTotals.from_json(json.loads(join_text(entity, "totals")))
            if self._closed(totals.day):
                kept[totals.day] = totals
        rollup = self._table("rollup")
        for day in dict.fromkeys(days):
            if day in kept:
                continue
            kept[day] = totals = self._sum_day(day)
            if self._closed(day):
                row = {"PartitionKey": "d", "RowKey": day.strftime("%Y%m%d")}
                row.update(split_text("totals", json.dumps(totals.to_json(), sort_keys=True)))
                with _mapped("keep a roll-up"):
                    _again(rollup.upsert_entity, row, mode=UpdateMode.REPLACE)
        return [kept[day] for day in days]

    # --- poison book: writing ----------------------------------------------------------
    def _remember(self, pk: str, rk: str, record: PoisonRecord, etag: str | None = None) -> None:
        if len(self._known) >= KNOWN_LIMIT:
            self._known.clear()
        self._known[record.message_id] = (pk, rk, (tuple(count_keys(record)), etag))

    def _each(self, work: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``work`` over ``items``, several at once (transactions in different partitions, or
        in the id index, do not wait for each other); the first failure is raised."""
        if len(items) <= 1 or self._workers <= 1:
            return [work(item) for item in items]
        with ThreadPoolExecutor(min(self._workers, len(items))) as pool:
            return list(pool.map(work, items))

    def _claim_ids(self, records: Sequence[PoisonRecord]) -> dict[str, tuple[str, str]]:
        """Point each id's index row at its new place (before the record is written, so the
        index always covers every record); returns the old places of ids already there."""
        chunks = _id_chunks(records, lambda r: safe_key(r.message_id))
        before: dict[str, tuple[str, str]] = {}
        for found in self._each(self._claim_chunk, chunks):
            before.update(found)
        return before

    def _claim_chunk(self, chunk: Sequence[PoisonRecord]) -> dict[str, tuple[str, str]]:
        ids = self._table("poisonids")
        before: dict[str, tuple[str, str]] = {}
        rows = [
            {"PartitionKey": id_partition(key), "RowKey": key, "p": pk, "r": rk}
            for r in chunk
            for key, (pk, rk) in [(safe_key(r.message_id), _poison_keys(r))]
        ]
        with _mapped("index poison ids"):
            try:
                ids.submit_transaction([("create", row) for row in rows])
                return before
            except (TableTransactionError, ServiceRequestError, ServiceResponseError):
                pass  # some are known already (or no answer came): one at a time
            for record, row in zip(chunk, rows, strict=True):
                try:
                    _again(ids.create_entity, row)
                except ResourceExistsError:
                    old = _again(ids.get_entity, row["PartitionKey"], row["RowKey"])
                    before[record.message_id] = (str(old["p"]), str(old["r"]))
                    if (old["p"], old["r"]) != (row["p"], row["r"]):
                        _again(ids.upsert_entity, row, mode=UpdateMode.REPLACE)
        return before

    def _existing_keys(self, pk: str, rks: Iterable[str]) -> dict[str, Seen]:
        """Those of these rows that exist, as they are now (one point read each)."""
        found: dict[str, Seen] = {}
        for rk in rks:
            entity = self._get("poison", pk, rk)
            if entity is not None:
                found[rk] = (tuple(count_keys(_poison_record(entity))), self._etag(entity))
        return found

    def _commit_day(self, pk: str, ops: list[_Op]) -> list[str]:
        """One transaction in one day partition: the record operations and the day's counts row,
        guarded by its ETag. When another writer got there first, what is there is read again
        (a delete of a row already gone is dropped, a create of a row already there becomes a
        replace) and the transaction retried. Returns the RowKeys written or deleted."""
        table = self._table("poison")
        for _ in range(ATTEMPTS):
            if not ops:
                return []
            known = self._day_counts.pop(pk, None)
            if known is None:
                counts_entity = self._get("poison", pk, COUNTS_ROW)
                seq = int(counts_entity.get("seq") or 0) if counts_entity else 0
                known = (_counts_of(counts_entity), self._etag(counts_entity), seq)
            counts = Counter(known[0])
            seq = known[2] + 1
            for op in ops:
                bump(counts, op.add, 1)
                bump(counts, op.remove, -1)
            row: dict[str, Any] = {"PartitionKey": pk, "RowKey": COUNTS_ROW, "seq": seq}
            row.update(split_text("counts", json.dumps(counts, sort_keys=True)))
            batch: list[Any] = [op.operation() for op in ops]
            if known[1] is None:
                batch.append(("create", row))
            else:
                guard = {
                    "mode": UpdateMode.REPLACE,
                    "etag": known[1],
                    "match_condition": MatchConditions.IfNotModified,
                }
                batch.append(("update", row, guard))
            why, failed = None, -1
            with _mapped("write poison records"):
                try:
                    done = table.submit_transaction(batch)
                except TableTransactionError as exc:
                    why, failed = _conflict(exc), int(exc.index or 0)
                    if why is None:
                        raise
                except (ServiceRequestError, ServiceResponseError):
                    why = "unknown"  # no answer: it may have been applied; look and retry
            if why is None:
                # the counts as written, and their new ETag: the next write here needs no read
                self._day_counts[pk] = (counts, done[-1].get("etag") if done else None, seq)
                self._mirror(pk, counts, seq)
                return [op.row_key for op in ops]
            if why == "changed" and failed == len(ops):  # the counts row: read it again
                continue
            self._day_counts.pop(pk, None)
            self._mirrored.pop(pk, None)
            there = self._existing_keys(pk, [op.row_key for op in ops])
            ops = [
                fixed
                for op in ops
                for fixed in [op.against(there.get(op.row_key))]
                if fixed is not None
            ]
        raise TransientError(f"ops store: poison day {pk} kept changing under {ATTEMPTS} tries")

    def _mirror(self, pk: str, counts: Counter[str], seq: int) -> None:
        """Copy a day's counts to the small ``poisondays`` table counts are read from (one
        short query instead of a scan of the records' table). Newer copies win by ``seq``; a
        copy missed by a crash is put right by the day's next write, or by :meth:`expire`."""
        table = self._table("poisondays")
        row: dict[str, Any] = {"PartitionKey": "d", "RowKey": pk, "seq": seq}
        row.update(split_text("counts", json.dumps(counts, sort_keys=True)))
        mine = self._mirrored.pop(pk, None)
        for _ in range(ATTEMPTS):
            if mine is None:
                current = self._get("poisondays", "d", pk)
                if current is not None and int(current.get("seq") or 0) >= seq:
                    return  # another writer copied a newer state
                mine = (int(current.get("seq") or 0), str(self._etag(current))) if current else None
            with _mapped("copy poison counts"):
                try:
                    if mine is None:
                        done = _again(table.create_entity, row)
                    else:
                        done = _again(
                            table.update_entity,
                            row,
                            mode=UpdateMode.REPLACE,
                            etag=mine[1],
                            match_condition=MatchConditions.IfNotModified,
                        )
                except (ResourceExistsError, ResourceModifiedError):
                    mine = None
                    continue
            self._mirrored[pk] = (seq, str(done.get("etag")))
            return
        raise TransientError(f"ops store: poison counts of day {pk} kept changing")

    def _resync_counts(self) -> None:
        """Every day's counts copied again from the records' partitions (housekeeping)."""
        for entity in self._query("poison", f"RowKey eq {quote(COUNTS_ROW)}", per_page=1000):
            pk = str(entity["PartitionKey"])
            self._mirrored.pop(pk, None)
            self._mirror(pk, _counts_of(entity), int(entity.get("seq") or 0))

    def put_poison(self, records: Sequence[PoisonRecord]) -> None:
        latest = list({r.message_id: r for r in records}.values())
        if not latest:
            return
        self._settle_drops()
        before = self._claim_ids(latest)
        by_day: dict[str, list[PoisonRecord]] = {}
        for record in latest:
            by_day.setdefault(_poison_keys(record)[0], []).append(record)
        moved = [
            row
            for rows in self._each(lambda day: self._put_day(*day, before), list(by_day.items()))
            for row in rows
        ]
        if moved:  # the same message written again with another time: its old row goes
            self._delete_rows(moved)

    def _put_day(
        self, pk: str, group: list[PoisonRecord], before: dict[str, tuple[str, str]]
    ) -> list[Located]:
        """One day's records written; returns the old rows of those that moved here."""
        in_place: list[str] = []
        moved: list[Located] = []
        for record in group:
            old = before.get(record.message_id)
            if old is not None and old == _poison_keys(record):
                in_place.append(old[1])
            elif old is not None:
                moved.append((old[0], old[1], None))
        old_keys = self._existing_keys(pk, in_place) if in_place else {}
        for chunk in _chunks(group, BATCH - 1):
            ops = []
            for record in chunk:
                entity = _poison_entity(record)
                keys = tuple(count_keys(record))
                if entity["RowKey"] in old_keys:
                    ops.append(_Op("upsert", entity, keys, old_keys[entity["RowKey"]][0]))
                else:
                    ops.append(_Op("create", entity, keys, ()))
            self._commit_day(pk, ops)
            for record in chunk:
                self._remember(pk, _poison_keys(record)[1], record)
        return moved

    def _delete_rows(self, rows: Sequence[Located]) -> list[tuple[str, str]]:
        """Delete these rows (and their counts); returns the (pk, rk) that were there."""
        by_day: dict[str, list[Located]] = {}
        for row in rows:
            by_day.setdefault(row[0], []).append(row)
        return [
            row
            for gone in self._each(lambda day: self._delete_day(*day), list(by_day.items()))
            for row in gone
        ]

    def _delete_day(self, pk: str, group: list[Located]) -> list[tuple[str, str]]:
        unknown = [rk for _pk, rk, seen in group if seen is None]
        found = self._existing_keys(pk, unknown) if unknown else {}
        ops = [
            _Op("delete", {"PartitionKey": pk, "RowKey": rk}, (), now[0], now[1])
            for _pk, rk, seen in dict.fromkeys(group)
            for now in [seen or found.get(rk)]
            if now is not None
        ]
        gone: list[tuple[str, str]] = []
        for chunk in _chunks(ops, BATCH - 1):
            gone += [(pk, rk) for rk in self._commit_day(pk, list(chunk))]
        return gone

    def delete_poison(self, message_ids: Sequence[str]) -> int:
        wanted = list(dict.fromkeys(m for m in message_ids if m))
        rows: list[Located] = []
        for mid in wanted:
            if mid in self._known:
                rows.append(self._known[mid])
                continue
            index = self._index_row(mid)
            if index is not None:
                rows.append((str(index["p"]), str(index["r"]), None))
        gone = set(self._delete_rows(rows))
        # a row seen here before but moved since by another writer: look it up by id once more
        missed = [m for m in wanted if m in self._known and self._known[m][:2] not in gone]
        again: list[Located] = []
        for mid in missed:
            index = self._index_row(mid)
            if index is not None and (str(index["p"]), str(index["r"])) != self._known[mid][:2]:
                again.append((str(index["p"]), str(index["r"]), None))
        gone |= set(self._delete_rows(again))
        for mid in wanted:
            self._known.pop(mid, None)
        # Their index rows go while the caller goes on (a replay's next step deletes its records
        # meanwhile); until then a row points at nothing, which every look-up tolerates, and
        # this store waits for them before it reads or claims an id again.
        self._settle_drops()
        self._dropping = self._dropper().submit(self._drop_ids, wanted)
        return len(gone)

    def _dropper(self) -> ThreadPoolExecutor:
        if self._drop_pool is None:
            self._drop_pool = ThreadPoolExecutor(1, thread_name_prefix="poison-ids")
        return self._drop_pool

    def _settle_drops(self) -> None:
        """Wait for the id-index rows the last delete left to drop. One that fails leaves rows
        pointing at nothing (look-ups check the record), so it is logged, not raised."""
        pending, self._dropping = self._dropping, None
        if pending is None:
            return
        try:
            pending.result()
        except BridgeError as exc:
            log.warning("poison id index: rows of deleted records left behind: %s", exc)

    def _index_row(self, message_id: str) -> dict[str, Any] | None:
        key = safe_key(message_id)
        return self._get("poisonids", id_partition(key), key)

    def _drop_ids(self, message_ids: Sequence[str]) -> None:
        keys = [safe_key(m) for m in message_ids]
        self._each(self._drop_id_chunk, _id_chunks(keys, lambda k: k))

    def _drop_id_chunk(self, chunk: Sequence[str]) -> None:
        ids = self._table("poisonids")
        with _mapped("drop poison ids"):
            try:
                ids.submit_transaction(
                    [("delete", {"PartitionKey": id_partition(k), "RowKey": k}) for k in chunk]
                )
                return
            except (TableTransactionError, ServiceRequestError, ServiceResponseError):
                pass  # some were not there (or no answer came): one at a time
            for key in chunk:
                with contextlib.suppress(ResourceNotFoundError):
                    _again(ids.delete_entity, id_partition(key), key)

    # --- poison book: reading ----------------------------------------------------------
    def _matching(
        self, where: PoisonFilter, after: tuple[str, str] | None, per_page: int
    ) -> Iterator[tuple[str, str, PoisonRecord]]:
        exact = exact_on_service(where)
        for entity in self._query("poison", poison_filter(where, after), per_page=per_page):
            pk, rk = str(entity["PartitionKey"]), str(entity["RowKey"])
            if rk == COUNTS_ROW:
                continue
            record = _poison_record(entity)
            if exact or where.matches(record):
                self._remember(pk, rk, record, self._etag(entity))
                yield pk, rk, record

    def poison_page(
        self, where: PoisonFilter, *, limit: int = 50, cursor: str | None = None
    ) -> PoisonPage:
        if limit < 1:
            raise InputError(f"limit must be at least 1, not {limit}", location="poison page")
        after = decode_cursor(cursor) if cursor else None
        per_page = min(limit + 1, 1000) if exact_on_service(where) else 1000
        found: list[tuple[str, str, PoisonRecord]] = []
        for hit in self._matching(where, after, per_page):
            found.append(hit)
            if len(found) > limit:
                break
        more = len(found) > limit
        records = [r for _pk, _rk, r in found[:limit]]
        last = found[limit - 1] if more else None
        return PoisonPage(records, encode_cursor(last[0], last[1]) if last else None)

    def poison_iter(self, where: PoisonFilter) -> Iterator[PoisonRecord]:
        for _pk, _rk, record in self._matching(where, None, 1000):
            yield record

    def poison_count(self, where: PoisonFilter) -> int:
        if not exact_on_service(where):
            return sum(1 for _ in self._matching(where, None, 1000))
        parts = ["PartitionKey eq 'd'"]
        if where.until is not None:
            parts.append(f"RowKey ge {quote(day_key(_utc(where.until).date()))}")
        if where.since is not None:
            parts.append(f"RowKey le {quote(day_key(_utc(where.since).date()))}")
        total = 0
        for entity in self._query("poisondays", " and ".join(parts), per_page=1000):
            pk = str(entity["RowKey"])
            hours, pieces = day_pieces(key_day(pk), where.since, where.until)
            total += count_matching(_counts_of(entity), where, hours)
            for start, end in pieces:  # part of an hour: count its records
                piece = PoisonFilter(source=where.source, since=start, until=end)
                odata = poison_filter(piece) + f" and PartitionKey eq {quote(pk)}"
                word = word_of(where)
                if word:
                    odata += f" and w_{word} eq true"
                rows = self._query("poison", odata, select=["RowKey"], per_page=1000)
                total += sum(1 for row in rows if row["RowKey"] != COUNTS_ROW)
        return total

    def poison_get(self, id_or_prefix: str) -> PoisonRecord:
        key = id_or_prefix.strip()
        if not key:
            raise NotFoundError("no poison message (empty id)")
        self._settle_drops()
        index = self._index_row(key)
        if index is None:
            found: list[dict[str, Any]] = []
            for row in self._query("poisonids", id_prefix_filter(safe_key(key)), per_page=100):
                found.append(row)
                if len(found) > 100:
                    break
            if not found:
                raise NotFoundError(f"no poison message {key}")
            if len(found) > 1:
                names = sorted(unsafe_key(str(r["RowKey"])) for r in found)
                shown = ", ".join(names[:5]) + (" …" if len(names) > 5 else "")
                many = "over 100" if len(found) > 100 else str(len(found))
                raise InputError(
                    f"{many} poison messages start with {key!r}: {shown}",
                    location="message id",
                )
            index = found[0]
        entity = self._get("poison", str(index["p"]), str(index["r"]))
        if entity is None:  # indexed, but its record went (a delete that stopped half-way)
            raise NotFoundError(f"no poison message {key}")
        record = _poison_record(entity)
        self._remember(str(index["p"]), str(index["r"]), record, self._etag(entity))
        return record

    # --- audit trail -------------------------------------------------------------------
    def record_audit(self, entry: AuditRecord) -> None:
        at = _utc(entry.at)
        row: dict[str, Any] = {
            "PartitionKey": day_key(at.date()),
            "RowKey": f"{time_key(at)}_{uuid.uuid4().hex}",
            "at": at,
            "who": entry.who,
            "action": entry.action,
            "count": int(entry.count),
            "via": entry.via,
        }
        row.update(split_text("what", entry.what))
        table = self._table("audit")
        with _mapped("record an audit"), contextlib.suppress(ResourceExistsError):
            _again(table.create_entity, row)  # 409 after a lost answer: it was written

    def audits(self, since: datetime) -> list[AuditRecord]:
        odata = (
            f"PartitionKey le {quote(day_key(_utc(since).date()))} and at ge {odata_time(since)}"
        )
        return [
            AuditRecord(
                at=key_time(str(e["RowKey"])),
                who=str(e["who"]),
                action=str(e["action"]),
                what=join_text(e, "what"),
                count=int(e["count"]),
                via=str(e["via"]),
            )
            for e in self._query("audit", odata, per_page=1000)
        ]

    # --- retention ---------------------------------------------------------------------
    def _drop_where(self, what: str, odata: str) -> int:
        keys: dict[str, list[str]] = {}
        for e in self._query(what, odata, select=["PartitionKey", "RowKey"], per_page=1000):
            keys.setdefault(str(e["PartitionKey"]), []).append(str(e["RowKey"]))
        table = self._table(what)
        gone = 0
        for pk, rks in keys.items():
            for chunk in _chunks(rks, BATCH):
                ops: list[Any] = [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in chunk]
                with _mapped(f"expire {table.table_name}"):
                    try:
                        table.submit_transaction(ops)
                        gone += len(chunk)
                        continue
                    except (TableTransactionError, ServiceRequestError, ServiceResponseError):
                        pass  # another process expired some (or no answer): one at a time
                    for rk in chunk:
                        with contextlib.suppress(ResourceNotFoundError):
                            _again(table.delete_entity, pk, rk)
                            gone += 1
        return gone

    def expire(self, before: datetime) -> int:
        """Whole days go in batches; the day ``before`` falls in loses its rows before it."""
        at = _utc(before)
        oldest_kept = quote(day_key(at.date()))
        self._resync_counts()
        gone = self._drop_where(
            "runs", f"PartitionKey ge {oldest_kept} and started_at lt {odata_time(at)}"
        )
        gone += self._drop_where(
            "audit", f"PartitionKey ge {oldest_kept} and at lt {odata_time(at)}"
        )
        self._drop_where(
            "rollup", f"PartitionKey eq 'd' and RowKey le {quote(at.strftime('%Y%m%d'))}"
        )
        return gone
