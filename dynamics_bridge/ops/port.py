"""What a store of operations records must do (run history, poison book, audit trail)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Protocol

from dynamics_bridge.ops.model import (
    AuditRecord,
    DayTotals,
    PoisonFilter,
    PoisonPage,
    PoisonRecord,
    RunRecord,
)

__all__ = ["OpsStore"]


class OpsStore(Protocol):
    """Durable records for operators. Every method may raise :class:`TransientError`."""

    # --- run history -------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None: ...

    def runs(
        self, since: datetime, until: datetime | None = None, *, kind: str | None = None
    ) -> Iterator[RunRecord]:
        """Runs started in [since, until), newest first."""
        ...

    def day_totals(self, days: Sequence[date]) -> list[DayTotals]:
        """One roll-up per day asked, in that order (an empty one for a day with no runs).
        A closed day's roll-up may be kept once made; today's is always fresh."""
        ...

    # --- poison book -------------------------------------------------------------------
    def put_poison(self, records: Sequence[PoisonRecord]) -> None:
        """Insert or replace by ``message_id``."""
        ...

    def poison_page(
        self, where: PoisonFilter, *, limit: int = 50, cursor: str | None = None
    ) -> PoisonPage:
        """Matching records, newest first."""
        ...

    def poison_count(self, where: PoisonFilter) -> int: ...

    def poison_iter(self, where: PoisonFilter) -> Iterator[PoisonRecord]:
        """Every matching record, newest first, read a page at a time."""
        ...

    def poison_get(self, id_or_prefix: str) -> PoisonRecord:
        """The record whose message id is this, or starts with it. :class:`NotFoundError` for
        none, :class:`InputError` naming the candidates for a prefix that matches several."""
        ...

    def delete_poison(self, message_ids: Sequence[str]) -> int:
        """Remove these records; returns how many were there."""
        ...

    # --- audit trail -------------------------------------------------------------------
    def record_audit(self, entry: AuditRecord) -> None: ...

    def audits(self, since: datetime) -> list[AuditRecord]:
        """Newest first."""
        ...

    # --- retention ---------------------------------------------------------------------
    def expire(self, before: datetime) -> int:
        """Remove runs, roll-ups and audits older than ``before`` (poison stays until replayed
        or purged); returns how many records went."""
        ...
