"""Operations records in one process: for tests and the demo (gone when the process ends)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import date, datetime

from dynamics_bridge.errors import InputError, NotFoundError
from dynamics_bridge.ops.model import (
    AuditRecord,
    DayTotals,
    PoisonFilter,
    PoisonPage,
    PoisonRecord,
    RunRecord,
    roll_up,
)

__all__ = ["InMemoryOpsStore"]


class InMemoryOpsStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: list[RunRecord] = []
        self._poison: dict[str, PoisonRecord] = {}
        self._audits: list[AuditRecord] = []

    # --- run history -------------------------------------------------------------------
    def record_run(self, run: RunRecord) -> None:
        with self._lock:
            self._runs.append(run)

    def runs(
        self, since: datetime, until: datetime | None = None, *, kind: str | None = None
    ) -> Iterator[RunRecord]:
        with self._lock:
            chosen = [
                r
                for r in self._runs
                if r.started_at >= since
                and (until is None or r.started_at < until)
                and (kind is None or r.kind == kind)
            ]
        return iter(sorted(chosen, key=lambda r: r.started_at, reverse=True))

    def day_totals(self, days: Sequence[date]) -> list[DayTotals]:
        with self._lock:
            runs = list(self._runs)
        by_day: dict[date, list[RunRecord]] = {}
        for run in runs:
            by_day.setdefault(run.day, []).append(run)
        return [roll_up(day, by_day.get(day, [])) for day in days]

    # --- poison book -------------------------------------------------------------------
    def put_poison(self, records: Sequence[PoisonRecord]) -> None:
        with self._lock:
            for record in records:
                self._poison[record.message_id] = record

    def _matching(self, where: PoisonFilter) -> list[PoisonRecord]:
        with self._lock:
            chosen = [r for r in self._poison.values() if where.matches(r)]
        return sorted(chosen, key=lambda r: (r.failed_at, r.message_id), reverse=True)

    def poison_page(
        self, where: PoisonFilter, *, limit: int = 50, cursor: str | None = None
    ) -> PoisonPage:
        chosen = self._matching(where)
        start = int(cursor or 0)
        end = start + limit
        return PoisonPage(chosen[start:end], str(end) if end < len(chosen) else None)

    def poison_count(self, where: PoisonFilter) -> int:
        return len(self._matching(where))

    def poison_iter(self, where: PoisonFilter) -> Iterator[PoisonRecord]:
        return iter(self._matching(where))

    def poison_get(self, id_or_prefix: str) -> PoisonRecord:
        key = id_or_prefix.strip()
        with self._lock:
            if key in self._poison:
                return self._poison[key]
            found = sorted(m for m in self._poison if key and m.startswith(key))
        if not found:
            raise NotFoundError(f"no poison message {key}")
        if len(found) > 1:
            shown = ", ".join(found[:5]) + (" …" if len(found) > 5 else "")
            raise InputError(
                f"{len(found)} poison messages start with {key!r}: {shown}",
                location="message id",
            )
        with self._lock:
            return self._poison[found[0]]

    def delete_poison(self, message_ids: Sequence[str]) -> int:
        with self._lock:
            return sum(self._poison.pop(m, None) is not None for m in message_ids)

    # --- audit trail -------------------------------------------------------------------
    def record_audit(self, entry: AuditRecord) -> None:
        with self._lock:
            self._audits.append(entry)

    def audits(self, since: datetime) -> list[AuditRecord]:
        with self._lock:
            chosen = [a for a in self._audits if a.at >= since]
        return sorted(chosen, key=lambda a: a.at, reverse=True)

    # --- retention ---------------------------------------------------------------------
    def expire(self, before: datetime) -> int:
        with self._lock:
            runs = [r for r in self._runs if r.started_at >= before]
            audits = [a for a in self._audits if a.at >= before]
            gone = len(self._runs) - len(runs) + len(self._audits) - len(audits)
            self._runs, self._audits = runs, audits
        return gone
