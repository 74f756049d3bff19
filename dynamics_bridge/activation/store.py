"""Everything the activation side reads and writes in Dataverse, in as few requests as it can.

- **Trigger outbox**: the payment row's outbox columns (``triggers.yaml`` ``outbox``). The
  pipeline writes the payload with state ``pending`` in the payment's own change set; a sender
  claims rows by an ETag-guarded PATCH to ``sending`` (only one sender wins a row), sends, and
  settles them ``sent``, ``skipped`` or ``failed`` (or back to ``pending`` for a passing
  failure). A claim older than the lease was lost in a crash and may be taken again.
- **Delta link** of the segments job, and the **time of its last full run**: two rows of the
  state table (``dataverse.yaml`` ``state``), named ``segments-delta-link`` and
  ``segments-last-full-run``.
- **Member columns** the activation side owns (state pushed to APSIS, segments, score, reminders
  sent): PATCHed by alternate key in ``$batch`` requests of up to 1,000.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dynamics_bridge.activation.config import Outbox
from dynamics_bridge.activation.score import PaymentCounts
from dynamics_bridge.dataverse.batch import BatchRequest, OperationResult
from dynamics_bridge.dataverse.client import MAX_BATCH_OPERATIONS, DataverseClient, Delta
from dynamics_bridge.dataverse.odata import key_path, odata_in
from dynamics_bridge.errors import ConfigError
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.mapping.models import StateTable
from dynamics_bridge.model import EventKind

__all__ = ["ActivationStore", "OutboxRow"]

ON_TIME = {EventKind.PAYMENT_SUCCEEDED.value}
LATE = {EventKind.PAYMENT_FAILED.value, EventKind.INVOICE_OVERDUE.value}


@dataclass(frozen=True, slots=True)
class OutboxRow:
    event_id: str
    payload: str
    state: str
    etag: str | None


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ActivationStore:
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
        self._occurred_column = next(
            (c for c, t in payment.values.items() if t.datetime == "occurred_at"), None
        )

    # -- the trigger outbox ---------------------------------------------------------------------

    def pending_columns(self, payload: str) -> dict[str, Any]:
        """The payment-row columns that put an event's triggers in the outbox."""
        return {
            self.outbox.payload_column: payload,
            self.outbox.state_column: self.state_value["pending"],
        }

    def _outbox_row(self, row: Mapping[str, Any]) -> OutboxRow | None:
        payload = row.get(self.outbox.payload_column)
        if not payload:
            return None
        state = self.state_word.get(_int(row.get(self.outbox.state_column)), "")
        return OutboxRow(
            str(row.get(self.mapping.payment.key_column)),
            str(payload),
            state,
            row.get("@odata.etag"),
        )

    def outbox_rows(self, event_ids: Sequence[str]) -> list[OutboxRow]:
        payment = self.mapping.payment
        select = [self.outbox.payload_column, self.outbox.state_column]
        rows = self.client.rows_by_values(payment.entity_set, payment.key_column, event_ids, select)
        return [r for row in rows.values() if (r := self._outbox_row(row)) is not None]

    def stalled_outbox(self, now: datetime) -> list[OutboxRow]:
        """Rows still ``pending`` (their sender crashed or APSIS was down), and ``sending`` rows
        whose claim is older than the lease."""
        payment, outbox = self.mapping.payment, self.outbox
        select = [payment.key_column, outbox.payload_column, outbox.state_column]
        cutoff = stamp(now - timedelta(minutes=outbox.lease_minutes))
        filters = [
            f"{outbox.state_column} eq {self.state_value['pending']}",
            f"{outbox.state_column} eq {self.state_value['sending']} "
            f"and {outbox.claimed_column} lt {cutoff}",
        ]
        found = []
        for query in filters:
            for row in self.client.query(payment.entity_set, select=select, filter=query):
                if (r := self._outbox_row(row)) is not None:
                    found.append(r)
        return found

    def claim(
        self, rows: Iterable[OutboxRow], now: datetime, *, lease_expired: bool
    ) -> list[OutboxRow]:
        """Claim rows for sending: an ETag-guarded PATCH each, so of two senders only one wins.
        ``sending`` rows are taken only when ``lease_expired`` (the sweep has checked that)."""
        wanted = [
            r for r in rows if r.state == "pending" or (lease_expired and r.state == "sending")
        ]
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

    def settle(self, states: Mapping[str, str]) -> None:
        """Event id -> new outbox state word (``sent``, ``skipped``, ``failed``, ``pending``)."""
        payment = self.mapping.payment
        self.patch(
            payment.entity_set,
            [
                (
                    {payment.key_column: event_id},
                    {self.outbox.state_column: self.state_value[word]},
                    "*",
                )
                for event_id, word in states.items()
            ],
        )

    # -- members --------------------------------------------------------------------------------

    def members(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        member = self.mapping.member
        if not keys:
            return {}
        return self.client.rows_by_values(
            member.entity_set, member.key_column, keys, [*columns, member.id_column]
        )

    def member_changes(self, columns: Sequence[str], delta_link: str | None) -> Delta:
        member = self.mapping.member
        return self.client.changes(
            member.entity_set, [*columns, member.id_column, member.key_column], delta_link
        )

    def members_dated(
        self, column: str, low: date, high: date, columns: Sequence[str]
    ) -> Iterator[dict[str, Any]]:
        """Members whose date ``column`` lies in ``[low, high]``."""
        member = self.mapping.member
        return self.client.query(
            member.entity_set,
            select=[*columns, member.id_column, member.key_column],
            filter=f"{column} ge {low.isoformat()} and {column} le {high.isoformat()}",
        )

    def update_members(
        self, updates: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[OperationResult]:
        """``(member key, columns, ETag or "*")`` each; one result per update, in order."""
        member = self.mapping.member
        return self.patch(
            member.entity_set, [({member.key_column: k}, body, etag) for k, body, etag in updates]
        )

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
        step = self.client.keys_per_query
        for start in range(0, len(ids), step):
            query = odata_in(lookup, ids[start : start + step])
            if self._occurred_column:
                query += f" and {self._occurred_column} ge {stamp(since)}"
            for row in self.client.query(
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
        row = self.client.get(state.entity_set, {state.key_column: name}, [state.value_column])
        value = (row or {}).get(state.value_column)
        return str(value) if value else None

    def set_state(self, name: str, value: str | None) -> None:
        state = self._state_table()
        self.client.upsert(state.entity_set, {state.key_column: name}, {state.value_column: value})

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
            results.extend(self.client.execute_batch(requests).operations)
        return results


def _int(value: Any) -> int:
    """A choice value as read (-1 when there is none, which no option has)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
