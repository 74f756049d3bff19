"""The pipeline's MemberStore over the Dataverse client: reads by key, writes as change sets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dynamics_bridge.dataverse.batch import BatchRequest, ChangeSet, OperationResult
from dynamics_bridge.dataverse.client import DataverseClient
from dynamics_bridge.dataverse.odata import key_path
from dynamics_bridge.errors import (
    BridgeError,
    ConcurrencyConflictError,
    DuplicateKeyError,
    InputError,
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

    def _change_set(self, unit: WriteUnit) -> tuple[ChangeSet, list[str | None]]:
        """The unit's change set and, per operation, the event id (None: the member update)."""
        payment, member = self.mapping.payment, self.mapping.member
        requests: list[BatchRequest] = []
        owners: list[str | None] = []
        for event_id, body in unit.payments:
            requests.append(
                BatchRequest(
                    "PATCH",
                    key_path(payment.entity_set, {payment.key_column: event_id}),
                    {"If-None-Match": "*"},
                    body,
                )
            )
            owners.append(event_id)
        if unit.member_changes:
            requests.append(
                BatchRequest(
                    "PATCH",
                    key_path(member.entity_set, {member.key_column: unit.member.key}),
                    {"If-Match": unit.member.etag or "*"},
                    unit.member_changes,
                )
            )
            owners.append(None)
        return ChangeSet(requests), owners

    def _write_batch(self, units: list[WriteUnit]) -> list[UnitResult]:
        results: list[UnitResult | None] = [None] * len(units)
        change_sets: list[ChangeSet] = []
        owners: list[tuple[int, list[str | None]]] = []
        for index, unit in enumerate(units):
            try:
                change_set, unit_owners = self._change_set(unit)
            except InputError as exc:  # a key Dataverse cannot address: this unit only
                results[index] = UnitResult("failed", reason=str(exc))
                continue
            change_sets.append(change_set)
            owners.append((index, unit_owners))
        if change_sets:
            try:
                outcome = self.client.execute_batch(change_sets, continue_on_error=True)
            except TransientError as exc:
                outcome = None
                for index, _ in owners:
                    results[index] = UnitResult("transient", reason=str(exc))
            if outcome is not None:
                operations = iter(outcome.operations)
                for index, unit_owners in owners:
                    ops = [next(operations) for _ in unit_owners]
                    results[index] = self._result(ops, unit_owners)
        return [r for r in results if r is not None]

    @staticmethod
    def _result(ops: list[OperationResult], owners: list[str | None]) -> UnitResult:
        """A change set's operations → one result (it commits or rolls back as a whole)."""
        if all(op.ok for op in ops):
            return UnitResult("ok")
        culprit = next(
            ((op, o) for op, o in zip(ops, owners, strict=True) if op.state == "failed"), None
        )
        if culprit is None:
            rolled = next((op for op in ops if op.error is not None), None)
            if rolled is None:
                return UnitResult("transient", reason="not executed by Dataverse")
            error, event_id, is_member = rolled.error, None, False
        else:
            error, event_id, is_member = culprit[0].error, culprit[1], culprit[1] is None
        reason = _reason(error)
        if isinstance(error, DuplicateKeyError) and not is_member:
            return UnitResult("duplicate", event_id, reason)
        if isinstance(error, ConcurrencyConflictError) or (
            is_member and getattr(error, "status", None) == 412
        ):
            return UnitResult("conflict", reason=reason)
        if isinstance(error, NotFoundError) and is_member:
            return UnitResult("member_missing", reason=reason)
        if isinstance(error, TransientError):
            return UnitResult("transient", reason=reason)
        return UnitResult("failed", event_id, reason)


def _reason(error: BridgeError | None) -> str:
    if error is None:
        return "failed"
    return f"{error.status or ''} {error.code or ''} {error.message}".strip()
