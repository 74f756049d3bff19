"""Apply a batch of canonical events to Dataverse: the one place that combines the ports.

One read of the members a batch touches, one check for payment rows that already exist, member
changes computed in memory (no-op columns left out), and one change set per member: its payment
rows, created create-only under the event-id key, plus one ETag-guarded update of the member
(always: a change set that changes no member column writes its ordering guard back unchanged, so
concurrent workers on one member serialise on its ETag). A
replayed event fails its create as a duplicate and rolls its change set back, so nothing is
applied twice; an ETag conflict re-reads the member and recomputes. Every event gets an outcome.

A member's events fold in event order (time, then event id), however they arrive. Each payment
row keeps its event and the member's rule and guard columns right before it; an event older than
what its member has seen (a guard says so) makes the pipeline read that member's later payment
rows (one request for all such members of a batch), start from the next later row's snapshot and
fold the late event and the later rows' events again: the member gets the in-order state, the
later rows their new snapshots, all in the member's one change set. In-order events read nothing
more. An event that is older than its own guard is ``applied`` but marked ``replayed`` (it
would have been ``stale`` before); it still starts its own triggers, and the activation hook
decides what they become (too old: kept unsent; a first-payment trigger: exactly once per
member, see :mod:`dynamics_bridge.activation.triggers`). Rows written without the history
columns keep such an event ``stale``, as the reason says.

An event the mapping cannot turn into columns (a choice without the option it needs, a template
that does not render, any other error in planning) fails alone, permanently, with a reason that
names the column and transform; the other events of its batch, and of its member, go on.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from dynamics_bridge.errors import BridgeError, ConfigError, TransientError
from dynamics_bridge.logs import log_context
from dynamics_bridge.mapping import (
    MappingFile,
    MemberPlan,
    event_order,
    out_of_order,
    payment_row,
    plan_member_update,
    plan_replay,
    state_columns,
)
from dynamics_bridge.mapping.transforms import evaluate
from dynamics_bridge.model import Outcome, PaymentEvent

__all__ = [
    "EventOutcome",
    "MemberRow",
    "MemberStore",
    "OutcomeHooks",
    "PaymentHistory",
    "Pipeline",
    "UnitResult",
    "WriteUnit",
    "summarize",
]

log = logging.getLogger("dynamics_bridge.pipeline")

MAX_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class MemberRow:
    """A member as read: its key value, row id, ETag and the columns the mapping needs."""

    key: str
    row_id: str
    etag: str | None
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WriteUnit:
    """One atomic change set: the member's new payment rows and at most one member update."""

    member: MemberRow
    payments: list[tuple[str, dict[str, Any]]]  # (event id, row body)
    member_changes: dict[str, Any]
    #: (event id, columns) of existing payment rows to update: a replay's new ``before``
    payment_updates: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PaymentHistory:
    """A member's stored payment row as a replay needs it: its event (None: a row written
    before the event column existed) and the member's columns right before it."""

    event_id: str
    event: PaymentEvent | None
    before: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class UnitResult:
    """How a change set ended. ``event_id`` names the payment row that failed, when one did."""

    status: Literal["ok", "duplicate", "conflict", "member_missing", "failed", "transient"]
    event_id: str | None = None
    reason: str | None = None


class MemberStore(Protocol):
    """What the pipeline needs from Dataverse, in its own words (adapter: dataverse/store.py)."""

    def read_members(
        self, column: str, values: Sequence[str], columns: Sequence[str]
    ) -> dict[str, MemberRow]:
        """Members whose ``column`` is one of ``values``, keyed by that value."""
        ...

    def members_of_payments(self, provider_refs: Sequence[str]) -> dict[str, str]:
        """Provider reference of an earlier payment → the member key it was booked on."""
        ...

    def existing_payments(self, event_ids: Sequence[str]) -> set[str]: ...

    def payment_history(
        self, wanted: Sequence[tuple[MemberRow, datetime]]
    ) -> dict[str, list[PaymentHistory]]:
        """Each member's payment rows that occurred at or after its time, by member key (one
        request for all of them)."""
        ...

    def write(self, units: Sequence[WriteUnit]) -> list[UnitResult]:
        """Each unit atomically (a change set); one result per unit, in order."""
        ...


@dataclass
class EventOutcome:
    event: PaymentEvent
    outcome: Outcome
    reason: str | None = None
    member_key: str | None = None
    #: column → (old, new) for the member, for dry runs and logs
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: a failure that may pass (throttling, outage): leave the message for redelivery
    retryable: bool = False
    #: the payment row this event creates (create-only, keyed by its event id), for dry runs
    payment_row: dict[str, Any] | None = None
    #: applied into place after newer events of its member (it would once have been stale):
    #: the member is as if it had come in order; its triggers are the hook's to judge (late)
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event.event_id,
            "outcome": self.outcome.value,
            "reason": self.reason,
            "member": self.member_key,
            "retryable": self.retryable,
        }


class OutcomeHooks(Protocol):
    """What follows applied events (the activation side's triggers, issue 6)."""

    def payment_extras(self, outcome: EventOutcome) -> Mapping[str, Any]:
        """More payment-row columns for an applied event, written in its own change set (the
        trigger outbox: durable exactly when the payment is)."""
        ...

    def after_apply(self, outcomes: Sequence[EventOutcome]) -> object:
        """Called once the batch's writes are done (send what the outbox holds)."""
        ...


class Pipeline:
    def __init__(
        self, store: MemberStore, mapping: MappingFile, hooks: OutcomeHooks | None = None
    ) -> None:
        self.store = store
        self.mapping = mapping
        self.hooks = hooks
        self._state_columns = state_columns(mapping)
        self._member_columns = sorted({mapping.member.key_column, *self._state_columns})
        self._event_column = mapping.payment.event_column
        self._before_column = mapping.payment.before_column

    def apply(self, events: Sequence[PaymentEvent], *, dry_run: bool = False) -> list[EventOutcome]:
        """One outcome per event, in the order given."""
        started = time.perf_counter()
        outcomes: dict[int, EventOutcome] = {}
        members = self._resolve_members(events, outcomes)
        existing = self.store.existing_payments(
            sorted({e.event_id for i, e in enumerate(events) if i not in outcomes})
        )
        seen: set[str] = set()
        by_member: dict[str, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            if index in outcomes:
                continue
            member = members[index]
            if event.event_id in existing or event.event_id in seen:
                outcomes[index] = EventOutcome(
                    event, Outcome.DUPLICATE, "payment row exists already", member.key
                )
                continue
            seen.add(event.event_id)
            by_member[member.key].append(index)

        pending = {key: indexes for key, indexes in by_member.items()}
        current = {members[indexes[0]].key: members[indexes[0]] for indexes in pending.values()}
        for _round in range(MAX_ROUNDS):
            if not pending:
                break
            units, planned = [], []
            histories = self._histories(pending, current, events)
            for key, indexes in list(pending.items()):
                unit, plans = self._plan(
                    current[key], [(i, events[i]) for i in indexes], histories.get(key)
                )
                # An event that could not be planned fails alone; the member's others go on.
                unplanned = {i for i, o in plans.items() if o.outcome is Outcome.FAILED}
                for i in unplanned:
                    outcomes[i] = plans.pop(i)
                if unplanned:
                    pending[key] = [i for i in indexes if i not in unplanned]
                if not pending[key]:
                    del pending[key]
                    continue
                units.append(unit)
                planned.append(plans)
            if dry_run:
                for plans in planned:
                    outcomes.update(plans)
                return [outcomes[i] for i in range(len(events))]
            if not units:
                break
            results = self.store.write(units)
            pending = self._settle(units, planned, results, pending, current, events, outcomes)
        for indexes in pending.values():
            for i in indexes:
                outcomes[i] = EventOutcome(
                    events[i],
                    Outcome.FAILED,
                    f"still conflicting after {MAX_ROUNDS} rounds",
                    retryable=True,
                )
        result = [outcomes[i] for i in range(len(events))]
        if dry_run:  # nothing was planned to write (all duplicate, unmatched or failed)
            return result
        if self.hooks is not None:
            try:
                self.hooks.after_apply(result)
            except BridgeError as exc:  # the outbox keeps the triggers; a sweep sends them
                log.warning("after-apply hook failed: %s", exc, extra={"reason": str(exc)})
        duration_ms = round((time.perf_counter() - started) * 1000, 3)  # of the whole batch
        for outcome in result:
            with log_context(event_id=outcome.event.event_id):
                log.info(
                    "event %s",
                    outcome.outcome.value,
                    extra={
                        "source": outcome.event.source.value,
                        "kind": outcome.event.kind.value,
                        "outcome": outcome.outcome.value,
                        "reason": outcome.reason,
                        "duration_ms": duration_ms,
                    },
                )
        return result

    # -- steps -------------------------------------------------------------------------------

    def _resolve_members(
        self, events: Sequence[PaymentEvent], outcomes: dict[int, EventOutcome]
    ) -> dict[int, MemberRow]:
        """Find each event's member with one read per key column; the rest are unmatched."""
        keys = self.mapping.member.keys
        via_payment = [
            i
            for i, e in enumerate(events)
            if keys.get(e.member_ref.kind) and keys[e.member_ref.kind].via_payment
        ]
        paid_members = (
            self.store.members_of_payments(
                sorted({events[i].member_ref.value for i in via_payment})
            )
            if via_payment
            else {}
        )
        wanted: dict[str, dict[int, str]] = defaultdict(dict)
        for index, event in enumerate(events):
            key = keys.get(event.member_ref.kind)
            if key is None:
                outcomes[index] = EventOutcome(
                    event,
                    Outcome.UNMATCHED,
                    f"the mapping has no member key for {event.member_ref.kind.value} references",
                )
            elif key.via_payment:
                member_key = paid_members.get(event.member_ref.value)
                if member_key is None:
                    outcomes[index] = EventOutcome(
                        event,
                        Outcome.UNMATCHED,
                        f"no payment row with reference {event.member_ref.value!r}",
                    )
                else:
                    wanted[self.mapping.member.key_column][index] = member_key
            else:
                assert key.column is not None
                wanted[key.column][index] = event.member_ref.value
        found: dict[int, MemberRow] = {}
        for column, by_index in wanted.items():
            rows = self.store.read_members(
                column, sorted(set(by_index.values())), self._member_columns
            )
            for index, value in by_index.items():
                row = rows.get(value)
                if row is None:
                    ref = events[index].member_ref
                    outcomes[index] = EventOutcome(
                        events[index],
                        Outcome.UNMATCHED,
                        f"no member with {column} = {value!r} ({ref.kind.value} {ref.value})",
                    )
                else:
                    found[index] = row
        # One row object per member, whichever column found it.
        canonical: dict[str, MemberRow] = {}
        return {i: canonical.setdefault(row.key, row) for i, row in found.items()}

    def _histories(
        self,
        pending: Mapping[str, list[int]],
        current: Mapping[str, MemberRow],
        events: Sequence[PaymentEvent],
    ) -> dict[str, list[PaymentHistory]]:
        """The stored payment rows of the members with an event that may be out of order (one
        read for all of them); members whose events are all newer pay nothing."""
        if self._event_column is None:
            return {}
        wanted: list[tuple[MemberRow, datetime]] = []
        for key, indexes in pending.items():
            member = current[key]
            if any(out_of_order(events[i], member.values, self.mapping) for i in indexes):
                first = min(events[i].occurred_at for i in indexes)
                wanted.append((member, first.replace(microsecond=0)))
        if not wanted:
            return {}
        found = self.store.payment_history(wanted)
        return {member.key: found.get(member.key, []) for member, _ in wanted}

    def _plan(
        self,
        member: MemberRow,
        indexed: list[tuple[int, PaymentEvent]],
        history: list[PaymentHistory] | None = None,
    ) -> tuple[WriteUnit, dict[int, EventOutcome]]:
        """Plan a member's events in event order (time, then event id) over its row.

        When some of them are older than events already applied (``history`` holds the member's
        later payment rows), the fold starts from the member as it was before the first of them
        (the next later row's ``before``) and runs through the batch's events and the later rows'
        events together; the member gets the final state, and the later rows their new
        ``before``. An event whose planning raises gets a ``failed`` outcome (retryable only for
        a :class:`TransientError`) and changes nothing; the others are planned as if it were not
        there.
        """
        plans: dict[int, EventOutcome] = {}
        rows: dict[int, dict[str, Any]] = {}
        for index, event in indexed:
            try:
                rows[index] = payment_row(event, self.mapping, member.key)
            except Exception as exc:  # noqa: BLE001 - one event's error must not stop the batch
                plans[index] = self._unplannable(member, event, dict(member.values), exc)
        planned = [(index, event) for index, event in indexed if index in rows]
        by_id = {event.event_id: index for index, event in planned}
        start, later, why_stale = self._replay_start(member, planned, history)
        batch = [event for _, event in planned]
        steps, final = plan_replay(
            start, [*batch, *(h.event for h in later if h.event is not None)], self.mapping
        )
        stored = {h.event_id: h for h in later}
        payments: list[tuple[str, dict[str, Any]]] = []
        updates: list[tuple[str, dict[str, Any]]] = []
        touched: set[str] = set(self._state_columns) if later else set()
        for step in steps:
            event = step.event
            if event.event_id in stored:
                if stored[event.event_id].before != step.before:
                    updates.append((event.event_id, self._history_columns(None, step.before)))
                continue
            index = by_id[event.event_id]
            if step.error is not None:
                state = {**member.values, **step.before}
                plans[index] = self._unplannable(member, event, state, step.error)
                continue
            outcome = self._outcome(member, event, step.plan, rows[index], late=bool(later))
            if outcome.outcome is Outcome.STALE:
                outcome.reason = f"older than the member's last applied event{why_stale}"
                # no snapshot: this row's ``before`` would not be the member before it
                rows[index].update(self._history_columns(event, None))
            else:
                rows[index].update(self._history_columns(event, step.before))
            plans[index] = outcome
            payments.append((event.event_id, rows[index]))
            touched.update(step.plan.changes)
        net = {c: final.get(c) for c in sorted(touched) if member.values.get(c) != final.get(c)}
        if not net and (payments or updates):
            # Every change set carries the member's ETag, even one that changes no member column
            # (a replay that ends where the member is, a stale row): two workers planning the
            # same member on one read must not both commit, or the later rows' snapshots and
            # the member's state drift apart. Writing the ordering guard back unchanged makes
            # the member's version move, so the other worker conflicts, re-reads and replans.
            guard = self.mapping.member.ordering_column
            net = {guard: member.values.get(guard)}
        return WriteUnit(member, payments, net, updates), plans

    def _replay_start(
        self,
        member: MemberRow,
        indexed: list[tuple[int, PaymentEvent]],
        history: list[PaymentHistory] | None,
    ) -> tuple[dict[str, Any], list[PaymentHistory], str]:
        """Where the fold starts, the stored rows it runs through, and (when it cannot replay)
        why an older event stays stale."""
        if history is None or not indexed:
            return dict(member.values), [], ""
        first = min(event_order(event) for _, event in indexed)
        ids = {event.event_id for _, event in indexed}
        rows = [h for h in history if h.event_id not in ids]
        if any(h.event is None for h in rows):
            return dict(member.values), [], " (not replayed: its later payment rows have no event)"
        later = sorted(
            (h for h in rows if h.event is not None and event_order(h.event) > first),
            key=lambda h: event_order(h.event),  # type: ignore[arg-type]
        )
        if not later:
            return dict(member.values), [], ""
        if later[0].before is None:
            return (
                dict(member.values),
                [],
                " (not replayed: the next payment row has no member snapshot)",
            )
        return {**member.values, **later[0].before}, later, ""

    def _history_columns(
        self, event: PaymentEvent | None, before: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The payment row's event and member-before columns (those the mapping has)."""
        columns: dict[str, Any] = {}
        if self._event_column is None or self._before_column is None:
            return columns
        if event is not None:
            columns[self._event_column] = _compact(event.to_json())
        if before is not None:
            columns[self._before_column] = _compact(before)
        return columns

    def _outcome(
        self,
        member: MemberRow,
        event: PaymentEvent,
        plan: MemberPlan,
        row: dict[str, Any],
        *,
        late: bool,
    ) -> EventOutcome:
        """One planned event's outcome (with its payment row)."""
        if plan.stale:
            reason = "older than the member's last applied event"
            return EventOutcome(event, Outcome.STALE, reason, member.key, payment_row=row)
        # An event older than its own guard on the member as read would once have been stale:
        # it is folded into place now, and its triggers go to the hook marked ``replayed``
        # (too old ones are kept unsent there; a late first payment does not welcome twice).
        replayed = late and self._older_than_guard(event, member.values)
        note = "arrived after newer events of its member: applied in event order"
        outcome = EventOutcome(
            event,
            Outcome.APPLIED,
            note if replayed else None,
            member.key,
            {c: (plan.old.get(c), v) for c, v in plan.changes.items()},
            payment_row=row,
            replayed=replayed,
        )
        if self.hooks is not None:
            row.update(self.hooks.payment_extras(outcome))
        return outcome

    def _older_than_guard(self, event: PaymentEvent, member: dict[str, Any]) -> bool:
        try:
            return plan_member_update(event, member, self.mapping).stale
        except Exception:  # noqa: BLE001 - it failed in place too, and is reported there
            return False

    def _unplannable(
        self, member: MemberRow, event: PaymentEvent, state: dict[str, Any], exc: Exception
    ) -> EventOutcome:
        if isinstance(exc, ConfigError):
            detail = "; ".join(exc.problems)
        elif isinstance(exc, BridgeError):
            detail = str(exc)
        else:
            detail = f"{type(exc).__name__}: {exc}"
        where = self._failing_transform(event, state)
        reason = f"mapping {where}: {detail}" if where else f"cannot plan the event: {detail}"
        log.warning(
            "event %s cannot be planned: %s",
            event.event_id,
            reason,
            extra={"event_id": event.event_id, "reason": reason},
        )
        return EventOutcome(
            event,
            Outcome.FAILED,
            reason,
            member.key,
            retryable=isinstance(exc, TransientError),
        )

    def _failing_transform(self, event: PaymentEvent, state: dict[str, Any]) -> str | None:
        """``table.column (transform)`` of the transform that fails for this event, looked for
        in the order planning runs them: the member rule first, then the payment row."""
        try:
            plan_member_update(event, state, self.mapping)
        except Exception:  # noqa: BLE001 - the member rule fails: which of its columns?
            rule = self.mapping.rules[event.kind]
            table, values, row = self.mapping.member.table, rule.set, state
        else:
            table, values, row = self.mapping.payment.table, self.mapping.payment.values, {}
        for column, transform in values.items():
            try:
                evaluate(transform, event, row, column, self.mapping)
            except Exception:  # noqa: BLE001 - looking for the one that fails
                return f"{table}.{column} ({transform.operation})"
        return None

    def _settle(
        self,
        units: list[WriteUnit],
        planned: list[dict[int, EventOutcome]],
        results: list[UnitResult],
        pending: dict[str, list[int]],
        current: dict[str, MemberRow],
        events: Sequence[PaymentEvent],
        outcomes: dict[int, EventOutcome],
    ) -> dict[str, list[int]]:
        """Record finished units; return the members whose change set must be tried again."""
        again: dict[str, list[int]] = {}
        reread: list[str] = []
        by_event = {events[i].event_id: i for indexes in pending.values() for i in indexes}
        for unit, plans, result in zip(units, planned, results, strict=True):
            key = unit.member.key
            indexes = pending[key]
            if result.status == "ok":
                outcomes.update(plans)
            elif result.status == "duplicate" and result.event_id not in by_event:
                # The change set failed as a whole: ask which of its rows exist already.
                ids = [events[i].event_id for i in indexes]
                exists = self.store.existing_payments(ids)
                for i in indexes:
                    if events[i].event_id in exists:
                        outcomes[i] = EventOutcome(
                            events[i], Outcome.DUPLICATE, "payment row exists already", key
                        )
                if rest := [i for i in indexes if events[i].event_id not in exists]:
                    again[key] = rest
            elif result.status == "duplicate" and result.event_id is not None:
                dup = by_event[result.event_id]
                outcomes[dup] = EventOutcome(
                    events[dup], Outcome.DUPLICATE, "payment row exists already", key
                )
                if rest := [i for i in indexes if i != dup]:
                    again[key] = rest
            elif result.status == "conflict":
                again[key] = indexes
                reread.append(key)
            elif result.status == "member_missing":
                for i in indexes:
                    outcomes[i] = EventOutcome(
                        events[i], Outcome.UNMATCHED, f"member {key} no longer exists"
                    )
            elif result.status == "failed" and result.event_id in by_event:
                bad = by_event[result.event_id]
                outcomes[bad] = EventOutcome(events[bad], Outcome.FAILED, result.reason, key)
                if rest := [i for i in indexes if i != bad]:
                    again[key] = rest
            else:
                retry = result.status == "transient"
                for i in indexes:
                    outcomes[i] = EventOutcome(
                        events[i],
                        Outcome.FAILED,
                        result.reason or result.status,
                        key,
                        retryable=retry,
                    )
        if reread:
            rows = self.store.read_members(
                self.mapping.member.key_column, sorted(reread), self._member_columns
            )
            for key in reread:
                if key in rows:
                    current[key] = rows[key]
                else:
                    for i in again.pop(key):
                        outcomes[i] = EventOutcome(
                            events[i], Outcome.UNMATCHED, f"member {key} no longer exists"
                        )
        return again


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, default=str)


def summarize(outcomes: Iterable[EventOutcome]) -> dict[str, int]:
    counts: dict[str, int] = {o.value: 0 for o in Outcome}
    for outcome in outcomes:
        counts[outcome.outcome.value] += 1
    return counts
