"""What the activation jobs need from the register, in their own words (the ActivationStore port).

The jobs (:mod:`.sender`, :mod:`.segments_job`, :mod:`.reminders_job`) see the register only
through this port, so they are specified against an in-memory fake (``tests/activation/fakes.py``)
without sockets; the Dataverse adapter is
:class:`dynamics_bridge.dataverse.activation_store.DataverseActivationStore`, tested against the
sandbox. Pure: no I/O library is imported here.

Three kinds of data:

- **Trigger outbox**: the payment row's outbox columns. The pipeline writes a payload with state
  ``pending`` (or ``skipped``) in the payment's own change set
  (:meth:`ActivationStore.pending_columns`); a sender claims rows by ETag (only one sender wins a
  row), sends, and settles them.
- **Members**: read by key, by change tracking (a delta link) or by a date column, with the rows
  of their related tables (employer, branch, memberships) in bulk; the columns the activation
  side owns written back by key, each guarded by an ETag or ``*``.
- **State table**: named text values (the segments job's delta link, its last full run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

from dynamics_bridge.activation.related import RelatedRead
from dynamics_bridge.activation.score import PaymentCounts
from dynamics_bridge.errors import BridgeError

__all__ = ["ActivationStore", "MemberDelta", "MemberUpdate", "OutboxRow", "WriteResult"]

#: ``(member key, columns, ETag or "*")``: one guarded update of a member row.
MemberUpdate = tuple[str, Mapping[str, Any], str]


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A payment row's outbox columns: its event id, payload (JSON), state word and ETag."""

    event_id: str
    payload: str
    state: str
    etag: str | None
    #: When a sender last claimed it (ISO 8601 as the register answers; None: never claimed).
    claimed_on: str | None = None


@dataclass
class MemberDelta:
    """Members new or changed since a delta link, and the link for next time.

    ``resynced``: the old link was refused (expired), so this is a full read."""

    changed: list[dict[str, Any]] = field(default_factory=list)
    delta_link: str = ""
    resynced: bool = False


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What became of one member update: ``ok``, or the error (a moved ETag is a
    :class:`~dynamics_bridge.errors.ConcurrencyConflictError`)."""

    ok: bool
    error: BridgeError | None = None


class ActivationStore(Protocol):
    """The register as the activation jobs use it (adapter: ``dataverse/activation_store.py``)."""

    # -- the trigger outbox (payment rows) ------------------------------------------------------

    def pending_columns(self, payload: str, state: str = "pending") -> dict[str, Any]:
        """The payment-row columns that put an event's triggers in the outbox (the pipeline
        writes them in the payment's own change set)."""
        ...

    def outbox_rows(self, event_ids: Sequence[str]) -> list[OutboxRow]:
        """These events' payment rows that carry a payload (any state)."""
        ...

    def stalled_outbox(self, now: datetime) -> list[OutboxRow]:
        """Rows ``pending``; ``sending`` and ``unconfirmed`` rows claimed longer than the lease
        ago (a crashed sender; a send APSIS has had time to store)."""
        ...

    def unconfirmed(self) -> list[OutboxRow]:
        """Every ``unconfirmed`` row, whatever its age (the admin's list)."""
        ...

    def claim(self, rows: Iterable[OutboxRow], now: datetime) -> list[OutboxRow]:
        """Move rows to ``sending`` guarded by their ETags; returns the ones this caller won."""
        ...

    def settle(self, states: Mapping[str, tuple[str, str | None]]) -> None:
        """Event id -> (new state word, new payload or None to keep it); the caller holds the
        claim, so no guard."""
        ...

    def member_payloads(self, member_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
        """Member id -> (event id, payload) of each of its payment rows that has one."""
        ...

    def outbox_age(self, now: datetime) -> dict[str, Any]:
        """``{"pending"|"unconfirmed": {"count", "oldest_seconds"}}`` (the health answer)."""
        ...

    # -- members --------------------------------------------------------------------------------

    def members(self, keys: Sequence[str], columns: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Member key -> row (with its id column and ``@odata.etag``) of those that exist."""
        ...

    def member_changes(self, columns: Sequence[str], delta_link: str | None) -> MemberDelta:
        """Members changed since ``delta_link`` (None: every member), with a new link."""
        ...

    def members_dated(
        self, column: str, windows: Sequence[tuple[date, date]], columns: Sequence[str]
    ) -> Iterable[dict[str, Any]]:
        """Members whose date ``column`` lies in one of the ``[low, high]`` windows (disjoint:
        each member once)."""
        ...

    def related_rows(self, reads: Sequence[RelatedRead]) -> dict[str, list[dict[str, Any]]]:
        """Table name -> the rows of each read (:func:`~dynamics_bridge.activation.related.reads`)
        whose ``by`` column is one of its ids; more rows may come back (a whole table read at
        once), never fewer."""
        ...

    def update_members(self, updates: Sequence[MemberUpdate]) -> Sequence[WriteResult]:
        """Each update by member key with its If-Match (never creating a row); one result per
        update, in order."""
        ...

    def payment_counts(
        self, member_ids: Sequence[str], since: datetime
    ) -> dict[str, PaymentCounts]:
        """Paid and failed-or-overdue payments per member id since ``since``."""
        ...

    # -- the state table ------------------------------------------------------------------------

    def get_state(self, name: str) -> str | None: ...

    def set_state(self, name: str, value: str | None) -> None: ...
