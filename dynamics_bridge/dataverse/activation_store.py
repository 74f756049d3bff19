"""The activation jobs' register in Dataverse, in as few requests as it can: the adapter of the
:class:`~dynamics_bridge.activation.port.ActivationStore` port.

- **Trigger outbox**: the payment row's outbox columns (``triggers.yaml`` ``outbox``). The
  pipeline writes the payload with state ``pending`` (or ``skipped`` when its event came too
  late) in the payment's own change set; a sender claims rows by an ETag-guarded PATCH to
  ``sending`` (only one sender wins a row), sends, and settles them with the payload's new
  trigger states and the row state they add up to (``sent``, ``pending``, ``unconfirmed`` ...).
  A claim older than the lease was lost in a crash: its outcome is unknown, so the sweep takes
  it as ``unconfirmed`` (never sent again blindly).
- **Delta link** of the segments job, and the **time of its last full run**: two rows of the
  state table (``dataverse.yaml`` ``state``), named ``segments-delta-link`` and
  ``segments-last-full-run``.
- **Member columns** the activation side owns (state pushed to APSIS, segments, score, reminders
  sent): PATCHed by alternate key in ``$batch`` requests of up to 1,000.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dynamics_bridge.activation.config import Outbox
from dynamics_bridge.activation.port import MemberDelta, MemberUpdate, OutboxRow, WriteResult
from dynamics_bridge.activation.related import RelatedRead
from dynamics_bridge.activation.score import PaymentCounts
from dynamics_bridge.dataverse.batch import BatchRequest, OperationResult
from dynamics_bridge.dataverse.client import MAX_BATCH_OPERATIONS, DataverseClient, Delta
from dynamics_bridge.dataverse.odata import key_path, odata_in
from dynamics_bridge.errors import ConfigError, NotFoundError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import StateTable
from dynamics_bridge.model import EventKind

__all__ = ["DataverseActivationStore"]

log = logging.getLogger("dynamics_bridge.activation")

ON_TIME = {EventKind.PAYMENT_SUCCEEDED.value}
LATE = {EventKind.PAYMENT_FAILED.value, EventKind.INVOICE_OVERDUE.value}
#: A related table is read whole when its ids would take more than this many ``In`` queries.
WHOLE_TABLE_AFTER = 3
#: Date ranges or-ed in one member query (a yearly reminder reads one range per anniversary).
WINDOWS_PER_QUERY = 20


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DataverseActivationStore:
    """The outbox columns of payment rows, member rows and the state table, over the Web API."""

    def __init__(self, client: DataverseClient, mapping: MappingFile, outbox: Outbox) -> None:
        self.client = client
        self.mapping = mapping
        self.outbox = outbox
        states = mapping.choices[outbox.state_choices].options
        self.state_value = {word: option.value for word, option in states.items()}
        self.state_word = {option.value: word for word, option in states.items()}
        payment = mapping.payment
        kind = next(
            (
                (c, t.choice)
                for c, t in payment.values.items()
                if t.choice and t.choice.from_ == "kind"
            ),
            None,
        )
        self._kind_column = kind[0] if kind else None
        self._kind_words = (
            {o.value: word for word, o in mapping.choices[kind[1].set].options.items()}
            if kind
            else {}
        )
        self._absent: set[str] = set()  # optional related tables found missing (warned once)
        self._occurred_column = next(
            (c for c, t in payment.values.items() if t.datetime == "occurred_at"), None
        )

    # -- the trigger outbox ---------------------------------------------------------------------

    def pending_columns(self, payload: str, state: str = "pending") -> dict[str, Any]:
        """The payment-row columns that put an event's triggers in the outbox."""
        return {
            self.outbox.payload_column: payload,
            self.outbox.state_column: self.state_value[state],
        }

    def _outbox_row(self, row: Mapping[str, Any]) -> OutboxRow | None:
        payload = row.get(self.outbox.payload_column)
        if not payload:
            return None
        state = self.state_word.get(_int(row.get(self.outbox.state_column)), "")
        claimed = row.get(self.outbox.claimed_column)
        return OutboxRow(
            str(row.get(self.mapping.payment.key_column)),
            str(payload),
            state,
            row.get("@odata.etag"),
            str(claimed) if claimed else None,
        )

    def _select(self) -> list[str]:
        outbox = self.outbox
        return [
            self.mapping.payment.key_column,
            outbox.payload_column,
            outbox.state_column,
            outbox.claimed_column,
        ]

    def outbox_rows(self, event_ids: Sequence[str]) -> list[OutboxRow]:
        payment = self.mapping.payment
        rows = self.client.rows.by_values(
            payment.entity_set, payment.key_column, event_ids, self._select()
        )
        return [r for row in rows.values() if (r := self._outbox_row(row)) is not None]

    def _rows_where(self, query: str) -> list[OutboxRow]:
        payment = self.mapping.payment
        found = []
        for row in self.client.rows.query(payment.entity_set, select=self._select(), filter=query):
            if (r := self._outbox_row(row)) is not None:
                found.append(r)
        return found

    def stalled_outbox(self, now: datetime) -> list[OutboxRow]:
        """Rows still ``pending`` (held, their sender crashed or APSIS was down), ``sending``
        rows whose claim is older than the lease (a sender crashed: outcome unknown) and
        ``unconfirmed`` rows whose send is older than the lease (APSIS has had time to store
        what it took, so a read-back can tell)."""
        outbox = self.outbox
        cutoff = stamp(now - timedelta(minutes=outbox.lease_minutes))
        state = outbox.state_column
        found = self._rows_where(f"{state} eq {self.state_value['pending']}")
        for word in ("sending", "unconfirmed"):
            found += self._rows_where(
                f"{state} eq {self.state_value[word]} and {outbox.claimed_column} lt {cutoff}"
            )
        return found

    def unconfirmed(self) -> list[OutboxRow]:
        """Every ``unconfirmed`` row (the admin's list), whatever its age."""
        return self._rows_where(f"{self.outbox.state_column} eq {self.state_value['unconfirmed']}")

    def claim(self, rows: Iterable[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Claim rows: an ETag-guarded PATCH each, so of two senders only one wins. The caller
        chose the rows (pending ones with something due, stalled or unconfirmed ones)."""
        wanted = list(rows)
        body = {
            self.outbox.state_column: self.state_value["sending"],
            self.outbox.claimed_column: stamp(now),
        }
        payment = self.mapping.payment
        results = self.patch(
            payment.entity_set,
            [({payment.key_column: r.event_id}, body, r.etag or "*") for r in wanted],
        )
        return [r for r, result in zip(wanted, results, strict=True) if result.ok]

    def settle(self, states: Mapping[str, tuple[str, str | None]]) -> None:
        """Event id -> (new row state word, new payload or None to keep it). Written with
        ``*``: the caller holds the claim."""
        payment, outbox = self.mapping.payment, self.outbox
        updates = []
        for event_id, (word, payload) in states.items():
            body: dict[str, Any] = {outbox.state_column: self.state_value[word]}
            if payload is not None:
                body[outbox.payload_column] = payload
            updates.append(({payment.key_column: event_id}, body, "*"))
        self.patch(payment.entity_set, updates)

    def member_payloads(self, member_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Member id -> (event id, outbox payload) of each of its payment rows that has one
        (one query per ``keys_per_query`` members)."""
        payment = self.mapping.payment
        lookup = f"_{payment.member_lookup}_value"
        select = [payment.key_column, self.outbox.payload_column, lookup]
        found: dict[str, list[tuple[str, str]]] = defaultdict(list)
        ids = list(dict.fromkeys(member_ids))
        step = self.client.settings.keys_per_query
        for start in range(0, len(ids), step):
            query = odata_in(lookup, ids[start : start + step])
            for row in self.client.rows.query(payment.entity_set, select=select, filter=query):
                if row.get(self.outbox.payload_column):
                    found[str(row.get(lookup))].append(
                        (str(row.get(payment.key_column)), str(row[self.outbox.payload_column]))
                    )
        return dict(found)

    def outbox_age(self, now: datetime) -> dict[str, Any]:
        """How many rows are ``pending`` and ``unconfirmed``, and how old the oldest of each is
        (seconds since the payment row was created): the health answer's view of the outbox."""
        payment, outbox = self.mapping.payment, self.outbox
        found: dict[str, Any] = {}
        for word in ("pending", "unconfirmed"):
            oldest: datetime | None = None
            count = 0
            for row in self.client.rows.query(
                payment.entity_set,
                select=[payment.key_column, "createdon"],
                filter=f"{outbox.state_column} eq {self.state_value[word]}",
            ):
                count += 1
                created = _moment(row.get("createdon"))
                if created is not None and (oldest is None or created < oldest):
                    oldest = created
            found[word] = {
                "count": count,
                "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None,
            }
        return found

    # -- members --------------------------------------------------------------------------------

    def members(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        member = self.mapping.member
        if not keys:
            return {}
        return self.client.rows.by_values(
            member.entity_set, member.key_column, keys, [*columns, member.id_column]
        )

    def member_changes(self, columns: Sequence[str], delta_link: str | None) -> MemberDelta:
        member = self.mapping.member
        delta: Delta = self.client.changes.since(
            member.entity_set, [*columns, member.id_column, member.key_column], delta_link
        )
        return MemberDelta(delta.changed, delta.delta_link, delta.resynced)

    def members_dated(
        self, column: str, windows: Sequence[tuple[date, date]], columns: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Members whose date ``column`` lies in one of the windows: up to
        :data:`WINDOWS_PER_QUERY` ranges or-ed in one ``$filter`` (a yearly reminder's 120
        ranges are 6 queries, each returning only the members whose day it is)."""
        member = self.mapping.member
        for start in range(0, len(windows), WINDOWS_PER_QUERY):
            ranges = [
                f"({column} ge {low.isoformat()} and {column} le {high.isoformat()})"
                for low, high in windows[start : start + WINDOWS_PER_QUERY]
            ]
            yield from self.client.rows.query(
                member.entity_set,
                select=[*columns, member.id_column, member.key_column],
                filter=ranges[0][1:-1] if len(ranges) == 1 else " or ".join(ranges),
            )

    def related_rows(self, reads: Sequence[RelatedRead]) -> dict[str, list[dict[str, Any]]]:
        """Each related table's rows for its ids: ``In`` queries of ``keys_per_query`` ids when
        they are few, else the whole table (its ``filter`` and a count's window applied) in
        pages of 5,000, which for a full run of 100,000 members costs a few requests where id
        lists would cost a thousand."""
        found: dict[str, list[dict[str, Any]]] = {}
        for read in reads:
            try:
                found[read.name] = self._related(read)
            except NotFoundError:
                if not read.table.optional:
                    raise
                if read.name not in self._absent:
                    self._absent.add(read.name)
                    log.warning(
                        "related table %s (%s) is not in the environment: its values stay empty",
                        read.name,
                        read.table.entity_set,
                        extra={"outcome": "warning", "table": read.table.table},
                    )
        return found

    def _related(self, read: RelatedRead) -> list[dict[str, Any]]:
        step = self.client.settings.keys_per_query
        entity_set, select = read.table.entity_set, list(read.select)
        if len(read.ids) > step * WHOLE_TABLE_AFTER:
            return list(self.client.rows.query(entity_set, select=select, filter=read.filter))
        rows: list[dict[str, Any]] = []
        for start in range(0, len(read.ids), step):
            query = odata_in(read.by, read.ids[start : start + step])
            if read.filter:
                query += f" and {read.filter}"
            rows.extend(self.client.rows.query(entity_set, select=select, filter=query))
        return rows

    def update_members(self, updates: Sequence[MemberUpdate]) -> list[WriteResult]:
        """``(member key, columns, ETag or "*")`` each; one result per update, in order."""
        member = self.mapping.member
        results = self.patch(
            member.entity_set, [({member.key_column: k}, body, etag) for k, body, etag in updates]
        )
        return [WriteResult(r.ok, r.error) for r in results]

    def payment_counts(
        self, member_ids: Sequence[str], since: datetime
    ) -> dict[str, PaymentCounts]:
        """Paid and failed-or-overdue payment rows per member id since ``since``."""
        if not self._kind_column or not member_ids:
            return {}
        payment = self.mapping.payment
        lookup = f"_{payment.member_lookup}_value"
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        ids = list(dict.fromkeys(member_ids))
        step = self.client.settings.keys_per_query
        for start in range(0, len(ids), step):
            query = odata_in(lookup, ids[start : start + step])
            if self._occurred_column:
                query += f" and {self._occurred_column} ge {stamp(since)}"
            for row in self.client.rows.query(
                payment.entity_set, select=[lookup, self._kind_column], filter=query
            ):
                word = self._kind_words.get(_int(row.get(self._kind_column)), "")
                bucket = "on_time" if word in ON_TIME else "late" if word in LATE else None
                if bucket:
                    counts[str(row.get(lookup))][bucket] += 1
        return {mid: PaymentCounts(c["on_time"], c["late"]) for mid, c in counts.items()}

    # -- the state table ------------------------------------------------------------------------

    def _state_table(self) -> StateTable:
        if self.mapping.state is None:
            raise ConfigError("dataverse.yaml: no 'state' table, where the delta link is kept")
        return self.mapping.state

    def get_state(self, name: str) -> str | None:
        state = self._state_table()
        row = self.client.rows.get(state.entity_set, {state.key_column: name}, [state.value_column])
        value = (row or {}).get(state.value_column)
        return str(value) if value else None

    def set_state(self, name: str, value: str | None) -> None:
        state = self._state_table()
        self.client.rows.upsert(
            state.entity_set, {state.key_column: name}, {state.value_column: value}
        )

    # -- writing ----------------------------------------------------------------------------------

    def patch(
        self, entity_set: str, updates: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], str]]
    ) -> list[OperationResult]:
        """PATCHes by key, each with its If-Match (never creating a row), in ``$batch``es."""
        results: list[OperationResult] = []
        for start in range(0, len(updates), MAX_BATCH_OPERATIONS):
            requests = [
                BatchRequest("PATCH", key_path(entity_set, key), {"If-Match": etag}, dict(body))
                for key, body, etag in updates[start : start + MAX_BATCH_OPERATIONS]
            ]
            results.extend(self.client.batch.execute(requests).operations)
        return results


def _moment(value: Any) -> datetime | None:
    """A Dataverse date-time as answered (``2026-11-28T12:00:00Z``), or None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _int(value: Any) -> int:
    """A choice value as read (-1 when there is none, which no option has)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
