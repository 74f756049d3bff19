"""An ActivationStore and a marketing platform with the real ones' semantics, in memory.

The store behaves as Dataverse does for the activation jobs: ETags that move on every write (a
guarded write with an old one fails with a concurrency conflict), change tracking that returns
a job's own writes once, an expired delta link answered with a full read. The platform behaves
as APSIS does: profiles created on first write, events appended (never de-duplicated), a lost
answer after the events were stored, an event read-back. Used to specify the jobs without
sockets; the Dataverse adapter is tested against the sandbox.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dynamics_bridge.activation.port import MemberDelta, MemberUpdate, OutboxRow, WriteResult
from dynamics_bridge.activation.related import RelatedRead
from dynamics_bridge.activation.score import PaymentCounts
from dynamics_bridge.apsis.models import (
    ApplyReport,
    AttributeValue,
    ChangeOutcome,
    ConsentChange,
    ConsentResult,
    MarketingEvent,
    ProfileChange,
)
from dynamics_bridge.errors import (
    AmbiguousError,
    BridgeError,
    ConcurrencyConflictError,
    NotFoundError,
    TransientError,
)

ON_TIME = {"payment.succeeded"}
LATE = {"payment.failed", "invoice.overdue"}


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PaymentRow:
    member_key: str
    kind: str
    occurred: datetime
    created: datetime
    payload: str | None = None
    state: str | None = None
    claimed_on: str | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'


@dataclass
class FakeActivationStore:
    """Members, payment rows with their outbox columns, and the state table."""

    lease_minutes: int = 15
    key_column: str = "mbr_memberno"
    id_column: str = "contactid"
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)
    payments: dict[str, PaymentRow] = field(default_factory=dict)
    state: dict[str, str] = field(default_factory=dict)
    #: related table name (dataverse.yaml ``related``) -> its rows, as Dataverse answers them
    related: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: member key -> the error its next update meets (once), e.g. an outage
    fail_update: dict[str, BridgeError] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    _seq: int = 0
    _changed: dict[str, int] = field(default_factory=dict)  # member key -> change sequence

    # -- set-up (what the pipeline and the union's own processes write) ------------------------

    def add_member(self, key: str, **columns: Any) -> None:
        self.rows[key] = {**columns, self.key_column: key, self.id_column: f"id-{key}"}
        self.versions[key] = 1
        self._touch(key)

    def write_payment(
        self,
        event_id: str,
        member_key: str,
        extras: Mapping[str, Any],
        *,
        kind: str = "payment.succeeded",
        occurred: datetime,
        created: datetime | None = None,
    ) -> None:
        """A payment row as the pipeline writes it, with the hook's outbox columns."""
        self.payments[event_id] = PaymentRow(
            member_key,
            kind,
            occurred,
            created or occurred,
            extras.get("payload"),
            extras.get("state"),
        )

    def _touch(self, key: str) -> None:
        self._seq += 1
        self._changed[key] = self._seq

    def _row(self, key: str) -> dict[str, Any]:
        return {**self.rows[key], "@odata.etag": f'W/"{self.versions[key]}"'}

    # -- the trigger outbox ---------------------------------------------------------------------

    def pending_columns(self, payload: str, state: str = "pending") -> dict[str, Any]:
        return {"payload": payload, "state": state}

    def _outbox(self, event_id: str, row: PaymentRow) -> OutboxRow:
        return OutboxRow(event_id, row.payload or "", row.state or "", row.etag, row.claimed_on)

    def _where(self, keep: Any) -> list[OutboxRow]:
        return [self._outbox(e, r) for e, r in self.payments.items() if r.payload and keep(r)]

    def outbox_rows(self, event_ids: Sequence[str]) -> list[OutboxRow]:
        self.calls["outbox_rows"] += 1
        wanted = set(event_ids)
        return [r for r in self._where(lambda _: True) if r.event_id in wanted]

    def stalled_outbox(self, now: datetime) -> list[OutboxRow]:
        self.calls["stalled_outbox"] += 1
        cutoff = stamp(now - timedelta(minutes=self.lease_minutes))
        return self._where(
            lambda r: (
                r.state == "pending"
                or (r.state in ("sending", "unconfirmed") and (r.claimed_on or "") < cutoff)
            )
        )

    def unconfirmed(self) -> list[OutboxRow]:
        return self._where(lambda r: r.state == "unconfirmed")

    def claim(self, rows: Iterable[OutboxRow], now: datetime) -> list[OutboxRow]:
        self.calls["claim"] += 1
        won = []
        for wanted in rows:
            row = self.payments[wanted.event_id]
            if wanted.etag not in (None, "*", row.etag):
                continue  # 412: another sender moved it on
            row.state, row.claimed_on = "sending", stamp(now)
            row.version += 1
            won.append(wanted)
        return won

    def settle(self, states: Mapping[str, tuple[str, str | None]]) -> None:
        self.calls["settle"] += 1
        for event_id, (word, payload) in states.items():
            row = self.payments[event_id]
            row.state = word
            if payload is not None:
                row.payload = payload
            row.version += 1

    def member_payloads(self, member_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        found: dict[str, list[tuple[str, str]]] = {}
        for event_id, row in self.payments.items():
            member_id = self.rows[row.member_key][self.id_column]
            if member_id in member_ids and row.payload:
                found.setdefault(member_id, []).append((event_id, row.payload))
        return found

    def outbox_age(self, now: datetime) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for word in ("pending", "unconfirmed"):
            created = [r.created for r in self.payments.values() if r.state == word]
            oldest = min(created) if created else None
            found[word] = {
                "count": len(created),
                "oldest_seconds": round((now - oldest).total_seconds()) if oldest else None,
            }
        return found

    # -- members --------------------------------------------------------------------------------

    def members(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        self.calls["members"] += 1
        return {k: self._row(k) for k in keys if k in self.rows}

    def member_changes(self, columns: Sequence[str], delta_link: str | None) -> MemberDelta:
        self.calls["member_changes"] += 1
        since, resynced = 0, False
        if delta_link is not None:
            number = delta_link.removeprefix("delta-")
            if number.isdigit() and int(number) <= self._seq:
                since = int(number)
            else:
                resynced = True  # expired: a full read
        changed = [self._row(k) for k, seq in self._changed.items() if seq > since]
        return MemberDelta(changed, f"delta-{self._seq}", resynced)

    def members_dated(
        self, column: str, windows: Sequence[tuple[date, date]], columns: Sequence[str]
    ) -> list[dict[str, Any]]:
        self.calls["members_dated"] += 1
        found = []
        for key, row in self.rows.items():
            value = row.get(column)
            if value and any(
                low <= date.fromisoformat(str(value)[:10]) <= high for low, high in windows
            ):
                found.append(self._row(key))
        return found

    def related_rows(self, reads: Sequence[RelatedRead]) -> dict[str, list[dict[str, Any]]]:
        """The rows whose ``by`` column is one of the read's ids (a read's OData ``filter`` is
        not applied: a count's window is applied again when the values are assembled). A table
        not in :attr:`related` is one the environment lacks: not in the answer."""
        self.calls["related_rows"] += 1
        found = {}
        for read in reads:
            if read.name not in self.related:
                continue
            wanted = set(read.ids)
            found[read.name] = [
                dict(r) for r in self.related.get(read.name, []) if str(r.get(read.by)) in wanted
            ]
        return found

    def update_members(self, updates: Sequence[MemberUpdate]) -> list[WriteResult]:
        self.calls["update_members"] += 1
        results = []
        for key, body, etag in updates:
            if key not in self.rows:
                results.append(WriteResult(False, NotFoundError(f"member {key}: not found")))
            elif key in self.fail_update:
                results.append(WriteResult(False, self.fail_update.pop(key)))
            elif etag != "*" and etag != f'W/"{self.versions[key]}"':
                results.append(WriteResult(False, ConcurrencyConflictError("412 ETag moved")))
            else:
                self.rows[key].update(body)
                self.versions[key] += 1
                self._touch(key)
                results.append(WriteResult(True))
        return results

    def payment_counts(
        self, member_ids: Sequence[str], since: datetime
    ) -> dict[str, PaymentCounts]:
        counts: dict[str, Counter[str]] = {}
        for row in self.payments.values():
            member_id = self.rows[row.member_key][self.id_column]
            if member_id not in member_ids or row.occurred < since:
                continue
            bucket = "on_time" if row.kind in ON_TIME else "late" if row.kind in LATE else None
            if bucket:
                counts.setdefault(member_id, Counter())[bucket] += 1
        return {m: PaymentCounts(c["on_time"], c["late"]) for m, c in counts.items()}

    # -- the state table ------------------------------------------------------------------------

    def get_state(self, name: str) -> str | None:
        return self.state.get(name)

    def set_state(self, name: str, value: str | None) -> None:
        if value is None:
            self.state.pop(name, None)
        else:
            self.state[name] = value


@dataclass
class FakePlatform:
    """APSIS as the jobs see it: profiles (attributes, tags), events, erasures, a read-back."""

    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[tuple[str, MarketingEvent]] = field(default_factory=list)
    erased: list[str] = field(default_factory=list)
    #: profile key -> the error its changes meet (until removed)
    fail: dict[str, BridgeError] = field(default_factory=dict)
    #: profile keys whose next change is stored but its answer lost (once)
    lose_answer: set[str] = field(default_factory=set)
    #: the read-back's failure, when it cannot tell
    readback_error: BridgeError | None = None
    calls: Counter[str] = field(default_factory=Counter)

    def sent(self) -> Counter[tuple[str, str | None]]:
        """(event type, source event id) of every event held, with its count."""
        return Counter((e.type, e.id) for _, e in self.events)

    def apply_changes(self, changes: Sequence[ProfileChange]) -> ApplyReport:
        self.calls["apply_changes"] += 1
        report = ApplyReport()
        for change in changes:
            report.outcomes.append(self._apply(change))
        return report

    def _apply(self, change: ProfileChange) -> ChangeOutcome:
        key = change.key
        if key in self.fail:
            return ChangeOutcome(key, "api", self.fail[key])
        if change.erase:
            self.profiles.pop(key, None)
            self.erased.append(key)
            return ChangeOutcome(key, "erase")
        recreated = not change.create and key not in self.profiles
        profile = self.profiles.setdefault(key, {"attributes": {}, "tags": set()})
        profile["attributes"].update(change.attributes)
        profile["tags"] |= set(change.tags_add)
        profile["tags"] -= set(change.tags_remove)
        self.events += [(key, e) for e in change.events]
        if key in self.lose_answer:
            self.lose_answer.discard(key)
            return ChangeOutcome(key, "api", AmbiguousError("timeout after sending"))
        return ChangeOutcome(key, "api", recreated=recreated)

    def held_events(self, events: Sequence[MarketingEvent]) -> set[tuple[str, str]]:
        self.calls["held_events"] += 1
        if self.readback_error is not None:
            raise self.readback_error
        held = {(e.type, e.id) for _, e in self.events}
        return {(e.type, e.id) for e in events if e.id and (e.type, e.id) in held}

    # -- the rest of the port, over apply_changes ------------------------------------------------

    def upsert_profile(self, key: str, attributes: Mapping[str, AttributeValue]) -> None:
        self._raise(self._apply(ProfileChange(key, attributes=attributes)))

    def send_events(self, key: str, events: Sequence[MarketingEvent]) -> None:
        self._raise(self._apply(ProfileChange(key, events=events, create=False)))

    def set_tags(self, key: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        self._raise(self._apply(ProfileChange(key, tags_add=list(add), tags_remove=list(remove))))

    def set_consent(self, key: str, consent: ConsentChange) -> ConsentResult:
        raise TransientError("consents are not part of this fake")

    def erase(self, key: str) -> None:
        self._raise(self._apply(ProfileChange(key, erase=True)))

    @staticmethod
    def _raise(outcome: ChangeOutcome) -> None:
        if outcome.error is not None:
            raise outcome.error
