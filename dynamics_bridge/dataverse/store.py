"""The pipeline's MemberStore over the Dataverse client: reads by key, writes as change sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamics_bridge.dataverse.batch import BatchPart, BatchRequest, ChangeSet
from dynamics_bridge.dataverse.client import DataverseClient, key_literal
from dynamics_bridge.dataverse.policy import classify, error_details
from dynamics_bridge.errors import (
    ConcurrencyConflictError,
    DuplicateKeyError,
    NotFoundError,
    TransientError,
)
from dynamics_bridge.mapping import MappingFile
from dynamics_bridge.pipeline import MemberRow, UnitResult, WriteUnit

__all__ = ["DataverseMemberStore"]

MAX_OPERATIONS = 1000


class DataverseMemberStore:
    """Implements :class:`dynamics_bridge.pipeline.MemberStore` with as few requests as it can."""

    def __init__(self, client: DataverseClient, mapping: MappingFile) -> None:
        self.client = client
        self.mapping = mapping
        payment = mapping.payment
        self._provider_ref_column = next(
            (
                c
                for c, t in payment.values.items()
                if t.operation == "copy" and t.copy_ == "provider_ref"
            ),
            None,
        )
        self._lookup_value = f"_{payment.member_lookup}_value"

    def _row(self, row: dict[str, Any]) -> MemberRow:
        member = self.mapping.member
        return MemberRow(
            str(row.get(member.key_column)),
            str(row.get(member.id_column, "")),
            row.get("@odata.etag"),
            row,
        )

    def read_members(
        self, column: str, values: Sequence[str], columns: Sequence[str]
    ) -> dict[str, MemberRow]:
        member = self.mapping.member
        rows = self.client.rows_by_values(
            member.entity_set, column, values, [*columns, member.id_column]
        )
        return {value: self._row(row) for value, row in rows.items()}

    def members_of_payments(self, provider_refs: Sequence[str]) -> dict[str, str]:
        if not self._provider_ref_column or not provider_refs:
            return {}
        payments = self.client.rows_by_values(
            self.mapping.payment.entity_set,
            self._provider_ref_column,
            provider_refs,
            [self._lookup_value],
        )
        member_ids = {
            ref: str(row.get(self._lookup_value))
            for ref, row in payments.items()
            if row.get(self._lookup_value)
        }
        member = self.mapping.member
        rows = self.client.rows_by_values(
            member.entity_set,
            member.id_column,
            sorted(set(member_ids.values())),
            [member.key_column],
        )
        return {
            ref: str(rows[mid][member.key_column]) for ref, mid in member_ids.items() if mid in rows
        }

    def existing_payments(self, event_ids: Sequence[str]) -> set[str]:
        payment = self.mapping.payment
        return set(
            self.client.rows_by_values(
                payment.entity_set, payment.key_column, event_ids, [payment.key_column]
            )
        )

    def write(self, units: Sequence[WriteUnit]) -> list[UnitResult]:
        """Units packed into ``$batch`` requests of at most 1,000 operations each."""
        results: list[UnitResult] = []
        batch: list[WriteUnit] = []
        size = 0
        for unit in units:
            ops = len(unit.payments) + (1 if unit.member_changes else 0)
            if batch and size + ops > MAX_OPERATIONS:
                results.extend(self._write_batch(batch))
                batch, size = [], 0
            batch.append(unit)
            size += ops
        if batch:
            results.extend(self._write_batch(batch))
        return results

    def _change_set(
        self, unit: WriteUnit, ids: dict[str, tuple[int, str | None]], index: int
    ) -> ChangeSet:
        payment, member = self.mapping.payment, self.mapping.member
        requests = []
        for event_id, body in unit.payments:
            content_id = str(len(ids) + 1)
            ids[content_id] = (index, event_id)
            requests.append(
                BatchRequest(
                    "PATCH",
                    f"{payment.entity_set}({payment.key_column}={key_literal(event_id)})",
                    {"If-None-Match": "*"},
                    body,
                    content_id,
                )
            )
        if unit.member_changes:
            content_id = str(len(ids) + 1)
            ids[content_id] = (index, None)
            requests.append(
                BatchRequest(
                    "PATCH",
                    f"{member.entity_set}({member.key_column}={key_literal(unit.member.key)})",
                    {"If-Match": unit.member.etag or "*"},
                    unit.member_changes,
                    content_id,
                )
            )
        return ChangeSet(requests)

    def _write_batch(self, units: list[WriteUnit]) -> list[UnitResult]:
        ids: dict[str, tuple[int, str | None]] = {}
        change_sets = [self._change_set(unit, ids, i) for i, unit in enumerate(units)]
        try:
            parts = self.client.batch(change_sets, continue_on_error=True)
        except TransientError as exc:
            return [UnitResult("transient", reason=str(exc)) for _ in units]
        failures: dict[int, BatchPart] = {}
        for part in parts:
            if part.status >= 400:
                owner = ids.get(part.content_id or "", (part.change_set, None))[0]
                if owner is not None:
                    failures.setdefault(owner, part)
        results = []
        answered = {p.change_set for p in parts}
        for index in range(len(units)):
            if index in failures:
                results.append(self._failure(failures[index], ids))
            elif index not in answered:
                results.append(UnitResult("transient", reason="not executed by Dataverse"))
            else:
                results.append(UnitResult("ok"))
        return results

    def _failure(self, part: BatchPart, ids: dict[str, tuple[int, str | None]]) -> UnitResult:
        _, event_id = ids.get(part.content_id or "", (None, None))
        is_member = part.content_id in ids and event_id is None
        error = classify(
            part.status, part.headers, part.body, create_only=not is_member, conditional=is_member
        )
        code, message = error_details(part.body)
        reason = f"{part.status} {code or ''} {message}".strip()
        if isinstance(error, DuplicateKeyError) and not is_member:
            return UnitResult("duplicate", event_id, reason)
        if isinstance(error, ConcurrencyConflictError) or (is_member and part.status == 412):
            return UnitResult("conflict", reason=reason)
        if isinstance(error, NotFoundError) and is_member:
            return UnitResult("member_missing", reason=reason)
        if isinstance(error, TransientError):
            return UnitResult("transient", reason=reason)
        return UnitResult("failed", event_id, reason)
