"""The pipeline's MemberStore over the Dataverse client: reads by key, writes as change sets."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

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
from dynamics_bridge.model import PaymentEvent
from dynamics_bridge.pipeline import MemberRow, PaymentHistory, UnitResult, WriteUnit

__all__ = ["DataverseMemberStore"]

MAX_OPERATIONS = 1000

log = logging.getLogger("dynamics_bridge.dataverse.store")


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
        rows = self.client.rows.by_values(
            member.entity_set, column, values, [*columns, member.id_column]
        )
        return {value: self._row(row) for value, row in rows.items()}

    def members_of_payments(self, provider_refs: Sequence[str]) -> dict[str, str]:
        if not self._provider_ref_column or not provider_refs:
            return {}
        payments = self.client.rows.by_values(
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
        rows = self.client.rows.by_values(
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
            self.client.rows.by_values(
                payment.entity_set, payment.key_column, event_ids, [payment.key_column]
            )
        )

    def payment_history(
        self, wanted: Sequence[tuple[MemberRow, datetime]]
    ) -> dict[str, list[PaymentHistory]]:
        """Each member's payment rows from its time on: one ``$batch`` of GET parts (one per
        member, ``lookup eq id and occurred ge time``), which Dataverse counts as one request."""
        payment = self.mapping.payment
        occurred = next(
            (
                c
                for c, t in payment.values.items()
                if t.operation == "datetime" and t.datetime == "occurred_at"
            ),
            None,
        )
        if not wanted or payment.event_column is None or payment.before_column is None:
            return {}
        select = [payment.key_column, payment.event_column, payment.before_column]
        options = {"$select": ",".join(select)}
        prefer = {"Prefer": f"odata.maxpagesize={self.client.settings.page_size}"}
        found: dict[str, list[PaymentHistory]] = {}
        for start in range(0, len(wanted), MAX_OPERATIONS):
            part = wanted[start : start + MAX_OPERATIONS]
            gets = []
            for member, since in part:
                where = f"{self._lookup_value} eq {member.row_id}"
                if occurred is not None:
                    moment = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                    where += f" and {occurred} ge {moment}"
                query = urlencode(options | {"$filter": where}, quote_via=quote)
                gets.append(BatchRequest("GET", f"{payment.entity_set}?{query}", prefer))
            for (member, _), op in zip(
                part, self.client.batch.execute(gets).operations, strict=True
            ):
                if not op.ok:  # a query Dataverse did not answer must not read as "no rows"
                    raise op.error or TransientError("query not executed by Dataverse")
                page = op.body or {}
                rows = list(page.get("value", []))
                if page.get("@odata.nextLink"):
                    rows += self.client.rows.pages(page["@odata.nextLink"], prefer)
                found[member.key] = [self._history(row) for row in rows]
        return found

    def _history(self, row: dict[str, Any]) -> PaymentHistory:
        payment = self.mapping.payment
        event_id = str(row.get(payment.key_column))
        event, before = None, None
        try:
            if text := row.get(payment.event_column or ""):
                event = PaymentEvent.from_json(json.loads(text))
            if text := row.get(payment.before_column or ""):
                parsed = json.loads(text)
                before = parsed if isinstance(parsed, dict) else None
        except (ValueError, BridgeError) as exc:  # unreadable: as if the row had no history
            log.warning("payment row %s: history not readable: %s", event_id, exc)
            event, before = None, None
        return PaymentHistory(event_id, event, before)

    def write(self, units: Sequence[WriteUnit]) -> list[UnitResult]:
        """Units packed into ``$batch`` requests of at most 1,000 operations each."""
        results: list[UnitResult] = []
        batch: list[WriteUnit] = []
        size = 0
        for unit in units:
            ops = len(unit.payments) + len(unit.payment_updates) + (1 if unit.member_changes else 0)
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
        for event_id, body in unit.payment_updates:  # update-only: the row exists
            requests.append(
                BatchRequest(
                    "PATCH",
                    key_path(payment.entity_set, {payment.key_column: event_id}),
                    {"If-Match": "*"},
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
                outcome = self.client.batch.execute(change_sets, continue_on_error=True)
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
